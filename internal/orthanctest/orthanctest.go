// Package orthanctest runs a real Orthanc (Debian's orthanc and
// orthanc-dicomweb packages) per test, on free loopback ports with its own
// storage, as the remote DICOMweb peer of interop tests.
package orthanctest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/priorflow/priorflow/archive/dicomtest"
)

// Plugin is where Debian installs the DICOMweb plugin.
const Plugin = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"

// Orthanc is a running Orthanc.
type Orthanc struct {
	URL  string // REST root, e.g. http://127.0.0.1:8042
	AET  string
	Port int // DICOM port
	http *http.Client
}

// SCUAE is the AE title Orthanc knows as a modality allowed to query and
// retrieve (C-FIND, C-GET; C-MOVE after MoveTo) from 127.0.0.1; other
// calling AE titles may only echo and store, and a called AE title other
// than Orthanc's own is rejected, as a PACS configured for its peers does.
const SCUAE = "PRIORFLOW"

// Server is a DICOMweb server Orthanc is told about (DicomWeb.Servers).
type Server struct {
	Name, URL string
}

// Require fails the test when Orthanc is not installed: make test installs
// it (scripts/install-deps.sh), so its absence is a setup error, not a skip.
func Require(tb testing.TB) string {
	tb.Helper()
	bin, err := exec.LookPath("Orthanc")
	if err != nil {
		tb.Fatal("Orthanc is not installed: run make deps (apt-get install -y orthanc orthanc-dicomweb)")
	}
	if _, err := os.Stat(Plugin); err != nil {
		tb.Fatalf("the Orthanc DICOMweb plugin is missing at %s: run make deps", Plugin)
	}
	return bin
}

func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Start runs Orthanc until the test ends.
//
// Ports come from the kernel and are released before Orthanc binds them, so
// another process may take one in between; Orthanc then exits at once. Such
// an exit is retried on fresh ports rather than failing the test, and a slow
// start on a loaded machine (CI runs many Orthancs beside the Go tests) is
// waited for as long as the process lives.
func Start(tb testing.TB, servers ...Server) *Orthanc {
	tb.Helper()
	return StartWith(tb, Options{Servers: servers})
}

// Options are the settings of StartWith.
type Options struct {
	// Servers are the DICOMweb servers Orthanc is told about.
	Servers []Server
	// DICOMTLS, when set, makes the DICOM port TLS only (PS3.15 B.1).
	DICOMTLS *DICOMTLS
	// DICOMTimeout is how long Orthanc's DICOM side waits for a peer
	// (DicomScpTimeout; 0 means the 30 s of Start), such as for the
	// C-STORE-RSP of a C-GET's sub-operation.
	DICOMTimeout time.Duration
}

// DICOMTLS is Orthanc's DICOM TLS: its certificate and key (PEM files),
// the certificates it trusts for clients, and whether a client must
// present one.
type DICOMTLS struct {
	CertFile, KeyFile, TrustedFile string
	RequireClientCertificate       bool
}

// StartWith is Start with more settings.
func StartWith(tb testing.TB, opts Options) *Orthanc {
	tb.Helper()
	bin := Require(tb)
	var last string
	for attempt := 0; attempt < 4; attempt++ {
		o, log, ok := start(tb, bin, opts)
		if ok {
			return o
		}
		last = log
	}
	tb.Fatalf("Orthanc did not start after 4 attempts; its last log:\n%s", last)
	return nil
}

// start runs one Orthanc; ok is false with its log when it exited before
// answering.
func start(tb testing.TB, bin string, opts Options) (o *Orthanc, log string, ok bool) {
	tb.Helper()
	dir := tb.TempDir()
	httpPort, dicomPort := freePort(tb), freePort(tb)
	dw := map[string]any{}
	for _, s := range opts.Servers {
		dw[s.Name] = map[string]any{"Url": s.URL, "HasDelete": true}
	}
	cfg := map[string]any{
		"Name":                    "priorflow-test",
		"StorageDirectory":        filepath.Join(dir, "storage"),
		"IndexDirectory":          filepath.Join(dir, "index"),
		"HttpPort":                httpPort,
		"DicomPort":               dicomPort,
		"DicomAet":                "ORTHANCTEST",
		"RemoteAccessAllowed":     false,
		"AuthenticationEnabled":   false,
		"HttpCompressionEnabled":  false,
		"StableAge":               1,
		"ConcurrentJobs":          2,
		"Plugins":                 []string{Plugin},
		"DicomWeb":                map[string]any{"Enable": true, "Root": "/dicom-web/", "Servers": dw},
		"SaveJobs":                false,
		"StorageCompression":      false,
		"OverwriteInstances":      false,
		"LimitFindResults":        0,
		"HttpRequestTimeout":      60,
		"HttpTimeout":             60,
		"DicomScpTimeout":         30,
		"UnknownSopClassAccepted": true,
		"DicomCheckCalledAet":     true,
		"DicomModalities": map[string]any{"priorflow": map[string]any{"AET": SCUAE, "Host": "127.0.0.1", "Port": 104,
			"AllowEcho": true, "AllowFind": true, "AllowGet": true, "AllowMove": false, "AllowStore": true}},
		"DeidentifyLogs": true,
		"KeepAlive":      true,
		"TcpNoDelay":     true,
	}
	if opts.DICOMTimeout > 0 {
		cfg["DicomScpTimeout"] = max(1, int(opts.DICOMTimeout.Seconds()))
	}
	if t := opts.DICOMTLS; t != nil {
		cfg["DicomTlsEnabled"] = true
		cfg["DicomTlsCertificate"] = t.CertFile
		cfg["DicomTlsPrivateKey"] = t.KeyFile
		cfg["DicomTlsTrustedCertificates"] = t.TrustedFile
		cfg["DicomTlsRemoteCertificateRequired"] = t.RequireClientCertificate
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	cfgPath := filepath.Join(dir, "orthanc.json")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		tb.Fatal(err)
	}
	logPath := filepath.Join(dir, "orthanc.log")
	logf, err := os.Create(logPath)
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, "--logdir="+dir, cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start Orthanc: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		logf.Close()
	})
	o = &Orthanc{URL: fmt.Sprintf("http://127.0.0.1:%d", httpPort), AET: "ORTHANCTEST", Port: dicomPort,
		http: &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DisableCompression: true}}}
	probe := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableCompression: true}}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := probe.Get(o.URL + "/system")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return o, "", true
			}
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(logPath)
			return nil, string(tail(b, 2000)), false
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			tb.Fatalf("Orthanc did not answer within 2 minutes: %v\n%s", err, tail(b, 2000))
		}
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// Do sends a request to Orthanc's REST API and returns status and body.
func (o *Orthanc) Do(tb testing.TB, method, path string, body any) (int, []byte) {
	tb.Helper()
	var rd io.Reader
	switch v := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(v)
	default:
		b, err := json.Marshal(v)
		if err != nil {
			tb.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, o.URL+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := o.http.Do(req)
	if err != nil {
		tb.Fatalf("Orthanc %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, out
}

// MoveTo lets SCUAE ask for C-MOVEs and tells Orthanc where the Storage
// SCP called aet listens (127.0.0.1:port), as a PACS is told where its
// peers are. Several destinations may be added, one per AE title.
func (o *Orthanc) MoveTo(tb testing.TB, aet string, port int) { o.moveTo(tb, aet, port, false) }

// MoveToTLS is MoveTo with the SCP speaking DICOM TLS: Orthanc connects
// with the certificate of its DICOMTLS option and verifies the SCP's with
// the certificates it trusts.
func (o *Orthanc) MoveToTLS(tb testing.TB, aet string, port int) { o.moveTo(tb, aet, port, true) }

func (o *Orthanc) moveTo(tb testing.TB, aet string, port int, useTLS bool) {
	tb.Helper()
	scuPort := 104
	if aet == SCUAE {
		scuPort = port
	}
	put := func(name, aet string, port int, query bool) {
		code, body := o.Do(tb, "PUT", "/modalities/"+name, map[string]any{"AET": aet, "Host": "127.0.0.1", "Port": port,
			"AllowEcho": true, "AllowFind": query, "AllowGet": query, "AllowMove": query, "AllowStore": true, "UseDicomTls": useTLS})
		if code != 200 {
			tb.Fatalf("Orthanc modality %s: %d %s", name, code, body)
		}
	}
	put("priorflow", SCUAE, scuPort, true)
	if aet != SCUAE {
		put("dest-"+strings.ToLower(aet), aet, port, false)
	}
}

// Upload stores a Part 10 file in Orthanc and returns its instance id.
func (o *Orthanc) Upload(tb testing.TB, dcm []byte) string {
	tb.Helper()
	code, body := o.Do(tb, "POST", "/instances", dcm)
	if code != 200 {
		tb.Fatalf("Orthanc upload: %d %s", code, body)
	}
	var r struct{ ID, ParentStudy string }
	if err := json.Unmarshal(body, &r); err != nil {
		tb.Fatal(err)
	}
	return r.ID
}

// UploadStudy stores every instance of the studies in Orthanc, study after
// study, and returns how many bytes they hold.
func (o *Orthanc) UploadStudy(tb testing.TB, sts ...*dicomtest.Study) int64 {
	tb.Helper()
	var n int64
	for _, st := range sts {
		for _, in := range st.Instances() {
			o.Upload(tb, in.Bytes)
			n += int64(len(in.Bytes))
		}
	}
	return n
}
