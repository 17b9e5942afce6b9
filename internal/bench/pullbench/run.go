package pullbench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/priorflow/priorflow/archive/dicomtest"
	"github.com/priorflow/priorflow/internal/bench/dicombench"
	"github.com/priorflow/priorflow/internal/database"
	"github.com/priorflow/priorflow/internal/natsjs"
	cejs "github.com/priorflow/priorflow/triggers/jetstream"
)

// Options of a run.
type Options struct {
	Gen           *dicomtest.Generator
	PrefetcherBin string // bin/prefetcher
	OrthancBin    string
	// DatabaseURL is Priorflow's database; Run migrates it. The caller
	// creates and drops it.
	DatabaseURL string
	Dir         string // the run's data: Orthancs, prefetchers, NATS

	// Throughput: Rounds studies of Instances instances (Template), each
	// pulled once by the prefetcher and once by the reference Orthanc.
	Instances int
	Rounds    int
	Template  string
	// Overhead: Warmup, then Jobs jobs of a one-instance study (64 KB MR
	// pixel data), one after the other.
	Jobs, Warmup int
	// LargeBytes is the size of the study whose pull the prefetcher's
	// peak memory is measured on (CT, 1 MB instances); 0 skips it.
	LargeBytes    int64
	UploadClients int
	// Protocol is how both pull: ProtocolWADORS (the default) or
	// ProtocolCMove. The overhead measurement times the source's HTTP
	// answers through a proxy, so it runs with WADO-RS only.
	Protocol string
}

// Protocols of a run.
const (
	ProtocolWADORS = "wado-rs"
	ProtocolCMove  = "c-move"
)

// AE titles of the source and the reference Orthanc in a C-MOVE run.
const (
	sourceAET    = "PFSOURCE"
	referenceAET = "PFREF"
)

// Results are the figures of one run.
type Results struct {
	Protocol string
	Settings []string
	Notes    []string
	Pull     *PullResult
	Overhead *OverheadResult
	Large    *LargeResult
}

// PullResult is the throughput measurement.
type PullResult struct {
	Rounds []PullRound
	// ReferenceHWM is the reference Orthanc's peak resident memory after
	// its pulls (it has served nothing else).
	ReferenceHWM int64
}

// PullRound is one study pulled by both.
type PullRound struct {
	Study           *SourceStudy
	PriorflowFirst  bool
	Priorflow       time.Duration // the retrieval: Task note before it to Task note after the study is complete
	PriorflowLoaded time.Duration // care event to job completed
	Orthanc         time.Duration // the synchronous POST .../retrieve
}

// OverheadResult is the event-to-loaded measurement of small jobs.
type OverheadResult struct {
	Samples         []OverheadSample
	AcceptEncodings []string // as the prefetcher sent them to the source
	// ReferenceAcceptEncodings are the reference Orthanc's, on an untimed
	// retrieve through the proxy.
	ReferenceAcceptEncodings []string
}

// OverheadSample decomposes one job's care event to loaded time.
type OverheadSample struct {
	Total    time.Duration // care event → job completed (Task completed)
	Plan     time.Duration // care event → job row (planner)
	Queue    time.Duration // job row → first request to the source (JetStream, claim, Task note)
	Search   time.Duration // first request → WADO-RS request (QIDO-RS, selection, remote ImagingStudy)
	Transfer time.Duration // WADO-RS request → last byte of its answer
	Finish   time.Duration // last byte → job completed (index, ImagingStudy local, Provenance, AuditEvent, Task)
}

// Overhead is everything but the transfer.
func (s OverheadSample) Overhead() time.Duration { return s.Total - s.Transfer }

// LargeResult is the large pull.
type LargeResult struct {
	Study *SourceStudy
	Job   *Job
	// IdleHWM is the prefetcher's peak resident memory once started,
	// before the pull; HWM after the pull; MaxRSS the largest of the
	// VmRSS samples taken every 100 ms during it.
	IdleHWM, HWM, MaxRSS int64
}

// Run generates the studies, starts the source and reference Orthancs,
// an embedded NATS and one prefetcher per measurement, and measures.
func Run(ctx context.Context, opt Options, log *slog.Logger) (*Results, error) {
	if opt.Gen == nil || opt.Instances < 1 || opt.Rounds < 1 || opt.Jobs < 1 || opt.Warmup < 0 || opt.LargeBytes < 0 {
		return nil, errors.New("pullbench.Run: generator, instances, rounds and jobs are required")
	}
	if opt.Template == "" {
		opt.Template = dicomtest.FileCTMulti
	}
	if opt.Protocol == "" {
		opt.Protocol = ProtocolWADORS
	}
	cmove := opt.Protocol == ProtocolCMove
	if !cmove && opt.Protocol != ProtocolWADORS {
		return nil, fmt.Errorf("pullbench.Run: protocol %q: want %s or %s", opt.Protocol, ProtocolWADORS, ProtocolCMove)
	}
	dicomAET := func(aet string) string {
		if cmove {
			return aet
		}
		return ""
	}
	client := dicombench.NewClient(8)
	plain := &http.Client{Timeout: 30 * time.Minute, Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 8}}

	// The source: Orthanc's default HTTP compression on, so a client that
	// asked for gzip would get it (and be slowed down).
	src, err := dicombench.StartOrthancWith(ctx, client, opt.OrthancBin, filepath.Join(opt.Dir, "source"),
		dicombench.OrthancOptions{HTTPCompression: true, DICOMAET: dicomAET(sourceAET)}, log)
	if err != nil {
		return nil, err
	}
	defer src.Stop(30 * time.Second)
	// The recording proxy in front of the source (measurement 2): the
	// reference knows it too, to show what its requests ask for.
	proxy, err := StartProxy(src.URL)
	if err != nil {
		return nil, err
	}
	defer proxy.Close()
	ref, err := dicombench.StartOrthancWith(ctx, client, opt.OrthancBin, filepath.Join(opt.Dir, "reference"),
		dicombench.OrthancOptions{Servers: map[string]string{"source": src.URL + "/dicom-web/", "proxied": proxy.URL + "/dicom-web/"},
			DICOMAET: dicomAET(referenceAET)}, log)
	if err != nil {
		return nil, err
	}
	defer ref.Stop(30 * time.Second)
	reference := &Orthanc{URL: ref.URL, Server: "source", HTTP: plain}
	access := DICOMweb(src.URL + "/dicom-web")
	if cmove {
		// The source knows both pullers as modalities (their AE titles and
		// Storage SCPs); the reference knows the source.
		scpPort, err := dicombench.FreePort()
		if err != nil {
			return nil, err
		}
		source := &Orthanc{URL: src.URL, HTTP: plain}
		if err := source.AddModality(ctx, "reference", referenceAET, ref.DICOMPort); err != nil {
			return nil, err
		}
		if err := source.AddModality(ctx, "priorflow", PrefetcherAET, scpPort); err != nil {
			return nil, err
		}
		if err := reference.AddModality(ctx, "source", sourceAET, src.DICOMPort); err != nil {
			return nil, err
		}
		reference.AET = referenceAET
		access = CMove(src.DICOMPort, sourceAET, scpPort)
	}

	nsrv, err := natsjs.StartEmbedded(natsjs.EmbeddedConfig{StoreDir: filepath.Join(opt.Dir, "nats"), Addr: "127.0.0.1:0"}, log)
	if err != nil {
		return nil, err
	}
	defer nsrv.Shutdown()
	nc, js, err := natsjs.Connect(ctx, nsrv.URL(), "pullbench", log)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	if err := cejs.EnsureStream(ctx, js, cejs.StreamConfig{}); err != nil {
		return nil, err
	}
	pub, err := cejs.NewPublisher(js)
	if err != nil {
		return nil, err
	}
	db, err := pgxpool.New(ctx, opt.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("pullbench: database: %w", err)
	}
	defer db.Close()
	if err := database.Migrate(ctx, db); err != nil {
		return nil, err
	}
	node, err := NewNode(db, pub, log)
	if err != nil {
		return nil, err
	}

	// The studies at the source, and their patients here.
	up := &Uploader{Gen: opt.Gen, URL: src.URL, Clients: max(opt.UploadClients, 1), HTTP: plain}
	t0 := time.Now()
	add := func(spec StudySpec) (*SourceStudy, error) {
		st, err := up.Upload(ctx, spec)
		if err != nil {
			return nil, err
		}
		return st, node.AddPatient(ctx, spec.PatientID)
	}
	var big []*SourceStudy
	for r := range opt.Rounds {
		st, err := add(StudySpec{PatientID: fmt.Sprintf("PULL-T%d", r+1), Template: opt.Template, Instances: opt.Instances, PerSeries: 100})
		if err != nil {
			return nil, err
		}
		big = append(big, st)
	}
	var small []*SourceStudy
	for i := range opt.Warmup + opt.Jobs {
		if cmove {
			break // no overhead measurement
		}
		st, err := add(StudySpec{PatientID: fmt.Sprintf("PULL-S%04d", i+1), Template: dicomtest.FileMR, Instances: 1, PerSeries: 1})
		if err != nil {
			return nil, err
		}
		small = append(small, st)
	}
	var large *SourceStudy
	if opt.LargeBytes > 0 {
		fi, err := templateSize(opt.Gen, dicomtest.FileCTMulti)
		if err != nil {
			return nil, err
		}
		n := int((opt.LargeBytes + fi - 1) / fi)
		log.Info("uploading the large study", "instances", n, "gb", float64(opt.LargeBytes)/1e9, "load", dicombench.LoadAvg())
		if large, err = add(StudySpec{PatientID: "PULL-L1", Template: dicomtest.FileCTMulti, Instances: n, PerSeries: 100}); err != nil {
			return nil, err
		}
	}
	log.Info("source ready", "elapsed", time.Since(t0).Round(time.Second), "load", dicombench.LoadAvg())

	res := &Results{Protocol: opt.Protocol, Settings: []string{
		fmt.Sprintf("source: Orthanc with its DICOMweb plugin and Orthanc's default `HttpCompressionEnabled: true` (it gzips for clients that ask); %d studies uploaded with `POST /instances`", len(big)+len(small)+int(min(opt.LargeBytes, 1))),
		"Priorflow: the real `bin/prefetcher` (planner + prefetch worker, default settings), its own database, file blob store and spool on the same disk, an embedded NATS JetStream in the benchmark process; each pull is started by an ED arrival care event on CARE_EVENTS (stat lane) and runs the real path: planner job and Task, network search (QIDO-RS), WADO-RS `GET /studies/{uid}` with `transfer-syntax=*`, spool, blob store and index, ImagingStudy made local, Provenance, AuditEvent, Task completed",
		"reference: a second Orthanc (same package, SQLite index, no storage compression) whose DICOMweb plugin knows the source (`DicomWeb.Servers`) and pulls with the synchronous `POST /dicom-web/servers/source/retrieve {\"Resources\":[{\"Study\":uid}]}` (one WADO-RS `GET /studies/{uid}`); the answer returns once every instance is stored; the instance count is checked after each pull",
	}}
	if cmove {
		res.Settings[1] = "Priorflow: the real `bin/prefetcher` (planner + prefetch worker, default settings), its own database, file blob store and spool on the same disk, an embedded NATS JetStream in the benchmark process; each pull is started by an ED arrival care event on CARE_EVENTS (stat lane) and runs the real path: planner job and Task, network search (C-FIND, study and series level), a STUDY-level C-MOVE to the prefetcher's Storage SCP (`retrieveMethod: c-move`), spool, blob store and index, ImagingStudy made local, Provenance, AuditEvent, Task completed"
		res.Settings[2] = "reference: a second Orthanc (same package, SQLite index, no storage compression) that knows the source as a DICOM modality and pulls with the synchronous `POST /modalities/source/move {\"Level\":\"Study\",\"TargetAet\":<its own>}` (one C-MOVE; the source's C-STOREs go to its DICOM port); the answer returns once the source has sent every instance; the instance count is checked after each pull"
	}

	// 1. Throughput.
	p1, err := StartPrefetcher(ctx, client, PrefetcherConfig{Bin: opt.PrefetcherBin, DatabaseURL: opt.DatabaseURL, NATSURL: nsrv.URL(),
		DataDir: filepath.Join(opt.Dir, "prefetcher-pull"), Source: access}, log)
	if err != nil {
		return nil, err
	}
	res.Pull, err = measurePull(ctx, client, node, reference, p1, src.URL, big, !cmove, log)
	p1.Stop(30 * time.Second)
	if err != nil {
		return nil, err
	}
	if m, err := ReadMemory(ref.Pid()); err == nil {
		res.Pull.ReferenceHWM = m.HWM
	}
	res.Settings = append(res.Settings, fmt.Sprintf("throughput: %d rounds; in each, the same study of %d instances pulled by both, one after the other, the first of the two alternating; an untimed WADO-RS read of every study from the source first, so that both find its files in the page cache",
		opt.Rounds, opt.Instances))

	// 2. Overhead beyond the transfer.
	if !cmove {
		if err := overhead(ctx, client, opt, node, proxy, nsrv.URL(), ref.URL, plain, small, res, log); err != nil {
			return nil, err
		}
	}

	// 3. Peak memory of a large pull.
	if large != nil {
		p3, err := StartPrefetcher(ctx, client, PrefetcherConfig{Bin: opt.PrefetcherBin, DatabaseURL: opt.DatabaseURL, NATSURL: nsrv.URL(),
			DataDir: filepath.Join(opt.Dir, "prefetcher-large"), Source: access}, log)
		if err != nil {
			return nil, err
		}
		res.Large, err = measureLarge(ctx, node, p3, large, !cmove, log)
		p3.Stop(30 * time.Second)
		if err != nil {
			return nil, err
		}
		res.Settings = append(res.Settings, "large pull: a fresh prefetcher process (no GOMEMLIMIT, default GOGC); its VmHWM from /proc/<pid>/status once started and again after the pull, and its VmRSS sampled every 100 ms during it")
	}
	return res, nil
}

// overhead runs the overhead measurement into res.
func overhead(ctx context.Context, client *dicombench.Client, opt Options, node *Node, proxy *Proxy, natsURL, refURL string,
	plain *http.Client, small []*SourceStudy, res *Results, log *slog.Logger) error {
	p2, err := StartPrefetcher(ctx, client, PrefetcherConfig{Bin: opt.PrefetcherBin, DatabaseURL: opt.DatabaseURL, NATSURL: natsURL,
		DataDir: filepath.Join(opt.Dir, "prefetcher-overhead"), Source: DICOMweb(proxy.URL + "/dicom-web")}, log)
	if err != nil {
		return err
	}
	res.Overhead, err = measureOverhead(ctx, node, proxy, p2, small, opt.Warmup, log)
	p2.Stop(30 * time.Second)
	if err != nil {
		return err
	}
	// What the reference asks the source for, through the proxy (untimed).
	seen := len(proxy.Requests())
	proxied := &Orthanc{URL: refURL, Server: "proxied", HTTP: plain}
	if _, err := proxied.Retrieve(ctx, small[0].StudyInstanceUID, small[0].Instances); err != nil {
		return err
	}
	for _, r := range proxy.Requests()[seen:] {
		if !slices.Contains(res.Overhead.ReferenceAcceptEncodings, r.AcceptEncoding) {
			res.Overhead.ReferenceAcceptEncodings = append(res.Overhead.ReferenceAcceptEncodings, r.AcceptEncoding)
		}
	}
	res.Settings = append(res.Settings, fmt.Sprintf("overhead: %d jobs (after %d untimed), one at a time, each for its own patient with a one-instance study (64 KB); the prefetcher reaches the source through a recording reverse proxy in the benchmark process, which times every request from its arrival to the last byte of the answer; times are the prefetcher's own records (care event time, job row creation, job completion), the proxy's, on one clock",
		opt.Jobs, opt.Warmup))
	return nil
}

func templateSize(g *dicomtest.Generator, name string) (int64, error) {
	st, err := g.Study(dicomtest.WithTemplate(name))
	if err != nil {
		return 0, err
	}
	return int64(len(st.Instances()[0].Bytes)), nil
}

// loaded checks that the archive indexed every instance of a study.
func (n *Node) loaded(ctx context.Context, st *SourceStudy) error {
	var got int
	if err := n.DB.QueryRow(ctx, `SELECT count(*) FROM dicom_instance WHERE study_uid = $1`, st.StudyInstanceUID).Scan(&got); err != nil {
		return fmt.Errorf("instances of %s: %w", st.StudyInstanceUID, err)
	}
	if got != st.Instances {
		return fmt.Errorf("study %s: %d instances indexed, want %d", st.StudyInstanceUID, got, st.Instances)
	}
	return nil
}

// measurePull times the pulls of studies. exact: the prefetcher receives
// the source's files byte for byte (WADO-RS); a DIMSE transfer carries
// the data sets only, each given File Meta Information of its own.
func measurePull(ctx context.Context, c *dicombench.Client, node *Node, ref *Orthanc, p *dicombench.Process, srcURL string,
	studies []*SourceStudy, exact bool, log *slog.Logger) (*PullResult, error) {
	source := dicombench.Server{Name: "source", DICOMweb: srcURL + "/dicom-web"}
	for _, st := range studies {
		_, payload, n, err := c.RetrieveStudy(ctx, source, st.StudyInstanceUID, true)
		if err != nil {
			return nil, err
		}
		if n != st.Instances || payload != st.Bytes {
			return nil, fmt.Errorf("source study %s: %d instances of %d bytes, want %d of %d", st.StudyInstanceUID, n, payload, st.Instances, st.Bytes)
		}
	}
	out := &PullResult{}
	for r, st := range studies {
		round := PullRound{Study: st, PriorflowFirst: r%2 == 0}
		priorflow := func() error {
			id, _, err := node.Arrive(ctx, st.PatientID)
			if err != nil {
				return err
			}
			j, err := node.WaitJob(ctx, id, 30*time.Minute, p.Exited())
			if err != nil {
				return fmt.Errorf("%w\n%s", err, p.Tail())
			}
			if exact && j.Bytes != st.Bytes {
				return fmt.Errorf("prefetch of %s: %d bytes received, want %d", st.StudyInstanceUID, j.Bytes, st.Bytes)
			}
			round.Priorflow, round.PriorflowLoaded = j.PullEnd.Sub(j.PullStart), j.Finished.Sub(j.EventAt)
			return node.loaded(ctx, st)
		}
		orthanc := func() (err error) {
			round.Orthanc, err = ref.Pull(ctx, st.StudyInstanceUID, st.Instances)
			return err
		}
		order := []func() error{priorflow, orthanc}
		if !round.PriorflowFirst {
			order[0], order[1] = orthanc, priorflow
		}
		for _, f := range order {
			if err := f(); err != nil {
				return nil, err
			}
		}
		log.Info("pulled", "round", r+1, "instances", st.Instances, "priorflow", round.Priorflow.Round(time.Millisecond),
			"orthanc", round.Orthanc.Round(time.Millisecond), "load", dicombench.LoadAvg())
		out.Rounds = append(out.Rounds, round)
	}
	return out, nil
}

func measureOverhead(ctx context.Context, node *Node, proxy *Proxy, p *dicombench.Process, studies []*SourceStudy, warmup int,
	log *slog.Logger) (*OverheadResult, error) {
	type done struct {
		st  *SourceStudy
		job *Job
	}
	var jobs []done
	for _, st := range studies {
		id, _, err := node.Arrive(ctx, st.PatientID)
		if err != nil {
			return nil, err
		}
		j, err := node.WaitJob(ctx, id, 2*time.Minute, p.Exited())
		if err != nil {
			return nil, fmt.Errorf("%w\n%s", err, p.Tail())
		}
		if err := node.loaded(ctx, st); err != nil {
			return nil, err
		}
		jobs = append(jobs, done{st, j})
	}
	reqs := proxy.Requests()
	out := &OverheadResult{}
	for _, r := range reqs {
		if !slices.Contains(out.AcceptEncodings, r.AcceptEncoding) {
			out.AcceptEncodings = append(out.AcceptEncodings, r.AcceptEncoding)
		}
	}
	for _, d := range jobs[warmup:] {
		mine := Of(reqs, d.st.PatientID, d.st.StudyInstanceUID)
		var first, wado *Request
		for i := range mine {
			r := &mine[i]
			if first == nil || r.Start.Before(first.Start) {
				first = r
			}
			if IsStudyRetrieve(*r, d.st.StudyInstanceUID) {
				if wado != nil {
					return nil, fmt.Errorf("study %s retrieved twice", d.st.StudyInstanceUID)
				}
				wado = r
			}
		}
		if wado == nil {
			return nil, fmt.Errorf("study %s: no WADO-RS retrieve went through the proxy", d.st.StudyInstanceUID)
		}
		j := d.job
		out.Samples = append(out.Samples, OverheadSample{
			Total:    j.Finished.Sub(j.EventAt),
			Plan:     j.Planned.Sub(j.EventAt),
			Queue:    first.Start.Sub(j.Planned),
			Search:   wado.Start.Sub(first.Start),
			Transfer: wado.End.Sub(wado.Start),
			Finish:   j.Finished.Sub(wado.End),
		})
	}
	log.Info("overhead measured", "jobs", len(out.Samples), "load", dicombench.LoadAvg())
	return out, nil
}

// measureLarge measures the prefetcher's memory during the pull of st;
// exact as for measurePull.
func measureLarge(ctx context.Context, node *Node, p *dicombench.Process, st *SourceStudy, exact bool, log *slog.Logger) (*LargeResult, error) {
	idle, err := ReadMemory(p.Pid())
	if err != nil {
		return nil, err
	}
	out := &LargeResult{Study: st, IdleHWM: idle.HWM}
	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if m, err := ReadMemory(p.Pid()); err == nil {
				out.MaxRSS = max(out.MaxRSS, m.RSS)
			}
			select {
			case <-sctx.Done():
				return
			case <-t.C:
			}
		}
	})
	log.Info("large pull", "instances", st.Instances, "gb", float64(st.Bytes)/1e9, "load", dicombench.LoadAvg())
	id, _, err := node.Arrive(ctx, st.PatientID)
	if err == nil {
		out.Job, err = node.WaitJob(ctx, id, 60*time.Minute, p.Exited())
	}
	stop()
	wg.Wait()
	if err != nil {
		return nil, fmt.Errorf("%w\n%s", err, p.Tail())
	}
	end, err := ReadMemory(p.Pid())
	if err != nil {
		return nil, err
	}
	out.HWM = end.HWM
	if exact && out.Job.Bytes != st.Bytes {
		return nil, fmt.Errorf("large pull: %d bytes received, want %d", out.Job.Bytes, st.Bytes)
	}
	log.Info("large pull done", "elapsed", out.Job.PullEnd.Sub(out.Job.PullStart).Round(time.Millisecond), "vmhwm_mb", out.HWM>>20)
	return out, node.loaded(ctx, st)
}
