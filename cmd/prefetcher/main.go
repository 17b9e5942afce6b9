// Command prefetcher runs Priorflow's JetStream workers: the planner, which
// consumes care events (stream CARE_EVENTS), matches them against the
// prefetch rules of PRIORFLOW_CONFIG, and records prefetch jobs (PostgreSQL,
// visible as FHIR Task) on the PREFETCH_JOBS stream; and the prefetch worker
// (retrieve/worker), which runs those jobs, stat lane before routine: the
// network search over the sources of PRIORFLOW_CONFIG, then pulls into the
// local archive (the same blob store and database as the api) by WADO-RS,
// C-GET, or C-MOVE to its own Storage SCP. Any number of replicas share
// the work through durable consumers; each that pulls by C-MOVE needs an
// AE title and address of its own, known to the PACS.
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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob" // file:// blob URLs
	_ "gocloud.dev/blob/memblob"  // mem:// blob URLs, for tests
	_ "gocloud.dev/blob/s3blob"   // s3:// blob URLs (S3-compatible stores)

	"github.com/priorflow/priorflow/archive"
	"github.com/priorflow/priorflow/archive/dicomheader"
	"github.com/priorflow/priorflow/dimse"
	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/internal/database"
	"github.com/priorflow/priorflow/internal/httpserver"
	"github.com/priorflow/priorflow/internal/natsjs"
	"github.com/priorflow/priorflow/internal/patientid"
	"github.com/priorflow/priorflow/internal/tlsfiles"
	"github.com/priorflow/priorflow/retrieve"
	"github.com/priorflow/priorflow/retrieve/worker"
	"github.com/priorflow/priorflow/search"
	"github.com/priorflow/priorflow/search/dicomweb"
	"github.com/priorflow/priorflow/search/dimsesource"
	"github.com/priorflow/priorflow/search/fhirsource"
	"github.com/priorflow/priorflow/subscriptions"
	subjs "github.com/priorflow/priorflow/subscriptions/jetstream"
	subspg "github.com/priorflow/priorflow/subscriptions/postgres"
	"github.com/priorflow/priorflow/subscriptions/resthook"
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

	// The prefetch worker.
	DataDir      string
	BlobURL      string
	DICOMCharset string
	BaseURL      string
	Concurrency  int
	AckWait      time.Duration
	RetryTries   int
	RetryInitial time.Duration
	RetryMax     time.Duration

	// The Storage SCP that C-MOVEs send to (sources of retrieveMethod
	// c-move).
	DICOMAddr    string
	DICOMAETitle string
	// DICOM TLS of that SCP: its certificate and key, and the CAs of the
	// PACS's client certificates (required when set).
	DICOMTLSCert, DICOMTLSKey, DICOMTLSClientCA string
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
	fs.StringVar(&c.DataDir, "data-dir", env("PRIORFLOW_DATA_DIR", "./data"), "data directory, shared with the api (PRIORFLOW_DATA_DIR)")
	fs.StringVar(&c.BlobURL, "blob-url", env("PRIORFLOW_BLOB_URL", ""), "blob store of the archive, the api's (PRIORFLOW_BLOB_URL); default file://<data-dir>/blobs")
	fs.StringVar(&c.DICOMCharset, "dicom-charset", env("PRIORFLOW_DICOM_CHARSET", dicomheader.DefaultCharset), "character set (Specific Character Set term) of DICOM text that declares none but is not UTF-8; the same as the api's (PRIORFLOW_DICOM_CHARSET)")
	fs.StringVar(&c.BaseURL, "base-url", env("PRIORFLOW_BASE_URL", "http://localhost:8080"), "absolute URL of the api (PRIORFLOW_BASE_URL); <base-url>/dicomweb is the local Endpoint")
	fs.IntVar(&c.Concurrency, "jobs", envInt("PRIORFLOW_PREFETCH_JOBS", 4), "prefetch jobs run at once; one slot is kept for stat (PRIORFLOW_PREFETCH_JOBS)")
	fs.DurationVar(&c.AckWait, "ack-wait", envDuration("PRIORFLOW_PREFETCH_ACK_WAIT", 30*time.Second), "how soon a job held by a dead worker is redelivered (PRIORFLOW_PREFETCH_ACK_WAIT)")
	fs.IntVar(&c.RetryTries, "retrieve-tries", envInt("PRIORFLOW_RETRIEVE_TRIES", 10), "attempts per study and per job before it fails (PRIORFLOW_RETRIEVE_TRIES)")
	fs.DurationVar(&c.RetryInitial, "retrieve-backoff", envDuration("PRIORFLOW_RETRIEVE_BACKOFF", 30*time.Second), "first retry delay, doubled each time (PRIORFLOW_RETRIEVE_BACKOFF)")
	fs.DurationVar(&c.RetryMax, "retrieve-backoff-max", envDuration("PRIORFLOW_RETRIEVE_BACKOFF_MAX", 10*time.Minute), "longest retry delay (PRIORFLOW_RETRIEVE_BACKOFF_MAX)")
	fs.StringVar(&c.DICOMAddr, "dicom-addr", env("PRIORFLOW_DICOM_ADDR", ":11112"), "address of the Storage SCP C-MOVEs send to; it listens only when a source has retrieveMethod c-move (PRIORFLOW_DICOM_ADDR)")
	fs.StringVar(&c.DICOMAETitle, "dicom-ae-title", env("PRIORFLOW_DICOM_AE_TITLE", search.DefaultCallingAETitle), "AE title of that Storage SCP, the C-MOVE destination; one per replica (PRIORFLOW_DICOM_AE_TITLE)")
	fs.StringVar(&c.DICOMTLSCert, "dicom-tls-cert", env("PRIORFLOW_DICOM_TLS_CERT", ""), "PEM certificate chain: the Storage SCP speaks DICOM TLS only (PRIORFLOW_DICOM_TLS_CERT)")
	fs.StringVar(&c.DICOMTLSKey, "dicom-tls-key", env("PRIORFLOW_DICOM_TLS_KEY", ""), "PEM private key of that certificate (PRIORFLOW_DICOM_TLS_KEY)")
	fs.StringVar(&c.DICOMTLSClientCA, "dicom-tls-client-ca", env("PRIORFLOW_DICOM_TLS_CLIENT_CA", ""), "PEM CA certificates: the PACS must present a client certificate they sign (PRIORFLOW_DICOM_TLS_CLIENT_CA)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	var errs []error
	c.BaseURL = strings.TrimSuffix(c.BaseURL, "/")
	if c.BlobURL == "" {
		abs, err := filepath.Abs(filepath.Join(c.DataDir, "blobs"))
		if err != nil {
			errs = append(errs, fmt.Errorf("PRIORFLOW_DATA_DIR %q: %w", c.DataDir, err))
		}
		c.BlobURL = "file://" + abs + "?create_dir=1&metadata=skip"
	}
	if !strings.HasPrefix(c.BaseURL, "http://") && !strings.HasPrefix(c.BaseURL, "https://") {
		errs = append(errs, fmt.Errorf("PRIORFLOW_BASE_URL %q must be an absolute http(s) URL", c.BaseURL))
	}
	if !strings.HasPrefix(c.BlobURL, "file://") && !strings.HasPrefix(c.BlobURL, "s3://") && !strings.HasPrefix(c.BlobURL, "mem://") {
		errs = append(errs, errors.New("PRIORFLOW_BLOB_URL must be a file://, s3:// or mem:// URL"))
	}
	if err := dicomheader.CheckCharset(c.DICOMCharset); err != nil {
		errs = append(errs, fmt.Errorf("PRIORFLOW_DICOM_CHARSET: %w", err))
	}
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("PRIORFLOW_PREFETCH_JOBS %d must be at least 1", c.Concurrency))
	}
	if c.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("PRIORFLOW_PREFETCH_ACK_WAIT %s must be at least 1s", c.AckWait))
	}
	if c.RetryTries < 1 || c.RetryInitial <= 0 || c.RetryMax < c.RetryInitial {
		errs = append(errs, errors.New("retrieve retries: want tries ≥ 1 and 0 < backoff ≤ backoff-max"))
	}
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("DATABASE_URL is empty"))
	}
	if c.NATSURL == "" {
		errs = append(errs, errors.New("NATS_URL is empty"))
	}
	if _, _, err := net.SplitHostPort(c.DICOMAddr); err != nil {
		errs = append(errs, fmt.Errorf("PRIORFLOW_DICOM_ADDR %q: %w", c.DICOMAddr, err))
	}
	if err := dimse.CheckAETitle(c.DICOMAETitle); err != nil {
		errs = append(errs, fmt.Errorf("PRIORFLOW_DICOM_AE_TITLE: %w", err))
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

func envDuration(name string, def time.Duration) time.Duration {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
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
	sources, err := search.LoadSources(cfg.RulesFile)
	if err != nil {
		return err
	}
	ids, err := patientid.Load(cfg.RulesFile)
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
		fhir.Appointment(), fhir.Encounter(), fhir.ServiceRequest(), fhir.Task(), fhir.AuditEvent(), fhir.Provenance())
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
	store.SetBaseURL(cfg.BaseURL + "/fhir")
	// ImagingStudy changes made here (priors arriving) feed subscriptions
	// like the api's own writes: the hook writes them to the change outbox
	// that the api's relay publishes.
	if err := registerChangeFeed(pool, store, reg, codec, log); err != nil {
		return err
	}
	promReg := prometheus.NewRegistry()
	promReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	pl, err := planner.New(planner.Config{Rules: rs, Store: store, JetStream: js, Logger: log, StreamReplicas: cfg.StreamReplicas,
		Metrics: promReg})
	if err != nil {
		return err
	}
	if err := pl.EnsureStreams(ctx); err != nil {
		return err
	}

	metrics := worker.NewMetrics(promReg)
	promReg.MustRegister(worker.NewJobStates(pool))

	spool := filepath.Join(cfg.DataDir, "spool")
	if err := os.MkdirAll(spool, 0o750); err != nil {
		return fmt.Errorf("spool dir: %w", err)
	}
	bucket, err := blob.OpenBucket(ctx, cfg.BlobURL)
	if err != nil {
		return fmt.Errorf("open blob store: %w", err)
	}
	defer bucket.Close()
	arch, err := archive.New(store, bucket, log, archive.Config{DICOMwebURL: cfg.BaseURL + "/dicomweb", SpoolDir: spool,
		FileRoot: archive.FileRoot(cfg.BlobURL), DefaultCharset: cfg.DICOMCharset,
		IssuerSystems: ids.Authorities, DefaultPatientIDSystem: ids.WithoutAuthority})
	if err != nil {
		return err
	}
	entries, rsources, err := buildSources(sources)
	if err != nil {
		return err
	}
	searcher, err := search.NewSearcher(search.Config{Sources: entries, Store: store, Local: arch, Logger: log,
		IssuerSystems: ids.Authorities})
	if err != nil {
		return err
	}
	backoff := retrieve.Backoff{Tries: cfg.RetryTries, Initial: cfg.RetryInitial, Multiplier: 2, Max: cfg.RetryMax}
	retriever, err := retrieve.New(retrieve.Config{Archive: arch, Sources: rsources, Logger: log, Quarantine: bucket, Retry: backoff,
		Observer: metrics, MoveDestination: cfg.DICOMAETitle})
	if err != nil {
		return err
	}
	scp, err := storageSCP(cfg, sources, retriever, log)
	if err != nil {
		return err
	}
	// The Storage SCP listens only when a source is pulled by C-MOVE: a
	// DICOM port nobody needs is one more thing to firewall.
	var scpLn net.Listener
	if scp != nil {
		if scpLn, err = net.Listen("tcp", cfg.DICOMAddr); err != nil {
			return fmt.Errorf("listen %s (Storage SCP): %w", cfg.DICOMAddr, err)
		}
		defer scpLn.Close()
	}
	if err := ensureEventStream(ctx, js, cfg.StreamReplicas); err != nil {
		return err
	}
	pub, err := subjs.NewPublisher(js)
	if err != nil {
		return err
	}
	wk, err := worker.New(worker.Config{JetStream: js, Store: store, Archive: arch, Searcher: searcher, Retriever: retriever,
		Publisher: pub, Metrics: metrics, Logger: log, Concurrency: cfg.Concurrency, AckWait: cfg.AckWait, Grace: cfg.Grace, JobRetry: backoff})
	if err != nil {
		return err
	}
	if err := wk.EnsureConsumers(ctx); err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.Handle("/metrics", promhttp.HandlerFor(promReg, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
	}
	log.Info("prefetcher running", "rules", len(rs.Rules), "sources", len(sources), "nats", natsjs.Redact(cfg.NATSURL), "http", ln.Addr().String(), "version", version)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := 3
	errc := make(chan error, 4)
	go func() { errc <- httpserver.Serve(ctx, ln, mux, cfg.Grace, log) }()
	go func() { errc <- pl.Run(ctx) }()
	// The Storage SCP outlives the worker: the C-MOVEs of the jobs it lets
	// finish on shutdown still send their objects.
	scpCtx, stopSCP := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSCP()
	go func() {
		err := wk.Run(ctx)
		stopSCP()
		errc <- err
	}()
	if scp != nil {
		n++
		log.Info("Storage SCP listening for C-MOVEs", "addr", scpLn.Addr().String(), "ae_title", cfg.DICOMAETitle, "tls", scp.TLS != nil)
		go func() { errc <- scp.Serve(scpCtx, scpLn) }()
	}
	var errs []error
	for i := 0; i < n; i++ {
		if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, err)
			cancel()
		}
	}
	return errors.Join(errs...)
}

// storageSCP returns the Storage SCP the C-MOVEs of sources send to, nil
// when no source is pulled by C-MOVE. A source reached over DICOM TLS
// sends over TLS too: the objects are what TLS protects.
func storageSCP(cfg *config, sources []*search.SourceConfig, r *retrieve.Retriever, log *slog.Logger) (*dimse.Server, error) {
	var scp *dimse.Server
	for _, s := range sources {
		if s.Kind != search.KindDIMSE || s.RetrieveMethod != search.RetrieveCMove {
			continue
		}
		if scp == nil {
			scp = &dimse.Server{AETitle: cfg.DICOMAETitle, Store: r.Receive, Logger: log}
			if cfg.DICOMTLSCert != "" || cfg.DICOMTLSKey != "" {
				tc, err := tlsfiles.Server(cfg.DICOMTLSCert, cfg.DICOMTLSKey, cfg.DICOMTLSClientCA)
				if err != nil {
					return nil, fmt.Errorf("Storage SCP: %w", err)
				}
				scp.TLS = tc
			}
		}
		if s.Auth.MTLS != nil && scp.TLS == nil {
			return nil, fmt.Errorf("%s:%d: source %s is reached over DICOM TLS, but the Storage SCP its C-MOVEs send to has no TLS: "+
				"set PRIORFLOW_DICOM_TLS_CERT and PRIORFLOW_DICOM_TLS_KEY (and PRIORFLOW_DICOM_TLS_CLIENT_CA)", cfg.RulesFile, s.Line, s.Name)
		}
	}
	return scp, nil
}

// buildSources turns the configured sources into search entries and
// retrieval clients; a source's client (credentials, TLS, no transparent
// compression) serves both.
func buildSources(cfgs []*search.SourceConfig) ([]search.Entry, []retrieve.Source, error) {
	var entries []search.Entry
	var rs []retrieve.Source
	for _, c := range cfgs {
		if c.Kind == search.KindDIMSE {
			dc, err := dimsesource.NewClient(c)
			if err != nil {
				return nil, nil, err
			}
			src, err := dimsesource.New(c.Info(), dc)
			if err != nil {
				return nil, nil, err
			}
			entries = append(entries, search.Entry{Source: src, Timeout: c.Timeout, Retries: c.Retries, Concurrency: c.Concurrency})
			rs = append(rs, retrieve.Source{Name: c.Name, DIMSE: dc, Concurrency: c.Concurrency, IdleTimeout: c.RetrieveTimeout,
				Move: c.RetrieveMethod == search.RetrieveCMove, StoreAETitle: c.StoreAETitle})
			continue
		}
		client, err := search.NewHTTPClient(c)
		if err != nil {
			return nil, nil, err
		}
		var src search.Source
		switch c.Kind {
		case search.KindDICOMweb:
			src, err = dicomweb.New(c.Info(), client)
		case search.KindFHIR, search.KindPriorflow:
			src, err = fhirsource.New(c.Info(), client)
		default:
			err = fmt.Errorf("source %s: kind %q is not supported", c.Name, c.Kind)
		}
		if err != nil {
			return nil, nil, err
		}
		entries = append(entries, search.Entry{Source: src, Timeout: c.Timeout, Retries: c.Retries, Concurrency: c.Concurrency})
		rs = append(rs, retrieve.Source{Name: c.Name, Client: client, Concurrency: c.Concurrency, IdleTimeout: c.RetrieveTimeout})
	}
	return entries, rs, nil
}

// ensureEventStream creates the stream imaging.study.available goes to
// when the api has not yet; an existing stream is left as its owner set it.
func ensureEventStream(ctx context.Context, js njs.JetStream, replicas int) error {
	if _, err := js.Stream(ctx, subjs.StreamName); err == nil {
		return nil
	} else if !errors.Is(err, njs.ErrStreamNotFound) {
		return fmt.Errorf("stream %s: %w", subjs.StreamName, err)
	}
	return subjs.EnsureStream(ctx, js, replicas, 0)
}

func registerChangeFeed(pool *pgxpool.Pool, store *postgres.Store, reg *fhir.Registry, codec *fhir.Codec, log *slog.Logger) error {
	matcher, err := subscriptions.NewMatcher(reg, codec, store.BaseURL(), "ImagingStudy")
	if err != nil {
		return err
	}
	// This process never writes Subscriptions, so its guard allows nothing.
	guard, err := resthook.NewGuard(nil)
	if err != nil {
		return err
	}
	ss, err := subspg.New(pool, matcher, guard, log)
	if err != nil {
		return err
	}
	ss.Register(store, "ImagingStudy")
	return nil
}
