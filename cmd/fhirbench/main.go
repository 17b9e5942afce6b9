// Command fhirbench loads a synthetic archive of ImagingStudy into a running
// Priorflow API through transaction Bundles and measures search latency
// against the raw SQL baseline (see docs/performance.md; `make bench` runs it
// through scripts/bench.sh, which starts the server).
//
// Usage:
//
//	fhirbench [flags]
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/priorflow/priorflow/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "fhirbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(args)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))

	pcfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("database url: %w", err)
	}
	pcfg.MaxConns = int32(cfg.Clients + 2)
	db, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer db.Close()
	if err := db.Ping(ctx); err != nil {
		return fmt.Errorf("open database (is the API running on it? it creates and migrates it): %w", err)
	}
	client, err := bench.NewClient(cfg.FHIRBase, max(cfg.Clients, cfg.LoadClients)*2)
	if err != nil {
		return err
	}

	rep := &bench.Report{Studies: cfg.Studies, Plans: map[string]string{}}
	rep.Machine = machine(ctx, db)
	rep.Settings = []string{
		fmt.Sprintf("load: seed %d, ~%d studies per transaction Bundle (whole patients), %d concurrent clients", cfg.Seed, cfg.BundleStudies, cfg.LoadClients),
		fmt.Sprintf("search: %d requests per query and side (pages for the paged scan, %d pages of %d entries per walk), %d concurrent clients, blocks of %d alternating FHIR/SQL, at most %s per query, %d sampled studies",
			cfg.Requests, cfg.Pages, cfg.PageSize, cfg.Clients, cfg.Block, cfg.MaxTime, cfg.Samples),
	}

	have, err := bench.CountStudies(ctx, db)
	if err != nil {
		return err
	}
	switch {
	case have == cfg.Studies:
		log.Info("database already holds the archive; skipping the load", "studies", have)
		rep.Settings = append(rep.Settings, "load skipped: the database already held the archive")
	case have < cfg.Studies:
		log.Info("loading", "studies", cfg.Studies, "already_loaded", have, "bundle", cfg.BundleStudies, "clients", cfg.LoadClients)
		gen := bench.NewGenerator(cfg.Seed, cfg.Studies)
		opt := bench.LoadOptions{BundleStudies: cfg.BundleStudies, Clients: cfg.LoadClients}
		if have > 0 {
			// Resume an interrupted load of the same archive.
			opt.Loaded = func(ctx context.Context, mrns []string) (map[string]bool, error) {
				return bench.LoadedMRNs(ctx, db, mrns)
			}
			rep.Settings = append(rep.Settings, fmt.Sprintf("resumed load: %d studies were already stored", have))
		}
		autovacuum, err := bench.AutovacuumOn(ctx, db)
		if err != nil {
			return err
		}
		if !autovacuum {
			// Stand in for autovacuum's analyze, as on a production server.
			opt.Analyze = func(ctx context.Context) error { return bench.AnalyzeStats(ctx, db) }
			rep.Settings = append(rep.Settings, "autovacuum is off on this server: the load runs ANALYZE after 1,000 studies and whenever the archive has doubled")
		}
		res, err := bench.Load(ctx, client, gen, opt, log)
		if err != nil {
			return err
		}
		rep.Load = res
		log.Info("loaded", "studies", res.Studies, "patients", res.Patients, "skipped", res.Skipped, "elapsed", res.Elapsed.Round(time.Second),
			"studies_per_s", int(res.StudiesPerSecond()))
		if have, err = bench.CountStudies(ctx, db); err != nil {
			return err
		}
		if have != cfg.Studies {
			return fmt.Errorf("after the load the database holds %d studies, not %d", have, cfg.Studies)
		}
	default:
		return fmt.Errorf("the database holds %d studies, more than %d: use another database or a fresh one (scripts/bench.sh: BENCH_RESET=1)", have, cfg.Studies)
	}
	if stale, err := bench.NeedsVacuum(ctx, db); err != nil {
		return err
	} else if stale {
		t0 := time.Now()
		if err := bench.Analyze(ctx, db); err != nil {
			return err
		}
		log.Info("vacuum analyze done", "elapsed", time.Since(t0).Round(time.Second))
		rep.Settings = append(rep.Settings, fmt.Sprintf("VACUUM (ANALYZE) of the store's tables before measuring took %s", time.Since(t0).Round(time.Second)))
	}
	if err := waitForRelay(ctx, db, cfg.Drain, rep, log); err != nil {
		return err
	}
	if cfg.LoadOnly {
		rep.WriteMarkdown(stdout)
		return nil
	}

	samples, err := bench.Samples(ctx, db, cfg.Samples, cfg.Seed)
	if err != nil {
		return err
	}
	runner := bench.NewRunner(client, db, bench.Options{Requests: cfg.Requests, Clients: cfg.Clients, Block: cfg.Block,
		MaxTime: cfg.MaxTime, Pages: cfg.Pages, Verify: cfg.Verify})
	for _, q := range bench.Queries(cfg.PageSize) {
		if cfg.Only != "" && !strings.Contains(q.Name, cfg.Only) {
			continue
		}
		log.Info("measuring", "query", q.Name)
		res, err := runner.Measure(ctx, q, samples)
		if err != nil {
			return err
		}
		rep.Results = append(rep.Results, res)
		log.Info("measured", "query", q.Name, "fhir_p50", res.FHIR.P50, "fhir_p99", res.FHIR.P99, "sql_p50", res.SQL.P50, "sql_p99", res.SQL.P99)
		if cfg.Explain {
			if rep.Plans[q.Name], err = bench.Explain(ctx, db, q, samples[0]); err != nil {
				return err
			}
		}
	}
	if rep.Sizes, err = bench.Sizes(ctx, db); err != nil {
		return err
	}
	if rep.DBBytes, err = bench.DatabaseBytes(ctx, db); err != nil {
		return err
	}
	rep.Machine = append(rep.Machine, "load average at the end: "+loadavg())

	var md bytes.Buffer
	rep.WriteMarkdown(&md)
	if cfg.Out != "" {
		if err := os.WriteFile(cfg.Out, md.Bytes(), 0o644); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	}
	_, err = stdout.Write(md.Bytes())
	return err
}

// machine describes where the run happened.
func machine(ctx context.Context, db *pgxpool.Pool) []string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		mem, _, _ = strings.Cut(string(b), "\n")
		mem = strings.Join(strings.Fields(mem)[1:], " ")
	}
	pg, err := bench.ServerVersion(ctx, db)
	if err != nil {
		pg = "unknown: " + err.Error()
	}
	return []string{
		fmt.Sprintf("machine: %d × %s, MemTotal %s; server, PostgreSQL and this client share the cores", runtime.NumCPU(), cpu, mem),
		"PostgreSQL: " + pg,
		fmt.Sprintf("client: %s, %s", runtime.Version(), time.Now().UTC().Format(time.RFC3339)),
		"load average at the start: " + loadavg(),
	}
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// waitForRelay waits for the subscription change events a load queued to
// be relayed to JetStream, so that the searches are not measured beside
// the relay, and says in the report what it found.
func waitForRelay(ctx context.Context, db *pgxpool.Pool, timeout time.Duration, rep *bench.Report, log *slog.Logger) error {
	t0 := time.Now()
	last := t0
	var first int64
	left, err := bench.WaitOutboxDrained(ctx, db, timeout, 5*time.Second, func(n int64) {
		switch {
		case first == 0:
			first = n
			log.Info("waiting for the change event relay", "queued", n, "timeout", timeout)
		case time.Since(last) >= time.Minute:
			log.Info("waiting for the change event relay", "queued", n, "elapsed", time.Since(t0).Round(time.Second))
			last = time.Now()
		}
	})
	if err != nil || first == 0 {
		return err
	}
	wait := time.Since(t0).Round(time.Second)
	if left == 0 {
		rep.Settings = append(rep.Settings, fmt.Sprintf("%d subscription change events were queued for JetStream before measuring; the relay published them in %s", first, wait))
	} else {
		rep.Settings = append(rep.Settings, fmt.Sprintf("**%d subscription change events were still queued for JetStream** after waiting %s (%d at first): the searches were measured beside the relay", left, wait, first))
	}
	return nil
}
