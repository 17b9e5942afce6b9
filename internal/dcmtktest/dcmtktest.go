// Package dcmtktest runs DCMTK's dcmqrscp (Debian's dcmtk package) per
// test, as a second real Query/Retrieve SCP beside Orthanc: a strict one,
// which checks every C-FIND identifier (--check-find) and serves C-GET from
// its own index.
package dcmtktest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// AET is the AE title dcmqrscp answers to.
const AET = "DCMQRSCP"

// QRSCP is a running dcmqrscp.
type QRSCP struct {
	Addr string // 127.0.0.1:port
	AET  string
}

// Destination is a Storage SCP dcmqrscp may send a C-MOVE's objects to.
type Destination struct {
	AET  string
	Port int // on 127.0.0.1
}

// StartQRSCP indexes files (Part 10, written to the test's folder) into a
// fresh dcmqrscp storage area and runs dcmqrscp on it until the test ends;
// its C-MOVEs may go to dests. It fails the test when DCMTK is not
// installed: make test installs it.
func StartQRSCP(tb testing.TB, files [][]byte, dests ...Destination) *QRSCP {
	tb.Helper()
	bin, err := exec.LookPath("dcmqrscp")
	if err != nil {
		tb.Fatal("dcmqrscp is not installed: run make deps (apt-get install -y dcmtk)")
	}
	dir := tb.TempDir()
	db := filepath.Join(dir, "db")
	if err := os.Mkdir(db, 0o750); err != nil {
		tb.Fatal(err)
	}
	var paths []string
	for i, b := range files {
		p := filepath.Join(db, fmt.Sprintf("in%05d.dcm", i))
		if err := os.WriteFile(p, b, 0o600); err != nil {
			tb.Fatal(err)
		}
		paths = append(paths, p)
	}
	if len(paths) > 0 {
		if out, err := exec.Command("dcmqridx", append([]string{db}, paths...)...).CombinedOutput(); err != nil {
			tb.Fatalf("dcmqridx: %v\n%s", err, out)
		}
	}
	for attempt := 0; ; attempt++ {
		port := freePort(tb)
		cfg := filepath.Join(dir, "dcmqrscp.cfg")
		// Any calling AE title from any host; the storage area is
		// read-write so that dcmqrscp accepts what it is sent, too.
		var hosts strings.Builder
		for i, d := range dests {
			fmt.Fprintf(&hosts, "dest%d = (%s, 127.0.0.1, %d)\n", i, d.AET, d.Port)
		}
		conf := fmt.Sprintf("NetworkTCPPort = %d\nMaxPDUSize = 16384\nMaxAssociations = 16\n"+
			"HostTable BEGIN\n%sHostTable END\nVendorTable BEGIN\nVendorTable END\n"+
			"AETable BEGIN\n%s %s RW (200, 1024mb) ANY\nAETable END\n", port, hosts.String(), AET, db)
		if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
			tb.Fatal(err)
		}
		logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("dcmqrscp-%d.log", attempt)))
		if err != nil {
			tb.Fatal(err)
		}
		// Not --single-process: dcmqrscp 3.6.7 (Debian 12) then dies of a
		// segmentation fault once the first association is released.
		cmd := exec.Command(bin, "-c", cfg, "--check-find", "-d")
		cmd.Stdout, cmd.Stderr = logf, logf
		tb.Cleanup(func() {
			if tb.Failed() {
				b, _ := os.ReadFile(logf.Name())
				tb.Logf("dcmqrscp's log:\n%s", tail(b, 4000))
			}
		})
		if err := cmd.Start(); err != nil {
			tb.Fatalf("start dcmqrscp: %v", err)
		}
		exited := make(chan struct{})
		go func() {
			fmt.Fprintf(logf, "dcmqrscp ended: %v\n", cmd.Wait())
			close(exited)
		}()
		tb.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-exited
			logf.Close()
		})
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if waitListening(addr, exited) {
			return &QRSCP{Addr: addr, AET: AET}
		}
		// The port was taken between freePort and dcmqrscp's bind.
		if attempt == 3 {
			b, _ := os.ReadFile(logf.Name())
			tb.Fatalf("dcmqrscp did not start:\n%s", b)
		}
	}
}

// waitListening waits until addr accepts a connection, false when the
// process exits first.
func waitListening(addr string, exited <-chan struct{}) bool {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return true
		}
		select {
		case <-exited:
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
	return false
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
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
