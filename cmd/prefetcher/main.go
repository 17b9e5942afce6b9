// Command prefetcher runs Priorflow's JetStream workers. Today that is the
// planner: it consumes care events (stream CARE_EVENTS), matches them
// against the prefetch rules of PRIORFLOW_CONFIG, and records prefetch jobs
// (PostgreSQL, visible as FHIR Task) on the PREFETCH_JOBS stream, stat lane
// before routine. Any number of replicas share the work through one durable
// consumer.
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
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/internal/database"
	"github.com/priorflow/priorflow/internal/httpserver"
	"github.com/priorflow/priorflow/internal/natsjs"
	"github.com/priorflow/priorflow/triggers/jetstream"
	"github.com/priorflow/priorflow/triggers/planner"
	"github.com/priorflow/priorflow/triggers/rules"
)

var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "prefetcher:", err)
		os.Exit(1)
	}
}

type config struct {
	DatabaseURL    string
	NATSURL        string
	RulesFile      string
	HTTPAddr       string
	LogLevel       string
	StreamReplicas int
	Grace          time.Duration
}

func loadConfig(args []string) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("prefetcher", flag.ContinueOnError)
	fs.StringVar(&c.DatabaseURL, "database-url", env("DATABASE_URL", database.DefaultURL), "PostgreSQL URL (DATABASE_URL)")
	fs.StringVar(&c.NATSURL, "nats-url", env("NATS_URL", "nats://127.0.0.1:4223"), "NATS with JetStream (NATS_URL); the default is the server embedded in a local api")
	fs.StringVar(&c.RulesFile, "config", env("PRIORFLOW_CONFIG", "config/priorflow.yaml"), "prefetch rules and sources (PRIORFLOW_CONFIG)")
	fs.StringVar(&c.HTTPAddr, "http-addr", env("PRIORFLOW_PREFETCHER_HTTP_ADDR", "127.0.0.1:9091"), "address of /healthz and /metrics (PRIORFLOW_PREFETCHER_HTTP_ADDR)")
	fs.StringVar(&c.LogLevel, "log-level", env("PRIORFLOW_LOG_LEVEL", "info"), "debug, info, warn or error (PRIORFLOW_LOG_LEVEL)")
	fs.IntVar(&c.StreamReplicas, "stream-replicas", envInt("PRIORFLOW_STREAM_REPLICAS", 1), "replicas of the JetStream streams in a cluster; the same as the api's (PRIORFLOW_STREAM_REPLICAS)")
	fs.DurationVar(&c.Grace, "shutdown-grace", 30*time.Second, "how long shutdown waits for in-flight work")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	var errs []error
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("DATABASE_URL is empty"))
	}
	if c.NATSURL == "" {
		errs = append(errs, errors.New("NATS_URL is empty"))
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		errs = append(errs, fmt.Errorf("PRIORFLOW_PREFETCHER_HTTP_ADDR %q: %w", c.HTTPAddr, err))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("PRIORFLOW_LOG_LEVEL %q is not debug, info, warn or error", c.LogLevel))
	}
	return c, errors.Join(errs...)
}

func envInt(name string, def int) int {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return def
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, args []string, stderr *os.File) error {
	cfg, err := loadConfig(args)
	if err != nil {
		return err
	}
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lvl}))

	// An invalid rules file stops startup, naming the line and the reason.
	rs, err := rules.LoadFile(cfg.RulesFile)
	if err != nil {
		return err
	}
	pool, err := database.Open(ctx, cfg.DatabaseURL, log)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := database.Migrate(ctx, pool); err != nil {
		return err
	}
	nc, js, err := natsjs.Connect(ctx, cfg.NATSURL, "priorflow-prefetcher", log)
	if err != nil {
		return err
	}
	defer nc.Drain()
	if err := jetstream.EnsureStream(ctx, js, jetstream.StreamConfig{Replicas: cfg.StreamReplicas}); err != nil {
		return err
	}
	reg, err := fhir.NewRegistry(fhir.ImagingStudy(), fhir.Patient(), fhir.Endpoint(),
		fhir.Appointment(), fhir.Encounter(), fhir.ServiceRequest(), fhir.Task())
	if err != nil {
		return err
	}
	codec, err := fhir.NewCodec()
	if err != nil {
		return err
	}
	store, err := postgres.New(pool, reg, codec, log)
	if err != nil {
		return err
	}
	pl, err := planner.New(planner.Config{Rules: rs, Store: store, JetStream: js, Logger: log, StreamReplicas: cfg.StreamReplicas})
	if err != nil {
		return err
	}
	if err := pl.EnsureStreams(ctx); err != nil {
		return err
	}

	promReg := prometheus.NewRegistry()
	promReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.Handle("/metrics", promhttp.HandlerFor(promReg, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
	}
	log.Info("prefetcher running", "rules", len(rs.Rules), "nats", natsjs.Redact(cfg.NATSURL), "http", ln.Addr().String(), "version", version)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() { errc <- httpserver.Serve(ctx, ln, mux, cfg.Grace, log) }()
	go func() { errc <- pl.Run(ctx) }()
	var errs []error
	for i := 0; i < 2; i++ {
		if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, err)
			cancel()
		}
	}
	return errors.Join(errs...)
}
