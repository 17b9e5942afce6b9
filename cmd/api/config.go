package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/priorflow/priorflow/internal/database"
)

// config is cmd/api's configuration: flags, each defaulting to its
// environment variable, each defaulting to a value that works on a
// development machine.
type config struct {
	DatabaseURL string
	HTTPAddr    string
	BaseURL     string
	DataDir     string
	BlobURL     string
	LogLevel    string
	MaxBody     int64
	Grace       time.Duration

	MLLPAddr    string
	HL7TimeZone string

	// SubscriptionEndpoints are the URL prefixes rest-hook subscriptions
	// may deliver to (comma-separated).
	SubscriptionEndpoints string

	// NATSURL is an external NATS server or cluster; empty embeds one.
	NATSURL         string
	NATSListen      string
	NATSMaxMemory   int64
	NATSMaxStore    int64
	StreamReplicas  int
	DuplicateWindow time.Duration
}

func loadConfig(args []string) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("api", flag.ContinueOnError)
	fs.StringVar(&c.DatabaseURL, "database-url", env("DATABASE_URL", database.DefaultURL), "PostgreSQL URL (DATABASE_URL); the database is created if missing")
	fs.StringVar(&c.HTTPAddr, "http-addr", env("PRIORFLOW_HTTP_ADDR", ":8080"), "HTTP listen address (PRIORFLOW_HTTP_ADDR)")
	fs.StringVar(&c.BaseURL, "base-url", env("PRIORFLOW_BASE_URL", ""), "absolute URL of this server used in links (PRIORFLOW_BASE_URL); default derived from the address")
	fs.StringVar(&c.DataDir, "data-dir", env("PRIORFLOW_DATA_DIR", "./data"), "data directory (PRIORFLOW_DATA_DIR)")
	fs.StringVar(&c.BlobURL, "blob-url", env("PRIORFLOW_BLOB_URL", ""), "blob store for DICOM objects (PRIORFLOW_BLOB_URL): file:///path or s3://bucket?region=...; default file://<data-dir>/blobs")
	fs.StringVar(&c.LogLevel, "log-level", env("PRIORFLOW_LOG_LEVEL", "info"), "debug, info, warn or error (PRIORFLOW_LOG_LEVEL)")
	fs.StringVar(&c.MLLPAddr, "mllp-addr", env("PRIORFLOW_MLLP_ADDR", ":2575"), "HL7 v2 MLLP listen address (PRIORFLOW_MLLP_ADDR)")
	fs.StringVar(&c.HL7TimeZone, "hl7-timezone", env("PRIORFLOW_HL7_TIMEZONE", "Local"), "IANA zone of HL7 v2 times sent without an offset (PRIORFLOW_HL7_TIMEZONE)")
	fs.StringVar(&c.SubscriptionEndpoints, "subscription-endpoints", env("PRIORFLOW_SUBSCRIPTION_ENDPOINTS", ""), "comma-separated URL prefixes rest-hook subscriptions may notify; private and loopback addresses only when listed (PRIORFLOW_SUBSCRIPTION_ENDPOINTS)")
	fs.StringVar(&c.NATSURL, "nats-url", env("NATS_URL", ""), "NATS server or cluster (NATS_URL); empty runs JetStream embedded in this process")
	fs.StringVar(&c.NATSListen, "nats-listen", env("PRIORFLOW_NATS_LISTEN", "127.0.0.1:4223"), "loopback address of the embedded NATS server, for other processes on this machine (PRIORFLOW_NATS_LISTEN)")
	fs.Int64Var(&c.NATSMaxMemory, "nats-max-memory", envInt("PRIORFLOW_NATS_MAX_MEMORY", 256<<20), "embedded JetStream memory limit in bytes (PRIORFLOW_NATS_MAX_MEMORY)")
	fs.Int64Var(&c.NATSMaxStore, "nats-max-store", envInt("PRIORFLOW_NATS_MAX_STORE", 10<<30), "embedded JetStream file store limit in bytes (PRIORFLOW_NATS_MAX_STORE)")
	fs.IntVar(&c.StreamReplicas, "stream-replicas", int(envInt("PRIORFLOW_STREAM_REPLICAS", 1)), "replicas of the JetStream streams in a cluster (PRIORFLOW_STREAM_REPLICAS)")
	fs.DurationVar(&c.DuplicateWindow, "duplicate-window", time.Hour, "how long a care event id is remembered to drop resends")
	fs.Int64Var(&c.MaxBody, "max-body", 64<<20, "largest accepted FHIR request body in bytes")
	fs.DurationVar(&c.Grace, "shutdown-grace", 30*time.Second, "how long shutdown waits for in-flight requests")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if c.BaseURL == "" {
		c.BaseURL = deriveBaseURL(c.HTTPAddr)
	}
	c.BaseURL = strings.TrimSuffix(c.BaseURL, "/")
	if c.BlobURL == "" {
		abs, err := filepath.Abs(filepath.Join(c.DataDir, "blobs"))
		if err != nil {
			return nil, fmt.Errorf("data dir: %w", err)
		}
		c.BlobURL = "file://" + abs + "?create_dir=1&metadata=skip"
	}
	return c, c.validate()
}

// validate reports every problem at once.
func (c *config) validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		errs = append(errs, fmt.Errorf("PRIORFLOW_HTTP_ADDR %q: %w", c.HTTPAddr, err))
	}
	if !strings.HasPrefix(c.BaseURL, "http://") && !strings.HasPrefix(c.BaseURL, "https://") {
		errs = append(errs, fmt.Errorf("PRIORFLOW_BASE_URL %q must be an absolute http(s) URL", c.BaseURL))
	}
	if !strings.HasPrefix(c.BlobURL, "file://") && !strings.HasPrefix(c.BlobURL, "s3://") && !strings.HasPrefix(c.BlobURL, "mem://") {
		errs = append(errs, fmt.Errorf("PRIORFLOW_BLOB_URL %q must be a file://, s3:// or mem:// URL", c.BlobURL))
	}
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("DATABASE_URL is empty"))
	}
	if _, _, err := net.SplitHostPort(c.MLLPAddr); err != nil {
		errs = append(errs, fmt.Errorf("PRIORFLOW_MLLP_ADDR %q: %w", c.MLLPAddr, err))
	}
	if c.NATSURL == "" {
		if host, _, err := net.SplitHostPort(c.NATSListen); err != nil {
			errs = append(errs, fmt.Errorf("PRIORFLOW_NATS_LISTEN %q: %w", c.NATSListen, err))
		} else if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			errs = append(errs, fmt.Errorf("PRIORFLOW_NATS_LISTEN %q must be a loopback address: the embedded server has no authentication", c.NATSListen))
		}
	}
	if _, err := time.LoadLocation(c.HL7TimeZone); err != nil {
		errs = append(errs, fmt.Errorf("PRIORFLOW_HL7_TIMEZONE %q: %w", c.HL7TimeZone, err))
	}
	if c.StreamReplicas < 1 || c.StreamReplicas > 5 {
		errs = append(errs, fmt.Errorf("PRIORFLOW_STREAM_REPLICAS %d must be 1 to 5", c.StreamReplicas))
	}
	if c.MaxBody < 1024 {
		errs = append(errs, errors.New("max-body must be at least 1024 bytes"))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("PRIORFLOW_LOG_LEVEL %q is not debug, info, warn or error", c.LogLevel))
	}
	return errors.Join(errs...)
}

func deriveBaseURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://localhost:8080"
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

func envInt(name string, def int64) int64 {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
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
