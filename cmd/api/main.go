// Command api serves Priorflow's HTTP API: FHIR R4 at /fhir, the local DICOM
// archive over DICOMweb at /dicomweb, health at /healthz and /readyz,
// Prometheus metrics at /metrics.
//
// Usage:
//
//	api [flags]          serve (migrating the database first)
//	api migrate [flags]  apply schema migrations and exit
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob" // file:// blob URLs
	_ "gocloud.dev/blob/memblob"  // mem:// blob URLs, for tests
	_ "gocloud.dev/blob/s3blob"   // s3:// blob URLs (S3-compatible stores)

	"github.com/priorflow/priorflow/archive"
	"github.com/priorflow/priorflow/archive/dicomweb"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/fhir/rest"
	"github.com/priorflow/priorflow/internal/database"
	"github.com/priorflow/priorflow/internal/httpserver"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "api:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr *os.File) error {
	migrateOnly := len(args) > 0 && args[0] == "migrate"
	if migrateOnly {
		args = args[1:]
	}
	cfg, err := loadConfig(args)
	if err != nil {
		return err
	}
	log := newLogger(cfg.LogLevel, stderr)

	pool, err := database.Open(ctx, cfg.DatabaseURL, log)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := database.Migrate(ctx, pool); err != nil {
		return err
	}
	if migrateOnly {
		log.Info("database migrated")
		return nil
	}

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
	}
	spool := filepath.Join(cfg.DataDir, "spool")
	if err := os.MkdirAll(spool, 0o750); err != nil {
		ln.Close()
		return fmt.Errorf("spool dir: %w", err)
	}
	bucket, err := blob.OpenBucket(ctx, cfg.BlobURL)
	if err != nil {
		ln.Close()
		return fmt.Errorf("open blob store: %w", err)
	}
	defer bucket.Close()
	h, err := newHandler(cfg, pool, bucket, spool, log)
	if err != nil {
		ln.Close()
		return err
	}
	log.Info("api listening", "addr", ln.Addr().String(), "fhir", cfg.BaseURL+"/fhir", "version", version)
	return httpserver.Serve(ctx, ln, h, cfg.Grace, log)
}

func newLogger(level string, w *os.File) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// Registry returns the resource types cmd/api serves.
func registry() (*fhir.Registry, error) {
	return fhir.NewRegistry(fhir.ImagingStudy(), fhir.Patient(), fhir.Endpoint())
}

func newHandler(cfg *config, pool *pgxpool.Pool, bucket *blob.Bucket, spool string, log *slog.Logger) (http.Handler, error) {
	reg, err := registry()
	if err != nil {
		return nil, err
	}
	codec, err := fhir.NewCodec()
	if err != nil {
		return nil, err
	}
	store, err := postgres.New(pool, reg, codec, log)
	if err != nil {
		return nil, err
	}
	api, err := rest.New(store, codec, log, rest.Config{BaseURL: cfg.BaseURL + "/fhir", MaxBody: cfg.MaxBody, Software: "Priorflow", Version: version})
	if err != nil {
		return nil, err
	}
	arch, err := archive.New(store, bucket, log, archive.Config{DICOMwebURL: cfg.BaseURL + "/dicomweb", SpoolDir: spool})
	if err != nil {
		return nil, err
	}
	dw, err := dicomweb.New(arch, log, 0)
	if err != nil {
		return nil, err
	}
	promReg := prometheus.NewRegistry()
	promReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := httpserver.NewMetrics(promReg)

	r := chi.NewRouter()
	r.Use(metrics.Middleware)
	r.Get("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	r.Get("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain")
		if err := pool.Ping(ctx); err != nil {
			log.Warn("readiness check failed", "err", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("database unavailable\n"))
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	r.Handle("/metrics", promhttp.HandlerFor(promReg, promhttp.HandlerOpts{}))
	r.Mount("/fhir", api.Routes())
	r.Mount("/dicomweb", dw.Routes())
	return r, nil
}
