package dicombench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/priorflow/priorflow/archive/dicomtest"
)

// Plan is the shape of a generated corpus: Instances instances in Studies
// studies of Patients patients. LargeStudies studies get up to
// LargeInstances instances each (in series of 10) and are the ones WADO-RS
// retrieves; the other studies share the remaining instances evenly (1 or 2
// each at the default 20,000 in 10,000). One study in five is PET (template
// dicomtest.FilePET1), the others MR (dicomtest.FileMR); both are about
// 64 KB an instance.
type Plan struct {
	Instances      int
	Studies        int
	Patients       int
	LargeStudies   int
	LargeInstances int
	Seed           uint64
}

// StudyFiles is one generated study on disk.
type StudyFiles struct {
	StudyInstanceUID string
	PatientID        string
	Modality         string
	Large            bool
	Series           int
	Files            []string
	Bytes            int64 // sum of the file sizes
}

// Corpus is a generated set of DICOM Part 10 files, grouped by study, in
// ingest order.
type Corpus struct {
	Dir     string
	Studies []*StudyFiles
}

// Instances returns the number of files.
func (c *Corpus) Instances() int {
	n := 0
	for _, s := range c.Studies {
		n += len(s.Files)
	}
	return n
}

// Bytes returns the size of all files.
func (c *Corpus) Bytes() int64 {
	var n int64
	for _, s := range c.Studies {
		n += s.Bytes
	}
	return n
}

// Files returns every file in ingest order (study by study).
func (c *Corpus) Files() []string {
	out := make([]string, 0, c.Instances())
	for _, s := range c.Studies {
		out = append(out, s.Files...)
	}
	return out
}

// Large returns the large studies (the WADO-RS set).
func (c *Corpus) Large() []*StudyFiles {
	var out []*StudyFiles
	for _, s := range c.Studies {
		if s.Large {
			out = append(out, s)
		}
	}
	return out
}

// PatientStudies returns, for every patient, its number of studies.
func (c *Corpus) PatientStudies() map[string]int {
	m := map[string]int{}
	for _, s := range c.Studies {
		m[s.PatientID]++
	}
	return m
}

// studyPlan is one study to generate.
type studyPlan struct {
	patient           int
	modality          string
	series, instances int // series × instances per series
	large             bool
	date              time.Time
}

// layout decides every study of the plan, deterministically from the seed.
func (p Plan) layout() ([]studyPlan, error) {
	var errs []error
	if p.Instances < 1 || p.Studies < 1 || p.Patients < 1 {
		errs = append(errs, errors.New("instances, studies and patients must be positive"))
	}
	if p.Studies > p.Instances {
		errs = append(errs, fmt.Errorf("%d studies need at least as many instances, not %d", p.Studies, p.Instances))
	}
	if p.Patients > p.Studies {
		errs = append(errs, fmt.Errorf("%d patients need at least as many studies, not %d", p.Patients, p.Studies))
	}
	if p.LargeStudies < 1 || p.LargeStudies > p.Studies {
		errs = append(errs, fmt.Errorf("large studies must be in [1, %d]", p.Studies))
	}
	if p.LargeInstances < 1 {
		errs = append(errs, errors.New("instances per large study must be positive"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	small := p.Studies - p.LargeStudies
	// Every small study holds at least one instance.
	k := min(p.LargeInstances, (p.Instances-small)/p.LargeStudies)
	if k < 1 {
		return nil, fmt.Errorf("%d instances are too few for %d studies", p.Instances, p.Studies)
	}
	largeSeries, largePer := 1, k
	if k >= 10 {
		largeSeries, largePer = k/10, 10
	}
	rest := p.Instances - p.LargeStudies*largeSeries*largePer
	if small == 0 && rest > 0 || small > 0 && rest < small {
		return nil, fmt.Errorf("cannot spread %d instances over %d studies with %d large ones", p.Instances, p.Studies, p.LargeStudies)
	}
	rng := rand.New(rand.NewPCG(p.Seed, 0x64696362656e6368))
	epoch := time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC)
	out := make([]studyPlan, p.Studies)
	for i := range out {
		sp := studyPlan{series: 1, instances: 1, modality: "MR",
			date: epoch.Add(time.Duration(rng.Int64N(int64(16*365*24*time.Hour))) / time.Second * time.Second)}
		if rng.IntN(5) == 0 {
			sp.modality = "PT"
		}
		// Every patient gets one study, the remaining studies a random one.
		sp.patient = i
		if i >= p.Patients {
			sp.patient = rng.IntN(p.Patients)
		}
		if i < p.LargeStudies {
			sp.large, sp.series, sp.instances = true, largeSeries, largePer
		} else {
			j := i - p.LargeStudies
			sp.instances = rest / small
			if j < rest%small {
				sp.instances++
			}
		}
		out[i] = sp
	}
	// Ingest order: large studies among the small ones.
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out, nil
}

// EstimateBytes is the corpus size to expect (64 KB an instance).
func (p Plan) EstimateBytes() int64 { return int64(p.Instances) * 65 << 10 }

// PatientID is the Patient ID of patient n of a corpus.
func PatientID(n int) string { return fmt.Sprintf("BENCH%07d", n) }

// Generate writes the corpus of the plan into dir with workers concurrent
// generators.
func Generate(ctx context.Context, gen *dicomtest.Generator, dir string, p Plan, workers int, log *slog.Logger) (*Corpus, error) {
	plans, err := p.layout()
	if err != nil {
		return nil, fmt.Errorf("dicombench.Generate: %w", err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("dicombench.Generate: %w", err)
	}
	c := &Corpus{Dir: dir, Studies: make([]*StudyFiles, len(plans))}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := atomic.Int64{}
	done := atomic.Int64{}
	t0 := time.Now()
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= len(plans) {
					return
				}
				sf, err := writeStudy(gen, dir, i, plans[i])
				if err != nil {
					cancel(err)
					return
				}
				c.Studies[i] = sf
				if n := done.Add(1); n%2000 == 0 {
					log.Info("generating", "studies", n, "of", len(plans), "elapsed", time.Since(t0).Round(time.Second))
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, fmt.Errorf("dicombench.Generate: %w", err)
	}
	return c, nil
}

func writeStudy(gen *dicomtest.Generator, dir string, i int, sp studyPlan) (*StudyFiles, error) {
	pid := PatientID(sp.patient)
	tmpl := dicomtest.FileMR
	if sp.modality == "PT" {
		tmpl = dicomtest.FilePET1
	}
	st, err := gen.Study(
		dicomtest.WithPatient(pid, "PRIORFLOW-BENCH", fmt.Sprintf("BENCH^PATIENT%07d", sp.patient)),
		dicomtest.WithModality(sp.modality),
		dicomtest.WithTemplate(tmpl),
		dicomtest.WithStudyDate(sp.date),
		dicomtest.WithSeries(sp.series),
		dicomtest.WithInstancesPerSeries(sp.instances),
		dicomtest.WithStudyDescription("BENCH "+sp.modality),
	)
	if err != nil {
		return nil, err
	}
	sf := &StudyFiles{StudyInstanceUID: st.StudyInstanceUID, PatientID: pid, Modality: sp.modality, Large: sp.large, Series: sp.series}
	for j, in := range st.Instances() {
		path := filepath.Join(dir, fmt.Sprintf("%05d-%03d.dcm", i, j))
		if err := os.WriteFile(path, in.Bytes, 0o640); err != nil {
			return nil, err
		}
		sf.Files = append(sf.Files, path)
		sf.Bytes += int64(len(in.Bytes))
	}
	return sf, nil
}

// NewGenerator returns a dicomtest.Generator for a program. Its constructor
// takes a testing.TB to fail on a missing testdata folder; programTB turns
// that failure into an error. The folder is found with "go list -m" (run
// from the module) or taken from DICOM_TESTDATA.
func NewGenerator() (g *dicomtest.Generator, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(fatal)
			if !ok {
				panic(r)
			}
			g, err = nil, errors.New(string(f))
		}
	}()
	return dicomtest.NewGenerator(programTB{}), nil
}

// programTB is the testing.TB of NewGenerator: Helper does nothing, Fatal
// and Fatalf panic with a fatal that NewGenerator recovers. The other
// methods are the nil embedded interface's; the Generator calls none.
type programTB struct{ testing.TB }

type fatal string

func (programTB) Helper()                      {}
func (programTB) Fatal(args ...any)            { panic(fatal(fmt.Sprint(args...))) }
func (programTB) Fatalf(f string, args ...any) { panic(fatal(fmt.Sprintf(f, args...))) }
