package dicombench

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// OrthancPlugin is where Debian installs Orthanc's DICOMweb plugin
// (scripts/install-deps.sh installs orthanc and orthanc-dicomweb).
const OrthancPlugin = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"

// Process is a server started by the benchmark.
type Process struct {
	Name    string
	URL     string // HTTP root
	LogPath string
	// DICOMPort is an Orthanc's DICOM port on 127.0.0.1, 0 when off.
	DICOMPort int
	cmd       *exec.Cmd
	exited    chan struct{}
	log       *slog.Logger
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited is closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Stop sends SIGTERM, waits up to grace for the process to exit, then kills
// it.
func (p *Process) Stop(grace time.Duration) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(grace):
		p.log.Warn("server did not stop in time; killing it", "server", p.Name, "pid", p.Pid())
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// StartProcess runs cmd with its output in logPath; url is its HTTP root,
// if it has one.
func StartProcess(name, url, logPath string, cmd *exec.Cmd, log *slog.Logger) (*Process, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, URL: url, LogPath: logPath, cmd: cmd, exited: make(chan struct{}), log: log}
	go func() {
		_ = cmd.Wait()
		lf.Close()
		close(p.exited)
	}()
	return p, nil
}

// Tail returns the end of the process log, for error messages.
func (p *Process) Tail() string {
	b, _ := os.ReadFile(p.LogPath)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// FreePort returns a free TCP port on 127.0.0.1.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// PriorflowOptions start cmd/api.
type PriorflowOptions struct {
	Bin         string // bin/api
	DatabaseURL string
	DataDir     string
}

// StartPriorflow starts cmd/api with every listener (HTTP, HL7 v2 MLLP,
// embedded NATS) on a free loopback port and its data directory (spool, file
// blob store) in opt.DataDir, and waits until it is ready. Its DICOMweb root
// is URL + "/dicomweb".
func StartPriorflow(ctx context.Context, c *Client, opt PriorflowOptions, log *slog.Logger) (*Process, error) {
	var ports [3]int
	for i := range ports {
		p, err := FreePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	port := ports[0]
	if err := os.MkdirAll(opt.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("start Priorflow: %w", err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(opt.Bin)
	cmd.Env = append(os.Environ(),
		"DATABASE_URL="+opt.DatabaseURL,
		"PRIORFLOW_HTTP_ADDR="+addr,
		"PRIORFLOW_BASE_URL=http://"+addr,
		"PRIORFLOW_DATA_DIR="+opt.DataDir,
		"PRIORFLOW_BLOB_URL=",
		fmt.Sprintf("PRIORFLOW_MLLP_ADDR=127.0.0.1:%d", ports[1]),
		fmt.Sprintf("PRIORFLOW_NATS_LISTEN=127.0.0.1:%d", ports[2]),
		"PRIORFLOW_LOG_LEVEL=warn",
		// Beside Orthanc, which checks no credentials either; the audit
		// trail stays on.
		"PRIORFLOW_AUTH=off",
	)
	p, err := StartProcess("Priorflow", "http://"+addr, filepath.Join(opt.DataDir, "api.log"), cmd, log)
	if err != nil {
		return nil, err
	}
	if err := c.WaitReady(ctx, p.URL+"/readyz", 2*time.Minute, p.exited); err != nil {
		p.Stop(5 * time.Second)
		return nil, fmt.Errorf("start Priorflow: %w\n%s", err, p.Tail())
	}
	return p, nil
}

// StartOrthanc starts Orthanc with its DICOMweb plugin on a free loopback
// port, storage and SQLite index in dir, and waits until it answers. The
// configuration is that of internal/orthanctest: no remote access, no
// authentication, no HTTP compression, no storage compression, and no DICOM
// server (only HTTP is measured). Its DICOMweb root is URL + "/dicom-web".
func StartOrthanc(ctx context.Context, c *Client, bin, dir string, log *slog.Logger) (*Process, error) {
	return StartOrthancWith(ctx, c, bin, dir, OrthancOptions{}, log)
}

// OrthancOptions change the configuration of StartOrthanc.
type OrthancOptions struct {
	// Servers are the DICOMweb servers it may retrieve from
	// (DicomWeb.Servers, for POST /dicom-web/servers/{name}/retrieve): root
	// URLs by name.
	Servers map[string]string
	// HTTPCompression lets it gzip answers to clients that ask for it, as
	// Orthanc does by default (HttpCompressionEnabled).
	HTTPCompression bool
	// DICOMAET, when set, turns on its DICOM server (Process.DICOMPort)
	// under this AE title; its peers are added with PUT /modalities.
	DICOMAET string
}

// StartOrthancWith is StartOrthanc with opt applied.
func StartOrthancWith(ctx context.Context, c *Client, bin, dir string, opt OrthancOptions, log *slog.Logger) (*Process, error) {
	if _, err := os.Stat(OrthancPlugin); err != nil {
		return nil, fmt.Errorf("the Orthanc DICOMweb plugin is missing at %s: run make deps", OrthancPlugin)
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	dicomPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("start Orthanc: %w", err)
	}
	servers := map[string]any{}
	for name, u := range opt.Servers {
		servers[name] = map[string]any{"Url": u}
	}
	cfg := map[string]any{
		"Name":                    "priorflow-bench",
		"StorageDirectory":        filepath.Join(dir, "storage"),
		"IndexDirectory":          filepath.Join(dir, "index"),
		"HttpPort":                port,
		"DicomPort":               dicomPort,
		"DicomServerEnabled":      opt.DICOMAET != "",
		"DicomAet":                cmp.Or(opt.DICOMAET, "ORTHANCBENCH"),
		"RemoteAccessAllowed":     false,
		"AuthenticationEnabled":   false,
		"HttpCompressionEnabled":  opt.HTTPCompression,
		"StableAge":               1,
		"ConcurrentJobs":          2,
		"Plugins":                 []string{OrthancPlugin},
		"DicomWeb":                map[string]any{"Enable": true, "Root": "/dicom-web/", "Servers": servers},
		"SaveJobs":                false,
		"StorageCompression":      false,
		"OverwriteInstances":      false,
		"LimitFindResults":        0,
		"HttpRequestTimeout":      60,
		"HttpTimeout":             60,
		"UnknownSopClassAccepted": true,
		"DeidentifyLogs":          true,
		"KeepAlive":               true,
		"TcpNoDelay":              true,
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "orthanc.json")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		return nil, fmt.Errorf("start Orthanc: %w", err)
	}
	cmd := exec.Command(bin, "--logdir="+dir, cfgPath)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	p, err := StartProcess("Orthanc", url, filepath.Join(dir, "stdout.log"), cmd, log)
	if err != nil {
		return nil, err
	}
	if err := c.WaitReady(ctx, url+"/system", time.Minute, p.exited); err != nil {
		p.Stop(5 * time.Second)
		return nil, fmt.Errorf("start Orthanc: %w\n%s", err, p.Tail())
	}
	if opt.DICOMAET != "" {
		p.DICOMPort = dicomPort
	}
	return p, nil
}

// ErrNoSpace is reported by CheckSpace.
var ErrNoSpace = errors.New("not enough free disk space")

// CheckSpace reports ErrNoSpace unless dir's file system has need bytes
// free.
func CheckSpace(dir string, need int64) (free int64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	free = int64(st.Bavail) * int64(st.Bsize)
	if free < need {
		return free, fmt.Errorf("%w in %s: %.1f GB free, %.1f GB needed", ErrNoSpace, dir, float64(free)/1e9, float64(need)/1e9)
	}
	return free, nil
}
