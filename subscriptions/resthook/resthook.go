package resthook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/priorflow/priorflow/subscriptions"
)

// Config tunes a Sender.
type Config struct {
	// BaseURL is the server's FHIR base, for references in Bundles.
	BaseURL string
	// Timeout bounds one POST when the subscription sets none; 0 means 10s.
	Timeout time.Duration
	// UserAgent names Priorflow to receivers.
	UserAgent string
}

// Sender POSTs notifications; it implements subscriptions.Sender.
type Sender struct {
	guard  *Guard
	client *http.Client
	cfg    Config
	log    *slog.Logger
}

// NewSender returns a sender that admits endpoints through guard.
func NewSender(guard *Guard, cfg Config, log *slog.Logger) (*Sender, error) {
	if guard == nil || log == nil {
		return nil, errors.New("rest-hook sender: guard and logger are required")
	}
	if cfg.BaseURL == "" {
		return nil, errors.New("rest-hook sender: base URL is required")
	}
	cfg.BaseURL = strings.TrimSuffix(cfg.BaseURL, "/")
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "Priorflow-Subscriptions/1"
	}
	tr := &http.Transport{
		Proxy: nil, // a proxy would dial on our behalf, past the address check
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			d := &net.Dialer{Timeout: 5 * time.Second, Control: dialControl(ctx)}
			return d.DialContext(ctx, network, addr)
		},
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: cfg.Timeout,
		ForceAttemptHTTP2:     true,
	}
	client := &http.Client{
		Transport: tr,
		// A redirect could lead anywhere: it counts as a failure.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &Sender{guard: guard, client: client, cfg: cfg, log: log}, nil
}

// Send POSTs one notification Bundle (or, for an R4 criteria-based
// subscription without channel.payload, an empty body) and succeeds on a
// 2xx answer.
func (s *Sender) Send(ctx context.Context, sub *subscriptions.Subscription, typ subscriptions.NotificationType, st subscriptions.StatusInfo, ns []*subscriptions.Notification) error {
	e := s.guard.match(sub.Endpoint)
	if e == nil {
		return errors.New("endpoint is no longer in the allow-list")
	}
	ctx = context.WithValue(ctx, allowPrivateKey{}, e.privateOK)
	timeout := s.cfg.Timeout
	if sub.Timeout > 0 {
		timeout = sub.Timeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var body []byte
	if sub.TopicBased() || sub.PayloadMIME != "" {
		body = subscriptions.NotificationBundle(sub, typ, st, ns, s.cfg.BaseURL)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sub.Endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("rest-hook: %w", err)
	}
	for _, h := range sub.Headers {
		name, value, _ := strings.Cut(h, ":")
		req.Header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json; charset=utf-8")
	}
	req.Header.Set("User-Agent", s.cfg.UserAgent)
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("rest-hook POST: %w", unwrapURLError(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("rest-hook POST: endpoint answered %s", resp.Status)
	}
	return nil
}

// unwrapURLError drops the URL from the message: it may carry a token in its
// query, and last_error is shown by $status.
func unwrapURLError(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}
