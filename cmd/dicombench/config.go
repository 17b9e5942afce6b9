package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/priorflow/priorflow/internal/bench"
	"github.com/priorflow/priorflow/internal/database"
)

// config is dicombench's configuration: flags, a few also from the
// environment.
type config struct {
	// Corpus.
	Instances      int
	Studies        int
	Patients       int
	LargeStudies   int
	LargeInstances int
	Seed           uint64
	GenWorkers     int
	// Servers.
	APIBin      string
	OrthancBin  string
	DatabaseURL string
	TempDir     string
	Keep        bool
	// Ingest.
	Clients int
	Batch   int
	Native  bool
	// QIDO-RS.
	QIDORequests int
	QIDOClients  int
	QIDOBlock    int
	QIDOMaxTime  time.Duration
	QIDOVerify   int
	// WADO-RS.
	WADORounds int
	// Output.
	Out        string
	Doc        string
	CPUProfile string
}

const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/priorflow_bench_dicom?sslmode=disable"

func loadConfig(args []string) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("dicombench", flag.ContinueOnError)
	fs.IntVar(&c.Instances, "instances", 20000, "instances to generate and store in each server")
	fs.IntVar(&c.Studies, "studies", 0, "studies they form (default instances/2)")
	fs.IntVar(&c.Patients, "patients", 0, "patients the studies belong to (default studies/2)")
	fs.IntVar(&c.LargeStudies, "large-studies", 50, "studies of -large-instances instances each, retrieved by WADO-RS")
	fs.IntVar(&c.LargeInstances, "large-instances", 40, "instances in each large study (fewer when the corpus is too small)")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of the corpus layout and the QIDO samples (UIDs are random)")
	fs.IntVar(&c.GenWorkers, "gen-workers", runtime.NumCPU(), "concurrent study generators")
	fs.StringVar(&c.APIBin, "api-bin", "bin/api", "the Priorflow API binary (go build -o bin/ ./cmd/api)")
	fs.StringVar(&c.OrthancBin, "orthanc-bin", "Orthanc", "the Orthanc binary (make deps installs it)")
	fs.StringVar(&c.DatabaseURL, "database-url", env("BENCH_DICOM_DATABASE_URL", defaultDatabaseURL), "Priorflow's database (BENCH_DICOM_DATABASE_URL), dropped before and after the run; its name must contain bench")
	fs.StringVar(&c.TempDir, "tmp", os.TempDir(), "where the run's temporary directory (corpus, server data) is made")
	fs.BoolVar(&c.Keep, "keep", false, "keep the temporary directory and the database after the run (for EXPLAIN and profiling)")
	fs.IntVar(&c.Clients, "clients", 4, "concurrent ingest clients")
	fs.IntVar(&c.Batch, "batch", 10, "instances per STOW-RS request")
	fs.BoolVar(&c.Native, "native", true, "also measure Orthanc's native POST /instances on a second, fresh Orthanc")
	fs.IntVar(&c.QIDORequests, "qido-requests", 1000, "QIDO-RS requests per server")
	fs.IntVar(&c.QIDOClients, "qido-clients", 4, "concurrent QIDO-RS clients")
	fs.IntVar(&c.QIDOBlock, "qido-block", 100, "QIDO-RS requests per block; servers alternate block by block")
	fs.DurationVar(&c.QIDOMaxTime, "qido-max-time", 3*time.Minute, "time limit of the QIDO-RS measurement, all servers together")
	fs.IntVar(&c.QIDOVerify, "qido-verify", 20, "QIDO-RS samples whose match count is checked on every server before timing")
	fs.IntVar(&c.WADORounds, "wado-rounds", 3, "WADO-RS rounds over the large studies")
	fs.StringVar(&c.Out, "out", "", "also write the Markdown results to this file")
	fs.StringVar(&c.Doc, "doc", "", "update the results section of this Markdown file (docs/performance.md) between its dicombench markers")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write a CPU profile of this client to the file")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if c.Studies == 0 {
		c.Studies = max(c.Instances/2, 1)
	}
	if c.Patients == 0 {
		c.Patients = max(c.Studies/2, 1)
	}
	return c, c.validate()
}

// validate reports every problem at once.
func (c *config) validate() error {
	var errs []error
	if pc, err := pgx.ParseConfig(c.DatabaseURL); err != nil {
		errs = append(errs, errors.New("-database-url cannot be parsed")) // the URL may hold a password
	} else {
		dev, _ := pgx.ParseConfig(database.DefaultURL)
		if !bench.IsLoopback(pc.Host) && !strings.HasPrefix(pc.Host, "/") {
			errs = append(errs, fmt.Errorf("-database-url host %q is not loopback", pc.Host))
		}
		if pc.Database == dev.Database || !strings.Contains(pc.Database, "bench") {
			errs = append(errs, fmt.Errorf("-database-url names database %q; the benchmark drops and uses its own, with bench in its name", pc.Database))
		}
	}
	positive := []struct {
		name string
		v    int
	}{{"-instances", c.Instances}, {"-studies", c.Studies}, {"-patients", c.Patients}, {"-large-studies", c.LargeStudies},
		{"-large-instances", c.LargeInstances}, {"-gen-workers", c.GenWorkers}, {"-clients", c.Clients}, {"-batch", c.Batch},
		{"-qido-requests", c.QIDORequests}, {"-qido-clients", c.QIDOClients}, {"-qido-block", c.QIDOBlock}, {"-wado-rounds", c.WADORounds}}
	for _, p := range positive {
		if p.v < 1 {
			errs = append(errs, fmt.Errorf("%s must be positive", p.name))
		}
	}
	if c.Instances > 1_000_000 {
		errs = append(errs, errors.New("-instances must be at most 1,000,000"))
	}
	if c.Clients > 64 || c.QIDOClients > 64 || c.GenWorkers > 64 {
		errs = append(errs, errors.New("-clients, -qido-clients and -gen-workers must be at most 64"))
	}
	if c.Batch > 1000 {
		errs = append(errs, errors.New("-batch must be at most 1000"))
	}
	if c.QIDOVerify < 0 {
		errs = append(errs, errors.New("-qido-verify must not be negative"))
	}
	if c.QIDOMaxTime <= 0 || c.QIDOMaxTime > time.Hour {
		errs = append(errs, errors.New("-qido-max-time must be in (0, 1h]"))
	}
	if c.WADORounds > 100 {
		errs = append(errs, errors.New("-wado-rounds must be at most 100"))
	}
	return errors.Join(errs...)
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}
