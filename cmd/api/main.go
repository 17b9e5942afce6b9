// Command api serves Priorflow's network entry points: FHIR R4 at /fhir, the
// local DICOM archive over DICOMweb at /dicomweb, HL7 v2 over MLLP, health at
// /healthz and /readyz, and Prometheus metrics at /metrics. Care events from
// HL7 v2 and FHIR go onto NATS JetStream (embedded in this process when
// NATS_URL is empty).
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
	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob" // file:// blob URLs
	_ "gocloud.dev/blob/memblob"  // mem:// blob URLs, for tests
	_ "gocloud.dev/blob/s3blob"   // s3:// blob URLs (S3-compatible stores)

	"github.com/priorflow/priorflow/archive"
	"github.com/priorflow/priorflow/archive/dicomweb"
	"github.com/priorflow/priorflow/auth"
	"github.com/priorflow/priorflow/auth/audit"
	"github.com/priorflow/priorflow/auth/jwtauth"
	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/fhir/rest"
	"github.com/priorflow/priorflow/internal/database"
	"github.com/priorflow/priorflow/internal/httpserver"
	"github.com/priorflow/priorflow/internal/natsjs"
	"github.com/priorflow/priorflow/internal/tlsfiles"
	"github.com/priorflow/priorflow/subscriptions/resthook"
	"github.com/priorflow/priorflow/subscriptions/service"
	"github.com/priorflow/priorflow/triggers/fhirintake"
	"github.com/priorflow/priorflow/triggers/hl7v2"
	"github.com/priorflow/priorflow/triggers/jetstream"
	"github.com/priorflow/priorflow/triggers/mllp"
	tpostgres "github.com/priorflow/priorflow/triggers/postgres"
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
	cfg, err := loadConfigFor(args, migrateOnly)
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

	bus, err := openBus(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer bus.close()

	spool := filepath.Join(cfg.DataDir, "spool")
	if err := os.MkdirAll(spool, 0o750); err != nil {
		return fmt.Errorf("spool dir: %w", err)
	}
	bucket, err := blob.OpenBucket(ctx, cfg.BlobURL)
	if err != nil {
		return fmt.Errorf("open blob store: %w", err)
	}
	defer bucket.Close()

	promReg := prometheus.NewRegistry()
	promReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	sec, err := newSecurity(ctx, cfg, pool, log)
	if err != nil {
		return err
	}
	defer sec.close()
	h, subs, rec, err := newHandler(ctx, cfg, pool, bucket, spool, bus.js, sec, promReg, log)
	if err != nil {
		return err
	}
	pub, err := jetstream.NewPublisher(bus.js)
	if err != nil {
		return err
	}
	relay, err := tpostgres.NewRelay(pool, pub, log, tpostgres.RelayConfig{Registerer: promReg})
	if err != nil {
		return err
	}
	intake, err := newIntake(cfg, pool, bus.js, promReg, log)
	if err != nil {
		return err
	}

	httpLn, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
	}
	mllpLn, err := net.Listen("tcp", cfg.MLLPAddr)
	if err != nil {
		httpLn.Close()
		return fmt.Errorf("listen MLLP %s: %w", cfg.MLLPAddr, err)
	}
	log.Info("api listening", "http", httpLn.Addr().String(), "mllp", mllpLn.Addr().String(),
		"fhir", cfg.BaseURL+"/fhir", "dicomweb", cfg.BaseURL+"/dicomweb", "nats", bus.url, "version", version)

	// The servers stop on ctx: each finishes what it has in flight (an HL7
	// message read is acknowledged, an HTTP request answered). The outbox
	// relay and the subscription dispatcher stop with them; rows it has not published stay in the outbox
	// for the next start or another replica. The bus and the database close
	// behind them. A server that fails stops the others.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 4)
	go func() { errc <- httpserver.Serve(ctx, httpLn, h, cfg.Grace, log) }()
	go func() { errc <- serveMLLP(ctx, intake, mllpLn, cfg.Grace, log) }()
	go func() { errc <- relay.Run(ctx) }()
	go func() { errc <- subs.Run(ctx) }()
	// The audit writer outlives the servers: requests finishing during the
	// shutdown grace are still recorded, then the queue is drained.
	auditCtx, stopAudit := context.WithCancel(context.Background())
	defer stopAudit()
	auditDone := make(chan error, 1)
	go func() { auditDone <- rec.Run(auditCtx) }()
	var errs []error
	for i := 0; i < 4; i++ {
		err := <-errc
		if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
			continue // a worker interrupted by the shutdown itself
		}
		if err != nil {
			errs = append(errs, err)
			cancel()
		}
	}
	stopAudit()
	if err := <-auditDone; err != nil && !errors.Is(err, context.Canceled) {
		errs = append(errs, fmt.Errorf("audit: %w", err))
	}
	return errors.Join(errs...)
}

func newLogger(level string, w *os.File) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// bus is the NATS connection, with the embedded server when there is one.
type bus struct {
	url      string
	nc       *nats.Conn
	js       njs.JetStream
	embedded *natsjs.Embedded
	cancel   context.CancelFunc
}

func openBus(ctx context.Context, cfg *config, log *slog.Logger) (*bus, error) {
	b := &bus{url: cfg.NATSURL}
	if b.url == "" {
		e, err := natsjs.StartEmbedded(natsjs.EmbeddedConfig{
			StoreDir: filepath.Join(cfg.DataDir, "nats"), Addr: cfg.NATSListen,
			MaxMemory: cfg.NATSMaxMemory, MaxStore: cfg.NATSMaxStore}, log)
		if err != nil {
			return nil, err
		}
		b.embedded, b.url = e, e.URL()
	}
	nc, js, err := natsjs.Connect(ctx, b.url, "priorflow-api", log)
	if err != nil {
		b.close()
		return nil, err
	}
	b.nc, b.js = nc, js
	if err := jetstream.EnsureStream(ctx, js, jetstream.StreamConfig{Replicas: cfg.StreamReplicas, DuplicateWindow: cfg.DuplicateWindow}); err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

// close drains the connection (publishes in flight complete) and then stops
// the embedded server, which flushes its store.
func (b *bus) close() {
	if b.nc != nil {
		_ = b.nc.Drain()
		for i := 0; i < 50 && !b.nc.IsClosed(); i++ {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if b.embedded != nil {
		b.embedded.Shutdown()
	}
}

func newIntake(cfg *config, pool *pgxpool.Pool, js njs.JetStream, reg prometheus.Registerer, log *slog.Logger) (*mllp.Server, error) {
	raw, err := tpostgres.NewRawStore(pool)
	if err != nil {
		return nil, err
	}
	pub, err := jetstream.NewPublisher(js)
	if err != nil {
		return nil, err
	}
	tz, err := time.LoadLocation(cfg.HL7TimeZone)
	if err != nil {
		return nil, fmt.Errorf("PRIORFLOW_HL7_TIMEZONE: %w", err)
	}
	in, err := hl7v2.NewIntake(raw, pub, log, hl7v2.IntakeConfig{
		Map:             cfg.HL7Tables.MapOptions(tz, cfg.Identifiers),
		DefaultCharset:  cfg.HL7Charset,
		DuplicateWindow: cfg.DuplicateWindow,
		Registerer:      reg,
	})
	if err != nil {
		return nil, err
	}
	mc := mllp.Config{Registerer: reg}
	if cfg.MLLPAllow != "any" {
		if mc.AllowedSenders, err = mllp.ParseAllowList(cfg.MLLPAllow); err != nil {
			return nil, fmt.Errorf("PRIORFLOW_MLLP_ALLOW: %w", err)
		}
	}
	if cfg.MLLPTLSCert != "" {
		if mc.TLS, err = tlsfiles.Server(cfg.MLLPTLSCert, cfg.MLLPTLSKey, cfg.MLLPTLSClient); err != nil {
			return nil, fmt.Errorf("MLLP TLS: %w", err)
		}
	}
	return mllp.NewServer(in, log, mc)
}

func serveMLLP(ctx context.Context, srv *mllp.Server, ln net.Listener, grace time.Duration, log *slog.Logger) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("mllp serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("mllp server shutting down", "grace", grace)
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("mllp shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, mllp.ErrServerClosed) {
		return fmt.Errorf("mllp serve: %w", err)
	}
	return nil
}

// registry returns the resource types cmd/api serves.
func registry() (*fhir.Registry, error) {
	return fhir.NewRegistry(fhir.ImagingStudy(), fhir.Patient(), fhir.Endpoint(),
		fhir.Appointment(), fhir.Encounter(), fhir.ServiceRequest(), fhir.Task(),
		fhir.Subscription(), fhir.Provenance(), fhir.AuditEvent())
}

func newHandler(ctx context.Context, cfg *config, pool *pgxpool.Pool, bucket *blob.Bucket, spool string, js njs.JetStream,
	sec *security, promReg *prometheus.Registry, log *slog.Logger) (http.Handler, *service.Service, *audit.Recorder, error) {
	reg, err := registry()
	if err != nil {
		return nil, nil, nil, err
	}
	codec, err := fhir.NewCodec()
	if err != nil {
		return nil, nil, nil, err
	}
	store, err := postgres.New(pool, reg, codec, log)
	if err != nil {
		return nil, nil, nil, err
	}
	store.SetBaseURL(cfg.BaseURL + "/fhir")
	// Care events from FHIR writes go to the outbox in the writing
	// transaction; the relay publishes them.
	if err := fhirintake.Register(store, log); err != nil {
		return nil, nil, nil, err
	}
	// Subscriptions validate their endpoint and keep their delivery state
	// in the writing transaction; ImagingStudy changes feed them.
	subs, err := service.New(ctx, store, js, service.Config{
		BaseURL:          cfg.BaseURL + "/fhir",
		AllowedEndpoints: resthook.ParseAllowList(cfg.SubscriptionEndpoints),
		StreamReplicas:   cfg.StreamReplicas,
	}, log)
	if err != nil {
		return nil, nil, nil, err
	}
	restCfg := rest.Config{BaseURL: cfg.BaseURL + "/fhir", MaxBody: cfg.MaxBody, Software: "Priorflow", Version: version, Auth: sec.verifier != nil}
	if sec.tokens != nil {
		restCfg.TokenURL = cfg.BaseURL + "/auth/token"
	} else if sec.verifier != nil {
		restCfg.TokenURL = cfg.AuthTokenURL
	}
	api, err := rest.New(store, codec, log, restCfg)
	if err != nil {
		return nil, nil, nil, err
	}
	arch, err := archive.New(store, bucket, log, archive.Config{DICOMwebURL: cfg.BaseURL + "/dicomweb", SpoolDir: spool,
		FileRoot: archive.FileRoot(cfg.BlobURL), DefaultCharset: cfg.DICOMCharset,
		IssuerSystems: cfg.Identifiers.Authorities, DefaultPatientIDSystem: cfg.Identifiers.WithoutAuthority})
	if err != nil {
		return nil, nil, nil, err
	}
	var dwOpts []dicomweb.Option
	if sec.verifier != nil {
		dwOpts = append(dwOpts, dicomweb.WithAuth(store))
	}
	dw, err := dicomweb.New(arch, log, 0, dwOpts...)
	if err != nil {
		return nil, nil, nil, err
	}
	// Every access through the API is on record (IHE BALP AuditEvents).
	rec, err := audit.NewRecorder(store, log, audit.Config{Observer: "Priorflow api " + cfg.BaseURL, Registerer: promReg})
	if err != nil {
		return nil, nil, nil, err
	}
	metrics := httpserver.NewMetrics(promReg)

	// Refusals of the token check are rendered in each protocol and
	// recorded in the audit trail: a failed access is an access attempt.
	fhirRefused := func(w http.ResponseWriter, r *http.Request, e *jwtauth.Error) {
		rec.Rejected(r, e.Status)
		rest.WriteAuthError(w, r, e.Status, e.Description)
	}
	dicomwebRefused := func(w http.ResponseWriter, r *http.Request, e *jwtauth.Error) {
		rec.Rejected(r, e.Status)
		jwtauth.WriteError(w, r, e) // PS3.18 leaves the body of a 401/403 open: plain text
	}
	fhirAuth := sec.authenticate(fhirRefused)
	// The CapabilityStatement is read before a client has a token (it
	// names the token endpoint).
	fhirAuthButMetadata := func(next http.Handler) http.Handler {
		authed := fhirAuth(next)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && r.URL.Path == "/fhir/metadata" {
				next.ServeHTTP(w, r)
				return
			}
			authed.ServeHTTP(w, r)
		})
	}

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

	// What a client reads before it has a token: discovery and the
	// built-in token endpoint.
	r.Get("/.well-known/smart-configuration", sec.smartConfiguration)
	r.Get("/fhir/.well-known/smart-configuration", sec.smartConfiguration)
	if sec.tokens != nil {
		r.Post("/auth/token", sec.tokens.TokenHandler().ServeHTTP)
		r.Get("/auth/jwks.json", sec.tokens.JWKSHandler().ServeHTTP)
	}

	// The subscription operations are routed before the /fhir mount.
	r.With(fhirAuth, sec.require("Subscription", auth.PermRead, fhirRefused), rec.FHIR()).Get("/fhir/Subscription/{id}/$status", subs.StatusHandler().ServeHTTP)
	r.With(fhirAuth, sec.require("Subscription", auth.PermRead, fhirRefused), rec.FHIR()).Get("/fhir/Subscription/{id}/$events", subs.EventsHandler().ServeHTTP)
	r.With(fhirAuth, sec.require("Subscription", auth.PermRead, fhirRefused)).Handle("/fhir/subscription-ws", subs.WebsocketHandler())
	r.With(fhirAuthButMetadata, rec.FHIR()).Mount("/fhir", api.Routes())
	r.With(sec.authenticate(dicomwebRefused), rec.DICOMweb(audit.StudyPatientLookup(store))).Mount("/dicomweb", dw.Routes())
	return r, subs, rec, nil
}
