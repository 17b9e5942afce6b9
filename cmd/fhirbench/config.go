package main

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/priorflow/priorflow/internal/bench"
	"github.com/priorflow/priorflow/internal/database"
)

// config is fhirbench's configuration: flags, the two addresses also from
// the environment.
type config struct {
	FHIRBase    string
	DatabaseURL string
	Studies     int
	Seed        uint64
	// Load.
	BundleStudies int
	LoadClients   int
	LoadOnly      bool
	// Search.
	Clients  int
	Requests int
	Block    int
	MaxTime  time.Duration
	Drain    time.Duration
	Pages    int
	PageSize int
	Samples  int
	Verify   int
	Explain  bool
	Only     string
	Out      string
}

const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/priorflow_bench?sslmode=disable"

func loadConfig(args []string) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("fhirbench", flag.ContinueOnError)
	fs.StringVar(&c.FHIRBase, "fhir-base", env("BENCH_FHIR_BASE", "http://127.0.0.1:8099/fhir"), "FHIR base of the API under test, on loopback (BENCH_FHIR_BASE)")
	fs.StringVar(&c.DatabaseURL, "database-url", env("BENCH_DATABASE_URL", defaultDatabaseURL), "the API's database, for the raw SQL side (BENCH_DATABASE_URL); never the development database")
	fs.IntVar(&c.Studies, "studies", 1_000_000, "ImagingStudy resources in the archive (about one patient per 5)")
	fs.Uint64Var(&c.Seed, "seed", 1, "generator and sampling seed")
	fs.IntVar(&c.BundleStudies, "bundle", 200, "studies per transaction Bundle (whole patients are added until it is reached)")
	fs.IntVar(&c.LoadClients, "load-clients", 4, "concurrent clients posting Bundles")
	fs.BoolVar(&c.LoadOnly, "load-only", false, "load (if needed) and stop")
	fs.IntVar(&c.Clients, "clients", 4, "concurrent clients while measuring searches")
	fs.IntVar(&c.Requests, "requests", 2000, "requests per query and side (pages for the paged scan)")
	fs.IntVar(&c.Block, "block", 100, "requests per alternating FHIR/SQL block")
	fs.DurationVar(&c.MaxTime, "max-time", 90*time.Second, "time limit per query, both sides")
	fs.DurationVar(&c.Drain, "drain", 30*time.Minute, "longest wait before measuring for the subscription change events a load queued to be relayed (0: do not wait)")
	fs.IntVar(&c.Pages, "pages", 10, "pages followed per walk of the paged _lastUpdated scan")
	fs.IntVar(&c.PageSize, "page-size", 100, "entries per page (_count) of the paged _lastUpdated scan, at most 1000")
	fs.IntVar(&c.Samples, "samples", 1000, "randomly chosen studies the searches look up")
	fs.IntVar(&c.Verify, "verify", 20, "samples per query whose FHIR and SQL results are compared id by id")
	fs.BoolVar(&c.Explain, "explain", true, "append EXPLAIN (ANALYZE, BUFFERS) of each raw query")
	fs.StringVar(&c.Only, "only", "", "measure only the queries whose name contains this")
	fs.StringVar(&c.Out, "out", "", "also write the Markdown report to this file")
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
	if u, err := url.Parse(c.FHIRBase); err != nil || !bench.IsLoopback(u.Hostname()) || u.Scheme != "http" {
		errs = append(errs, fmt.Errorf("-fhir-base %q must be an http URL on a loopback address", c.FHIRBase))
	}
	if pc, err := pgx.ParseConfig(c.DatabaseURL); err != nil {
		errs = append(errs, errors.New("-database-url cannot be parsed")) // the URL may hold a password
	} else {
		dev, _ := pgx.ParseConfig(database.DefaultURL)
		if !bench.IsLoopback(pc.Host) && !strings.HasPrefix(pc.Host, "/") {
			errs = append(errs, fmt.Errorf("-database-url host %q is not loopback", pc.Host))
		}
		if pc.Database == dev.Database || !strings.Contains(pc.Database, "bench") {
			errs = append(errs, fmt.Errorf("-database-url names database %q; the benchmark uses its own, with bench in its name", pc.Database))
		}
	}
	positive := map[string]int{"-studies": c.Studies, "-bundle": c.BundleStudies, "-load-clients": c.LoadClients,
		"-clients": c.Clients, "-requests": c.Requests, "-block": c.Block, "-pages": c.Pages, "-page-size": c.PageSize, "-samples": c.Samples}
	for _, name := range []string{"-studies", "-bundle", "-load-clients", "-clients", "-requests", "-block", "-pages", "-page-size", "-samples"} {
		if positive[name] < 1 {
			errs = append(errs, fmt.Errorf("%s must be positive", name))
		}
	}
	if c.PageSize > 1000 {
		errs = append(errs, errors.New("-page-size must be at most 1000 (the server's largest _count)"))
	}
	if c.BundleStudies > 2000 {
		errs = append(errs, errors.New("-bundle must be at most 2000 (the server takes at most 10000 entries)"))
	}
	if c.Clients > 64 || c.LoadClients > 64 {
		errs = append(errs, errors.New("-clients and -load-clients must be at most 64"))
	}
	if c.Drain < 0 {
		errs = append(errs, errors.New("-drain must not be negative"))
	}
	if c.MaxTime <= 0 || c.MaxTime > time.Hour {
		errs = append(errs, errors.New("-max-time must be in (0, 1h]"))
	}
	if c.Verify < 0 {
		errs = append(errs, errors.New("-verify must not be negative"))
	}
	return errors.Join(errs...)
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}
