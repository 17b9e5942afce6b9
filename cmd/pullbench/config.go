package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/priorflow/priorflow/internal/bench"
	"github.com/priorflow/priorflow/internal/bench/pullbench"
	"github.com/priorflow/priorflow/internal/database"
)

// config is pullbench's configuration: flags, a few also from the
// environment.
type config struct {
	Instances     int
	Rounds        int
	Jobs          int
	Warmup        int
	LargeGB       float64
	UploadClients int
	Protocol      string

	PrefetcherBin string
	OrthancBin    string
	DatabaseURL   string
	TempDir       string
	Keep          bool

	Out string
	Doc string
}

const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/priorflow_bench_pull?sslmode=disable"

func loadConfig(args []string) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("pullbench", flag.ContinueOnError)
	fs.IntVar(&c.Instances, "instances", 300, "instances of each study of the throughput rounds (CT, 1 MB each)")
	fs.IntVar(&c.Rounds, "rounds", 3, "throughput rounds: one study each, pulled by both")
	fs.IntVar(&c.Jobs, "jobs", 100, "one-instance jobs of the overhead measurement")
	fs.IntVar(&c.Warmup, "warmup", 5, "untimed jobs before them")
	fs.Float64Var(&c.LargeGB, "large-gb", envFloat("BENCH_PULL_LARGE_GB", 2), "size in GB (10^9 bytes) of the study whose pull the prefetcher's peak memory is measured on; 0 skips it (BENCH_PULL_LARGE_GB)")
	fs.IntVar(&c.UploadClients, "upload-clients", 4, "concurrent uploads into the source")
	fs.StringVar(&c.Protocol, "protocol", pullbench.ProtocolWADORS, "how both pull: wado-rs, or c-move (the reference Orthanc by C-MOVE to itself, the prefetcher to its Storage SCP; no overhead measurement)")
	fs.StringVar(&c.PrefetcherBin, "prefetcher-bin", "bin/prefetcher", "the prefetcher binary (go build -o bin/ ./cmd/prefetcher)")
	fs.StringVar(&c.OrthancBin, "orthanc-bin", "Orthanc", "the Orthanc binary (make deps installs it)")
	fs.StringVar(&c.DatabaseURL, "database-url", env("BENCH_PULL_DATABASE_URL", defaultDatabaseURL), "Priorflow's database (BENCH_PULL_DATABASE_URL), dropped before and after the run; its name must contain bench")
	fs.StringVar(&c.TempDir, "tmp", os.TempDir(), "where the run's temporary directory (Orthanc storage, prefetcher data) is made")
	fs.BoolVar(&c.Keep, "keep", false, "keep the temporary directory and the database after the run")
	fs.StringVar(&c.Out, "out", "", "also write the Markdown results to this file")
	fs.StringVar(&c.Doc, "doc", "", "update the results section of this Markdown file (docs/performance.md) between its pullbench markers")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
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
	for _, p := range []struct {
		name string
		v    int
	}{{"-instances", c.Instances}, {"-rounds", c.Rounds}, {"-jobs", c.Jobs}, {"-upload-clients", c.UploadClients}} {
		if p.v < 1 {
			errs = append(errs, fmt.Errorf("%s must be positive", p.name))
		}
	}
	if c.Warmup < 0 {
		errs = append(errs, errors.New("-warmup must not be negative"))
	}
	if c.Instances > 100_000 || c.Rounds > 20 || c.Jobs > 10_000 || c.UploadClients > 64 {
		errs = append(errs, errors.New("at most 100,000 -instances, 20 -rounds, 10,000 -jobs and 64 -upload-clients"))
	}
	if c.Protocol != pullbench.ProtocolWADORS && c.Protocol != pullbench.ProtocolCMove {
		errs = append(errs, fmt.Errorf("-protocol %q: want wado-rs or c-move", c.Protocol))
	}
	if c.Protocol == pullbench.ProtocolCMove && c.Doc != "" {
		// The generated section of docs/performance.md is the WADO-RS run.
		errs = append(errs, errors.New("-doc takes a wado-rs run; write a c-move run with -out"))
	}
	if c.LargeGB < 0 || c.LargeGB > 20 {
		errs = append(errs, errors.New("-large-gb must be in [0, 20]"))
	}
	return errors.Join(errs...)
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

func envFloat(name string, def float64) float64 {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			return f
		}
	}
	return def
}
