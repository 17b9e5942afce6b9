package mllp

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/priorflow/priorflow/internal/tlsfiles"
	"github.com/priorflow/priorflow/internal/tlstest"
	"github.com/prometheus/client_golang/prometheus"
)

// serverTLS loads the server configuration the way cmd/api would.
func serverTLS(t *testing.T, ca *tlstest.CA, clientCAFile string) *tls.Config {
	t.Helper()
	_, cert, key := ca.Issue(t, "mllp-server", true)
	cfg, err := tlsfiles.Server(cert, key, clientCAFile)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// clientTLS loads a client configuration trusting ca, with a certificate
// issued by signer unless signer is nil.
func clientTLS(t *testing.T, ca, signer *tlstest.CA, cn string) *tls.Config {
	t.Helper()
	var cert, key string
	if signer != nil {
		_, cert, key = signer.Issue(t, cn, false)
	}
	cfg, err := tlsfiles.Client(cert, key, ca.File)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// countingEcho is echoAck counting its calls.
func countingEcho(n *atomic.Int32) Handler {
	return HandlerFunc(func(ctx context.Context, msg []byte, remote net.Addr) []byte {
		n.Add(1)
		return echoAck(ctx, msg, remote)
	})
}

// refused reads priorflow_mllp_connections_refused_total{reason}.
func refused(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "priorflow_mllp_connections_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no refused counter for reason %q", reason)
	return 0
}

// shutdown stops ts and waits for its connections to end, after which
// its logs and counters are final.
func shutdown(t *testing.T, ts *testServer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

// sendFails checks that a message cannot be exchanged with addr.
func sendFails(t *testing.T, addr string, opts ...DialOption) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, addr, opts...)
	if err != nil {
		return // TLS 1.2 reports a refused client certificate here
	}
	defer c.Close()
	if ack, err := c.Send(ctx, []byte(patientMsg)); err == nil {
		t.Errorf("Send succeeded with ack %q, want a refusal", ack)
	}
}

// waitRefused waits until the server has counted want refusals for
// reason; it may count one a moment after the client has seen it.
func waitRefused(t *testing.T, reg *prometheus.Registry, reason string, want float64) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if refused(t, reg, reason) >= want {
			return
		}
	}
}

// patientMsg carries content that must never reach a log.
const patientMsg = "MSH|^~\\&|A|B|||||ADT^A01|1|P|2.5\rPID|1||MRN-55501||ROE^RICHARD\r"

func assertNoContent(t *testing.T, logs string) {
	t.Helper()
	for _, s := range []string{"ROE", "55501", "PID", "ADT^A01"} {
		if strings.Contains(logs, s) {
			t.Errorf("logs contain message content %q:\n%s", s, logs)
		}
	}
}

func TestParseAllowList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"  ", nil},
		{"127.0.0.1", []string{"127.0.0.1/32"}},
		{" 10.20.0.0/16 , 192.0.2.7,2001:db8::/32, ::1", []string{"10.20.0.0/16", "192.0.2.7/32", "2001:db8::/32", "::1/128"}},
		{"::ffff:192.0.2.7", []string{"192.0.2.7/32"}},
		{"::ffff:10.0.0.0/104", []string{"10.0.0.0/8"}},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseAllowList(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			var gs []string
			for _, p := range got {
				gs = append(gs, p.String())
			}
			if !slices.Equal(gs, tc.want) {
				t.Errorf("ParseAllowList(%q) = %v, want %v", tc.in, gs, tc.want)
			}
		})
	}
	t.Run("every bad entry reported", func(t *testing.T) {
		_, err := ParseAllowList("10.0.0.1,host.example, ,10.1.2.3/16,10.0.0.0/33,fe80::1%eth0,::ffff:0:0/90,")
		if err == nil {
			t.Fatal("no error")
		}
		msg := err.Error()
		for _, want := range []string{
			`entry 2 "host.example": not an IP address`,
			`entry 3 "": empty`,
			`entry 4 "10.1.2.3/16": has bits set beyond /16; did you mean 10.1.0.0/16?`,
			`entry 5 "10.0.0.0/33": not a valid CIDR prefix`,
			`entry 6 "fe80::1%eth0": IPv6 zones`,
			`entry 7 "::ffff:0:0/90": IPv4-mapped prefix shorter than /96`,
			`entry 8 "": empty`,
		} {
			if !strings.Contains(msg, want) {
				t.Errorf("error lacks %q:\n%s", want, msg)
			}
		}
		if strings.Contains(msg, `entry 1 `) {
			t.Errorf("valid entry reported:\n%s", msg)
		}
	})
}

func TestConfig_Validate_Security(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	good := serverTLS(t, ca, ca.File)
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // "" for valid
	}{
		{"mutual TLS from tlsfiles.Server", Config{TLS: good}, ""},
		{"no certificate", Config{TLS: &tls.Config{}}, "no server certificate"},
		{"TLS 1.1", Config{TLS: &tls.Config{Certificates: good.Certificates, MinVersion: tls.VersionTLS11}}, "TLS 1.2"},
		{"unverified client certificates", Config{TLS: &tls.Config{Certificates: good.Certificates, ClientAuth: tls.RequireAnyClientCert}},
			"RequireAnyClientCert"},
		{"verification against the system roots", Config{TLS: &tls.Config{Certificates: good.Certificates, ClientAuth: tls.RequireAndVerifyClientCert}},
			"ClientCAs is empty"},
		{"zero prefix", Config{AllowedSenders: []netip.Prefix{{}}}, "AllowedSenders[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate = %v, want an error about %q", err, tc.want)
			}
		})
	}
}

func TestServer_AllowedSenders(t *testing.T) {
	from := func(ip string) DialOption {
		return WithLocalAddr(&net.TCPAddr{IP: net.ParseIP(ip)})
	}
	t.Run("sender outside the list is closed unread, counted and logged", func(t *testing.T) {
		var calls atomic.Int32
		reg := prometheus.NewRegistry()
		allow, err := ParseAllowList("127.0.0.2")
		if err != nil {
			t.Fatal(err)
		}
		ts := startServer(t, countingEcho(&calls), Config{AllowedSenders: allow, Registerer: reg})

		refusedConn := dial(t, ts.addr, from("127.0.0.1"))
		_, _ = refusedConn.conn.Write([]byte(frame(patientMsg)))
		expectClosed(t, refusedConn)
		sendFails(t, ts.addr, from("127.0.0.1"))

		if got, want := send(t, dial(t, ts.addr, from("127.0.0.2")), "hello"), "ACK:hello"; got != want {
			t.Errorf("ack from the allowed sender = %q, want %q", got, want)
		}
		shutdown(t, ts)
		if got, want := calls.Load(), int32(1); got != want {
			t.Errorf("handler called %d times, want %d (only the allowed sender)", got, want)
		}
		if got, want := refused(t, reg, "sender_not_allowed"), 2.0; got != want {
			t.Errorf("refused sender_not_allowed = %v, want %v", got, want)
		}
		logs := ts.logs.String()
		var line string
		for l := range strings.Lines(logs) {
			if strings.Contains(l, "sender not allowed") {
				line = l
				break
			}
		}
		if !strings.Contains(line, "level=WARN") || !strings.Contains(line, "remote=127.0.0.1:") {
			t.Errorf("refusal not logged at warn with the remote address:\n%s", logs)
		}
		assertNoContent(t, logs)
	})
	t.Run("IPv4 sender on a dual-stack listener matches an IPv4-mapped entry", func(t *testing.T) {
		allow, err := ParseAllowList("::ffff:127.0.0.2, 2001:db8::/32")
		if err != nil {
			t.Fatal(err)
		}
		ts := startServerOn(t, "[::]:0", echoAck, Config{AllowedSenders: allow})
		_, port, _ := net.SplitHostPort(ts.addr)
		addr := net.JoinHostPort("127.0.0.1", port)
		if got, want := send(t, dial(t, addr, from("127.0.0.2")), "v4"), "ACK:v4"; got != want {
			t.Errorf("ack = %q, want %q", got, want)
		}
		expectClosed(t, dial(t, addr, from("127.0.0.3")))
		expectClosed(t, dial(t, net.JoinHostPort("::1", port)))
	})
	t.Run("nil list accepts any sender", func(t *testing.T) {
		ts := startServer(t, echoAck, Config{})
		if got, want := send(t, dial(t, ts.addr, from("127.0.0.9")), "x"), "ACK:x"; got != want {
			t.Errorf("ack = %q, want %q", got, want)
		}
	})
}

func TestServer_TLS(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	t.Run("round trip with an acknowledgement", func(t *testing.T) {
		ts := startServer(t, echoAck, Config{TLS: serverTLS(t, ca, "")})
		c := dial(t, ts.addr, WithTLS(clientTLS(t, ca, nil, "")))
		if _, ok := c.conn.(*tls.Conn); !ok {
			t.Fatalf("client connection is %T, want *tls.Conn", c.conn)
		}
		for _, msg := range []string{"one", "two"} {
			if got, want := send(t, c, msg), "ACK:"+msg; got != want {
				t.Errorf("ack = %q, want %q", got, want)
			}
		}
	})
	t.Run("client that does not trust the server's CA fails", func(t *testing.T) {
		ts := startServer(t, echoAck, Config{TLS: serverTLS(t, ca, "")})
		other := tlstest.NewCA(t, "other")
		sendFails(t, ts.addr, WithTLS(clientTLS(t, other, nil, "")))
	})
	t.Run("plain MLLP to a TLS port is refused without logging content", func(t *testing.T) {
		var calls atomic.Int32
		reg := prometheus.NewRegistry()
		ts := startServer(t, countingEcho(&calls), Config{TLS: serverTLS(t, ca, ""), Registerer: reg})
		plain := dial(t, ts.addr)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if ack, err := plain.Send(ctx, []byte(patientMsg)); err == nil {
			t.Errorf("plain Send got ack %q", ack)
		}
		// The server goes on serving TLS clients.
		c := dial(t, ts.addr, WithTLS(clientTLS(t, ca, nil, "")))
		if got, want := send(t, c, "after"), "ACK:after"; got != want {
			t.Errorf("ack = %q, want %q", got, want)
		}
		_ = c.Close()
		shutdown(t, ts)
		if got, want := calls.Load(), int32(1); got != want {
			t.Errorf("handler called %d times, want %d", got, want)
		}
		if got, want := refused(t, reg, "tls_handshake"), 1.0; got != want {
			t.Errorf("refused tls_handshake = %v, want %v", got, want)
		}
		logs := ts.logs.String()
		if !strings.Contains(logs, "mllp tls handshake failed") {
			t.Errorf("handshake failure not logged:\n%s", logs)
		}
		assertNoContent(t, logs)
	})
	t.Run("silent peer is dropped at the handshake deadline", func(t *testing.T) {
		ts := startServer(t, echoAck, Config{TLS: serverTLS(t, ca, ""), ReadTimeout: 100 * time.Millisecond})
		silent := dial(t, ts.addr) // plain TCP, sends nothing
		expectClosed(t, silent)
		shutdown(t, ts)
		if logs := ts.logs.String(); !strings.Contains(logs, "mllp tls handshake failed") || !strings.Contains(logs, "timeout") {
			t.Errorf("handshake timeout not logged:\n%s", logs)
		}
	})
	t.Run("shutdown interrupts a pending handshake", func(t *testing.T) {
		ts := startServer(t, echoAck, Config{TLS: serverTLS(t, ca, "")}) // 30s handshake deadline
		silent := dial(t, ts.addr)
		waitConns(t, ts, 1) // the handshake is under way
		start := time.Now()
		shutdown(t, ts)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Shutdown took %v with a silent peer", d)
		}
		expectClosed(t, silent)
	})
}

func TestServer_MutualTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	other := tlstest.NewCA(t, "other")
	var calls atomic.Int32
	reg := prometheus.NewRegistry()
	ts := startServer(t, countingEcho(&calls), Config{TLS: serverTLS(t, ca, ca.File), Registerer: reg})

	t.Run("client certificate from the CA is accepted", func(t *testing.T) {
		c := dial(t, ts.addr, WithTLS(clientTLS(t, ca, ca, "ris-engine")))
		if got, want := send(t, c, "hi"), "ACK:hi"; got != want {
			t.Errorf("ack = %q, want %q", got, want)
		}
	})
	t.Run("no client certificate is refused", func(t *testing.T) {
		sendFails(t, ts.addr, WithTLS(clientTLS(t, ca, nil, "")))
	})
	t.Run("client certificate from another CA is refused", func(t *testing.T) {
		sendFails(t, ts.addr, WithTLS(clientTLS(t, ca, other, "intruder")))
	})
	t.Run("refusals counted, sender named, nothing of the content logged", func(t *testing.T) {
		// With TLS 1.3 the client sees the server's alert before the
		// server's handshake call returns and counts the refusal; shutting
		// down before then would make the refusal one interrupted by the
		// shutdown, which is not counted.
		waitRefused(t, reg, "tls_handshake", 2)
		shutdown(t, ts)
		if got, want := calls.Load(), int32(1); got != want {
			t.Errorf("handler called %d times, want %d", got, want)
		}
		if got, want := refused(t, reg, "tls_handshake"), 2.0; got != want {
			t.Errorf("refused tls_handshake = %v, want %v", got, want)
		}
		logs := ts.logs.String()
		if !strings.Contains(logs, "client_subject=\"CN=ris-engine") {
			t.Errorf("accepted client not named in the logs:\n%s", logs)
		}
		if got := strings.Count(logs, "mllp tls handshake failed"); got != 2 {
			t.Errorf("%d handshake failures logged, want 2:\n%s", got, logs)
		}
		assertNoContent(t, logs)
	})
}

// waitConns waits until ts serves n connections.
func waitConns(t *testing.T, ts *testServer, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		ts.mu.Lock()
		got := len(ts.conns)
		ts.mu.Unlock()
		if got == n {
			return
		}
	}
	t.Fatalf("server never reached %d connections", n)
}
