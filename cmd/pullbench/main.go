// Command pullbench measures the prefetch pull beside Orthanc's own
// DICOMweb retrieve in one run (docs/performance.md, "Prefetch pull beside
// Orthanc /retrieve"; scripts/bench.sh runs it as its third step): the
// throughput of the real bin/prefetcher pulling a study from a source
// Orthanc against a second Orthanc pulling the same study with
// POST /dicom-web/servers/{name}/retrieve, the care event to loaded
// overhead beyond the transfer on small studies, and the prefetcher's peak
// resident memory during a 2 GB study pull.
//
// It generates the studies from the real DICOM test files, starts both
// Orthancs, an embedded NATS and the prefetchers on loopback ports and a
// fresh database (dropped first), measures, stops everything and deletes
// the temporary data and the database.
//
// Usage:
//
//	pullbench [flags]
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
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/priorflow/priorflow/archive/dicomtest"
	"github.com/priorflow/priorflow/internal/bench/dicombench"
	"github.com/priorflow/priorflow/internal/bench/pullbench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "pullbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(args)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	prefetcher, err := exec.LookPath(cfg.PrefetcherBin)
	if err != nil {
		return fmt.Errorf("the prefetcher binary: %w (go build -o bin/ ./cmd/prefetcher)", err)
	}
	orthanc, err := exec.LookPath(cfg.OrthancBin)
	if err != nil {
		return fmt.Errorf("Orthanc is not installed: %w (make deps)", err)
	}
	large := int64(cfg.LargeGB * 1e9)
	// The source's copy, the reference's and Priorflow's blobs of the
	// throughput studies; the source's and Priorflow's of the large one
	// (and its spooled part); and room.
	need := 3*int64(cfg.Rounds*cfg.Instances)*1_100_000 + 5*large/2 + 2<<30
	free, err := dicombench.CheckSpace(cfg.TempDir, need)
	if err != nil {
		return err
	}
	log.Info("disk space", "dir", cfg.TempDir, "free_gb", free>>30, "needed_gb", float64(need)/(1<<30))
	gen, err := dicombench.NewGenerator()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(cfg.TempDir, "pullbench-")
	if err != nil {
		return err
	}
	defer func() {
		if cfg.Keep {
			log.Info("kept the run's data", "dir", tmp)
			return
		}
		if rerr := os.RemoveAll(tmp); rerr != nil {
			log.Warn("removing the temporary directory", "dir", tmp, "err", rerr)
		}
	}()
	if err := recreateDatabase(ctx, cfg.DatabaseURL); err != nil {
		return err
	}
	defer func() {
		if cfg.Keep {
			return
		}
		dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if derr := dropDatabase(dctx, cfg.DatabaseURL); derr != nil {
			log.Warn("dropping the bench database", "err", derr)
		}
	}()

	machine := dicombench.MachineLines()
	t0 := time.Now()
	res, err := pullbench.Run(ctx, pullbench.Options{Gen: gen, PrefetcherBin: prefetcher, OrthancBin: orthanc, DatabaseURL: cfg.DatabaseURL,
		Dir: tmp, Instances: cfg.Instances, Rounds: cfg.Rounds, Template: dicomtest.FileCTMulti, Jobs: cfg.Jobs, Warmup: cfg.Warmup,
		LargeBytes: large, UploadClients: cfg.UploadClients, Protocol: cfg.Protocol}, log)
	if err != nil {
		return err
	}
	machine = append(machine, "load average at the end: "+dicombench.LoadAvg(), fmt.Sprintf("whole run: %s", time.Since(t0).Round(time.Second)))
	var md bytes.Buffer
	res.WriteMarkdown(&md, machine)
	if cfg.Out != "" {
		if err := os.WriteFile(cfg.Out, md.Bytes(), 0o644); err != nil {
			return fmt.Errorf("write results: %w", err)
		}
	}
	if cfg.Doc != "" {
		if err := dicombench.ReplaceBetween(cfg.Doc, pullbench.BeginMarker, pullbench.EndMarker, md.Bytes()); err != nil {
			return err
		}
		log.Info("results written", "doc", cfg.Doc)
	}
	_, err = stdout.Write(md.Bytes())
	return err
}

// recreateDatabase drops and creates the bench database (config
// validation has checked that its name contains "bench").
func recreateDatabase(ctx context.Context, url string) error {
	if err := dropDatabase(ctx, url); err != nil {
		return err
	}
	return admin(ctx, url, func(conn *pgx.Conn, name string) error {
		_, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
		return err
	})
}

func dropDatabase(ctx context.Context, url string) error {
	return admin(ctx, url, func(conn *pgx.Conn, name string) error {
		_, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		return err
	})
}

// admin runs fn on the server's maintenance database with the name of the
// bench database.
func admin(ctx context.Context, url string, fn func(*pgx.Conn, string) error) error {
	cc, err := pgx.ParseConfig(url)
	if err != nil {
		return errors.New("database url cannot be parsed")
	}
	name := cc.Database
	if !strings.Contains(name, "bench") {
		return fmt.Errorf("refusing to touch database %q", name)
	}
	cc.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(context.Background())
	if err := fn(conn, name); err != nil {
		return fmt.Errorf("database %s: %w", name, err)
	}
	return nil
}
