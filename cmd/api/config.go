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

	"github.com/priorflow/priorflow/archive/dicomheader"
	"github.com/priorflow/priorflow/internal/database"
	"github.com/priorflow/priorflow/internal/patientid"
	"github.com/priorflow/priorflow/triggers/hl7v2"
	"github.com/priorflow/priorflow/triggers/mllp"
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
	// HL7Charset is the character set of HL7 v2 messages that declare
	// none (MSH-18) but are not UTF-8; "" refuses them.
	HL7Charset string
	// DICOMCharset is the character set of DICOM text that is not UTF-8
	// once the object's own set is applied.
	DICOMCharset string
	// MLLPAllow is the senders MLLP accepts: comma-separated IPs and CIDRs,
	// or "any".
	MLLPAllow                              string
	MLLPTLSCert, MLLPTLSKey, MLLPTLSClient string

	// Auth is the authorization mode: "smart" (tokens from an issuer; the
	// default, and it must be configured), "dev" (the built-in token
	// endpoint with a ready token written under the data directory) or
	// "off".
	Auth          string
	AuthIssuer    string
	AuthJWKSURL   string
	AuthTokenURL  string
	AuthAudience  string
	AuthClients   string
	AuthKeyFile   string
	AuthClockSkew time.Duration
	AuthTokenTTL  time.Duration

	// SubscriptionEndpoints are the URL prefixes rest-hook subscriptions
	// may deliver to (comma-separated).
	SubscriptionEndpoints string

	// ConfigFile is PRIORFLOW_CONFIG, shared with the prefetcher: the api
	// reads its identifiers: section (Identifiers), so that HL7 v2 and
	// DICOM name an assigning authority's patient IDs as the prefetcher
	// does, and its hl7: section.
	ConfigFile  string
	Identifiers *patientid.Systems
	// HL7Tables is its hl7: section (code systems, modality prefixes).
	HL7Tables *hl7v2.Tables

	// NATSURL is an external NATS server or cluster; empty embeds one.
	NATSURL         string
	NATSListen      string
	NATSMaxMemory   int64
	NATSMaxStore    int64
	StreamReplicas  int
	DuplicateWindow time.Duration

	migrateOnly bool
}

func loadConfig(args []string) (*config, error) {
	return loadConfigFor(args, false)
}

// loadConfigFor is loadConfig; migrating needs no authorization settings.
func loadConfigFor(args []string, migrateOnly bool) (*config, error) {
	c := &config{migrateOnly: migrateOnly}
	fs := flag.NewFlagSet("api", flag.ContinueOnError)
	fs.StringVar(&c.DatabaseURL, "database-url", env("DATABASE_URL", database.DefaultURL), "PostgreSQL URL (DATABASE_URL); the database is created if missing")
	fs.StringVar(&c.HTTPAddr, "http-addr", env("PRIORFLOW_HTTP_ADDR", ":8080"), "HTTP listen address (PRIORFLOW_HTTP_ADDR)")
	fs.StringVar(&c.BaseURL, "base-url", env("PRIORFLOW_BASE_URL", ""), "absolute URL of this server used in links (PRIORFLOW_BASE_URL); default derived from the address")
	fs.StringVar(&c.DataDir, "data-dir", env("PRIORFLOW_DATA_DIR", "./data"), "data directory (PRIORFLOW_DATA_DIR)")
	fs.StringVar(&c.BlobURL, "blob-url", env("PRIORFLOW_BLOB_URL", ""), "blob store for DICOM objects (PRIORFLOW_BLOB_URL): file:///path or s3://bucket?region=...; default file://<data-dir>/blobs")
	fs.StringVar(&c.LogLevel, "log-level", env("PRIORFLOW_LOG_LEVEL", "info"), "debug, info, warn or error (PRIORFLOW_LOG_LEVEL)")
	fs.StringVar(&c.MLLPAddr, "mllp-addr", env("PRIORFLOW_MLLP_ADDR", ":2575"), "HL7 v2 MLLP listen address (PRIORFLOW_MLLP_ADDR)")
	fs.StringVar(&c.HL7TimeZone, "hl7-timezone", env("PRIORFLOW_HL7_TIMEZONE", "Local"), "IANA zone of HL7 v2 times sent without an offset (PRIORFLOW_HL7_TIMEZONE)")
	fs.StringVar(&c.HL7Charset, "hl7-charset", env("PRIORFLOW_HL7_CHARSET", ""), "character set (MSH-18 value, e.g. 8859/1) of HL7 v2 messages that declare none but are not UTF-8; empty refuses them (PRIORFLOW_HL7_CHARSET)")
	fs.StringVar(&c.DICOMCharset, "dicom-charset", env("PRIORFLOW_DICOM_CHARSET", dicomheader.DefaultCharset), "character set (Specific Character Set term) of DICOM text that declares none but is not UTF-8; ISO_IR 6 refuses it (PRIORFLOW_DICOM_CHARSET)")
	fs.StringVar(&c.MLLPAllow, "mllp-allow", env("PRIORFLOW_MLLP_ALLOW", "127.0.0.0/8,::1"), "senders MLLP accepts: comma-separated IPs and CIDRs, or any (PRIORFLOW_MLLP_ALLOW)")
	fs.StringVar(&c.MLLPTLSCert, "mllp-tls-cert", env("PRIORFLOW_MLLP_TLS_CERT", ""), "PEM certificate for MLLP over TLS (PRIORFLOW_MLLP_TLS_CERT); with the key, MLLP takes only TLS")
	fs.StringVar(&c.MLLPTLSKey, "mllp-tls-key", env("PRIORFLOW_MLLP_TLS_KEY", ""), "PEM private key for MLLP over TLS (PRIORFLOW_MLLP_TLS_KEY)")
	fs.StringVar(&c.MLLPTLSClient, "mllp-tls-client-ca", env("PRIORFLOW_MLLP_TLS_CLIENT_CA", ""), "PEM CA of MLLP client certificates (PRIORFLOW_MLLP_TLS_CLIENT_CA); set, senders need a certificate it signed (mutual TLS)")
	fs.StringVar(&c.Auth, "auth", env("PRIORFLOW_AUTH", "smart"), "authorization: smart (access tokens of a configured issuer), dev (built-in issuer and a ready token) or off (PRIORFLOW_AUTH)")
	fs.StringVar(&c.AuthIssuer, "auth-issuer", env("PRIORFLOW_AUTH_ISSUER", ""), "issuer (iss) of the access tokens of an external authorization server (PRIORFLOW_AUTH_ISSUER)")
	fs.StringVar(&c.AuthJWKSURL, "auth-jwks-url", env("PRIORFLOW_AUTH_JWKS_URL", ""), "JWKS URL of the external issuer's signing keys (PRIORFLOW_AUTH_JWKS_URL)")
	fs.StringVar(&c.AuthTokenURL, "auth-token-url", env("PRIORFLOW_AUTH_TOKEN_URL", ""), "token endpoint of the external authorization server, advertised in /.well-known/smart-configuration (PRIORFLOW_AUTH_TOKEN_URL)")
	fs.StringVar(&c.AuthAudience, "auth-audience", env("PRIORFLOW_AUTH_AUDIENCE", ""), "audience (aud) access tokens must name (PRIORFLOW_AUTH_AUDIENCE); default <base-url>/fhir")
	fs.StringVar(&c.AuthClients, "auth-clients", env("PRIORFLOW_AUTH_CLIENTS", ""), "YAML file of the clients of the built-in SMART Backend Services token endpoint (PRIORFLOW_AUTH_CLIENTS)")
	fs.StringVar(&c.AuthKeyFile, "auth-key-file", env("PRIORFLOW_AUTH_KEY_FILE", ""), "signing key of the built-in token endpoint (PRIORFLOW_AUTH_KEY_FILE); default <data-dir>/auth/signing-key.jwk, created if missing; share it between replicas")
	fs.DurationVar(&c.AuthClockSkew, "auth-clock-skew", envDuration("PRIORFLOW_AUTH_CLOCK_SKEW", time.Minute), "clock skew tolerated on token times (PRIORFLOW_AUTH_CLOCK_SKEW)")
	fs.DurationVar(&c.AuthTokenTTL, "auth-token-ttl", envDuration("PRIORFLOW_AUTH_TOKEN_TTL", 5*time.Minute), "lifetime of access tokens the built-in endpoint issues (PRIORFLOW_AUTH_TOKEN_TTL)")
	fs.StringVar(&c.ConfigFile, "config", env("PRIORFLOW_CONFIG", "config/priorflow.yaml"), "Priorflow YAML shared with the prefetcher; the api reads its identifiers: and hl7: sections, and a missing file means the defaults (PRIORFLOW_CONFIG)")
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
	ids, err := patientid.Load(c.ConfigFile)
	if err != nil {
		return nil, err
	}
	c.Identifiers = ids
	if c.HL7Tables, err = hl7v2.LoadTables(c.ConfigFile); err != nil {
		return nil, err
	}
	if c.BaseURL == "" {
		c.BaseURL = deriveBaseURL(c.HTTPAddr)
	}
	c.BaseURL = strings.TrimSuffix(c.BaseURL, "/")
	if c.AuthAudience == "" {
		c.AuthAudience = c.BaseURL + "/fhir"
	}
	if c.AuthKeyFile == "" {
		c.AuthKeyFile = filepath.Join(c.DataDir, "auth", "signing-key.jwk")
	}
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
	if err := dicomheader.CheckCharset(c.DICOMCharset); err != nil {
		errs = append(errs, fmt.Errorf("PRIORFLOW_DICOM_CHARSET: %w", err))
	}
	if err := hl7v2.CheckCharset(c.HL7Charset); err != nil {
		errs = append(errs, fmt.Errorf("PRIORFLOW_HL7_CHARSET: %w", err))
	}
	if c.StreamReplicas < 1 || c.StreamReplicas > 5 {
		errs = append(errs, fmt.Errorf("PRIORFLOW_STREAM_REPLICAS %d must be 1 to 5", c.StreamReplicas))
	}
	if c.MaxBody < 1024 {
		errs = append(errs, errors.New("max-body must be at least 1024 bytes"))
	}
	switch c.Auth {
	case "off", "dev":
	case "smart":
		if c.migrateOnly {
			break
		}
		switch {
		case c.AuthIssuer == "" && c.AuthClients == "":
			errs = append(errs, errors.New("authorization is not configured: set PRIORFLOW_AUTH_ISSUER and PRIORFLOW_AUTH_JWKS_URL for an external authorization server, "+
				"or PRIORFLOW_AUTH_CLIENTS for the built-in token endpoint; PRIORFLOW_AUTH=dev for a development machine, or PRIORFLOW_AUTH=off to serve without authorization"))
		case c.AuthIssuer != "" && c.AuthClients != "":
			errs = append(errs, errors.New("PRIORFLOW_AUTH_ISSUER and PRIORFLOW_AUTH_CLIENTS: choose an external issuer or the built-in token endpoint, not both"))
		case c.AuthIssuer != "" && (c.AuthJWKSURL == "" || c.AuthTokenURL == ""):
			errs = append(errs, errors.New("PRIORFLOW_AUTH_JWKS_URL and PRIORFLOW_AUTH_TOKEN_URL are needed with PRIORFLOW_AUTH_ISSUER: the issuer's signing keys and where clients get tokens"))
		}
	default:
		errs = append(errs, fmt.Errorf("PRIORFLOW_AUTH %q is not smart, dev or off", c.Auth))
	}
	if c.MLLPAllow != "any" {
		if _, err := mllp.ParseAllowList(c.MLLPAllow); err != nil {
			errs = append(errs, fmt.Errorf("PRIORFLOW_MLLP_ALLOW: %w", err))
		}
	}
	if (c.MLLPTLSCert == "") != (c.MLLPTLSKey == "") || c.MLLPTLSClient != "" && c.MLLPTLSCert == "" {
		errs = append(errs, errors.New("PRIORFLOW_MLLP_TLS_CERT and PRIORFLOW_MLLP_TLS_KEY go together (and PRIORFLOW_MLLP_TLS_CLIENT_CA needs both)"))
	}
	if c.AuthClockSkew < 0 || c.AuthClockSkew > 10*time.Minute {
		errs = append(errs, fmt.Errorf("PRIORFLOW_AUTH_CLOCK_SKEW %s must be between 0 and 10m", c.AuthClockSkew))
	}
	if c.AuthTokenTTL < time.Minute || c.AuthTokenTTL > 24*time.Hour {
		errs = append(errs, fmt.Errorf("PRIORFLOW_AUTH_TOKEN_TTL %s must be between 1m and 24h", c.AuthTokenTTL))
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
