package dimse_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive/dicomheader"
	"github.com/priorflow/priorflow/archive/dicomtest"
	"github.com/priorflow/priorflow/dimse"
	"github.com/priorflow/priorflow/internal/orthanctest"
	"github.com/priorflow/priorflow/internal/tlsfiles"
	"github.com/priorflow/priorflow/internal/tlstest"
)

// storage is what a Server took: each object and the request that
// brought it, by SOP Instance UID.
type storage struct {
	received
	reqs map[string]dimse.StoreRequest
	// hold, when set, is called before each object is taken.
	hold func()
}

func newStorage() *storage {
	return &storage{received: received{objs: map[string]*dicomheader.Header{}, raw: map[string][]byte{}},
		reqs: map[string]dimse.StoreRequest{}}
}

func (s *storage) store(req *dimse.StoreRequest) (uint16, error) {
	if s.hold != nil {
		s.hold()
	}
	s.mu.Lock()
	s.reqs[req.SOPInstanceUID] = *req
	s.mu.Unlock()
	return s.received.store(req)
}

// serve runs srv on a loopback port until the test ends and returns the
// port.
func serve(t *testing.T, srv *dimse.Server) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if srv.Logger == nil {
		srv.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().(*net.TCPAddr).Port
}

func clientOf(port int, called string) *dimse.Client {
	return &dimse.Client{Addr: fmt.Sprintf("127.0.0.1:%d", port),
		Config: dimse.Config{CallingAE: "SENDER", CalledAE: called, IdleTimeout: 10 * time.Second}}
}

// DCMTK's storescu sends the real files, each in its own syntax where it
// can, and every object arrives whole.
func TestServer_StoreSCU(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("storescu")
	if err != nil {
		t.Fatal("storescu is not installed: run make deps (apt-get install -y dcmtk)")
	}
	got := newStorage()
	port := serve(t, &dimse.Server{AETitle: "PRIORFLOW", Store: got.store})
	want := map[string]*dicomtest.Instance{}
	var files []string
	for _, f := range dicomtest.Files {
		st := dicomtest.NewStudy(t, dicomtest.WithTemplate(f), dicomtest.WithPatient("DIMSE-SCP", "HOSP-A", "STORE^ME"))
		files = append(files, st.WriteFiles(t)...)
		for _, in := range st.Instances() {
			want[in.SOPInstanceUID] = in
		}
	}
	args := append([]string{"-aet", "SENDER", "-aec", "PRIORFLOW", "127.0.0.1", fmt.Sprint(port)}, files...)
	if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	if len(got.objs) != len(want) {
		t.Fatalf("took %d objects, want %d", len(got.objs), len(want))
	}
	for sop, in := range want {
		h, req := got.objs[sop], got.reqs[sop]
		if h == nil {
			t.Errorf("instance %s not taken", sop)
			continue
		}
		if h.StudyInstanceUID != in.StudyInstanceUID || h.SOPClassUID != in.SOPClassUID || h.PatientID != "DIMSE-SCP" {
			t.Errorf("instance %s: study %s class %s patient %s", sop, h.StudyInstanceUID, h.SOPClassUID, h.PatientID)
		}
		if req.CallingAE != "SENDER" || req.MoveOriginatorAE != "" || req.SOPClassUID != in.SOPClassUID {
			t.Errorf("instance %s: request %+v, want from SENDER, no move originator", sop, req)
		}
		if g, w := dicomtest.PixelData(t, got.raw[sop]), dicomtest.PixelData(t, in.Bytes); !bytes.Equal(g, w) {
			t.Errorf("instance %s: pixel data of %d bytes differs from the %d sent", sop, len(g), len(w))
		}
	}
}

func TestServer_Associations(t *testing.T) {
	t.Parallel()
	port := serve(t, &dimse.Server{AETitle: "PRIORFLOW", Store: newStorage().store})
	ctx := context.Background()
	if err := clientOf(port, "PRIORFLOW").Echo(ctx); err != nil {
		t.Fatalf("Echo: %v", err)
	}
	var rj *dimse.RejectedError
	err := clientOf(port, "OTHER").Echo(ctx)
	if !errors.As(err, &rj) || !rj.Permanent || rj.Source != 1 || rj.Reason != 7 {
		t.Errorf("Echo called OTHER: %v, want a permanent rejection: called AE title not recognized", err)
	}
	// A Storage SCP answers no query.
	q := dimse.Identifier{{Tag: tag.QueryRetrieveLevel, VR: "CS", Value: "STUDY"}, {Tag: tag.StudyInstanceUID, VR: "UI"}}
	err = clientOf(port, "PRIORFLOW").Find(ctx, dimse.StudyRootFind, q, func(dicom.Dataset) error { return nil })
	if !errors.Is(err, dimse.ErrNoContext) {
		t.Errorf("Find: %v, want %v", err, dimse.ErrNoContext)
	}

	// One association at a time: the next is turned away for now.
	c := clientOf(serve(t, &dimse.Server{AETitle: "PRIORFLOW", Store: newStorage().store, MaxAssociations: 1}), "PRIORFLOW")
	a, err := dimse.Associate(ctx, c.Addr, c.Config, []dimse.PresentationContext{{ID: 1, AbstractSyntax: dimse.Verification,
		TransferSyntaxes: []string{dimse.ImplicitVRLittleEndian}}})
	if err != nil {
		t.Fatalf("Associate: %v", err)
	}
	err = c.Echo(ctx)
	if !errors.As(err, &rj) || rj.Permanent || rj.Source != 3 || rj.Reason != 2 {
		t.Errorf("Echo beyond the limit: %v, want a transient rejection: local limit exceeded", err)
	}
	if err := a.Echo(); err != nil {
		t.Errorf("Echo on the open association: %v", err)
	}
	if err := a.Release(); err != nil {
		t.Errorf("Release: %v", err)
	}
	// The slot is freed once the server has seen the release through.
	deadline := time.Now().Add(5 * time.Second)
	for err = c.Echo(ctx); err != nil && time.Now().Before(deadline); err = c.Echo(ctx) {
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Errorf("Echo after the release: %v", err)
	}
}

// A TCP probe (connect, close) is no warning; a wrong called AE title is.
func TestServer_ProbesAreQuiet(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	var mu sync.Mutex
	port := serve(t, &dimse.Server{AETitle: "PRIORFLOW", Store: newStorage().store,
		Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	_ = clientOf(port, "OTHER").Echo(context.Background())
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		out := logs.String()
		mu.Unlock()
		if strings.Contains(out, "called AE title not recognized") || time.Now().After(deadline) {
			if n := strings.Count(out, "association not established"); n != 1 {
				t.Errorf("%d warnings, want only the wrong AE title's:\n%s", n, out)
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Stopping the server aborts what is open and returns.
func TestServer_Stop(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	srv := &dimse.Server{AETitle: "PRIORFLOW", Store: newStorage().store, Logger: slog.New(slog.DiscardHandler)}
	go func() { done <- srv.Serve(ctx, ln) }()
	c := clientOf(ln.Addr().(*net.TCPAddr).Port, "PRIORFLOW")
	a, err := dimse.Associate(context.Background(), c.Addr, c.Config, []dimse.PresentationContext{{ID: 1,
		AbstractSyntax: dimse.Verification, TransferSyntaxes: []string{dimse.ImplicitVRLittleEndian}}})
	if err != nil {
		t.Fatalf("Associate: %v", err)
	}
	defer a.Abort()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	if err := a.Echo(); err == nil {
		t.Error("Echo on an association of a stopped server succeeded")
	}
	if err := c.Echo(context.Background()); err == nil {
		t.Error("Echo to a stopped server succeeded")
	}
}

// slowStore holds each object for d.
func slowStore(s *storage, d time.Duration) {
	s.hold = func() { time.Sleep(d) }
}

// busyWhile reports a server's store in progress or ended within idle: a
// C-MOVE's objects still on their way.
type busyWhile struct {
	mu   sync.Mutex
	n    int
	last time.Time
	idle time.Duration
}

func (b *busyWhile) wrap(store dimse.StoreFunc) dimse.StoreFunc {
	return func(req *dimse.StoreRequest) (uint16, error) {
		b.mu.Lock()
		b.n++
		b.mu.Unlock()
		defer func() {
			b.mu.Lock()
			b.n--
			b.last = time.Now()
			b.mu.Unlock()
		}()
		return store(req)
	}
}

func (b *busyWhile) busy() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n > 0 || time.Since(b.last) < b.idle
}

// moveFixture is an Orthanc holding a study, pointed at a Storage SCP of
// this test for its C-MOVEs.
func moveFixture(t *testing.T, got *storage, idle time.Duration) (*dimse.Client, *dicomtest.Study, *busyWhile) {
	t.Helper()
	o, c := peer(t)
	c.Config.IdleTimeout = idle
	b := &busyWhile{idle: idle}
	port := serve(t, &dimse.Server{AETitle: orthanctest.SCUAE, Store: b.wrap(got.store)})
	o.MoveTo(t, orthanctest.SCUAE, port)
	st := dicomtest.NewStudy(t, dicomtest.WithTemplate(dicomtest.FileMR), dicomtest.WithSeries(2), dicomtest.WithInstancesPerSeries(2),
		dicomtest.WithPatient("DIMSE-MOVE", "HOSP-A", "MOVE^ME"))
	o.UploadStudy(t, st)
	return c, st, b
}

func studyQuery(st *dicomtest.Study) dimse.Identifier {
	return dimse.Identifier{{Tag: tag.QueryRetrieveLevel, VR: "CS", Value: "STUDY"},
		{Tag: tag.StudyInstanceUID, VR: "UI", Value: st.StudyInstanceUID}}
}

// Orthanc sends a C-MOVE's objects to the server, each naming the C-MOVE.
func TestClient_Move(t *testing.T) {
	t.Parallel()
	got := newStorage()
	c, st, _ := moveFixture(t, got, 30*time.Second)
	res, err := c.Move(context.Background(), dimse.StudyRootMove, studyQuery(st), orthanctest.SCUAE, 4242, nil)
	if err != nil {
		t.Fatalf("Move: %v", err)
	}
	if res.Status != dimse.StatusSuccess || res.Completed != 4 || res.Failed != 0 {
		t.Errorf("Move result = %+v, want success with 4 completed", res)
	}
	if len(got.objs) != 4 {
		t.Fatalf("took %d objects, want 4", len(got.objs))
	}
	for _, in := range st.Instances() {
		req, ok := got.reqs[in.SOPInstanceUID]
		if !ok {
			t.Errorf("instance %s not taken", in.SOPInstanceUID)
			continue
		}
		if req.CallingAE != c.Config.CalledAE || req.MoveOriginatorAE != orthanctest.SCUAE || req.MoveOriginatorMessageID != 4242 {
			t.Errorf("instance %s came from %s for the C-MOVE %s/%d, want from %s for %s/4242", in.SOPInstanceUID, req.CallingAE,
				req.MoveOriginatorAE, req.MoveOriginatorMessageID, c.Config.CalledAE, orthanctest.SCUAE)
		}
		if g, w := dicomtest.PixelData(t, got.raw[in.SOPInstanceUID]), dicomtest.PixelData(t, in.Bytes); !bytes.Equal(g, w) {
			t.Errorf("instance %s: pixel data differs", in.SOPInstanceUID)
		}
	}
}

func TestClient_Move_UnknownDestination(t *testing.T) {
	t.Parallel()
	got := newStorage()
	c, st, _ := moveFixture(t, got, 30*time.Second)
	_, err := c.Move(context.Background(), dimse.StudyRootMove, studyQuery(st), "NOWHERE", 7, nil)
	// PS3.4 has 0xA801 (move destination unknown); Orthanc 1.10 says
	// 0xC000 (unable to process). Either is a failure that will recur.
	var se *dimse.StatusError
	if !errors.As(err, &se) || !dimse.Permanent(err) {
		t.Errorf("Move to NOWHERE: %v, want a failure status, permanent", err)
	}
	if len(got.objs) != 0 {
		t.Errorf("took %d objects", len(got.objs))
	}
}

// While the objects take longer to store than the idle timeout, the
// C-MOVE's association is silent: waited through as long as they arrive.
func TestClient_Move_SilentWhileStoring(t *testing.T) {
	t.Parallel()
	got := newStorage()
	c, st, b := moveFixture(t, got, time.Second)
	slowStore(got, 1500*time.Millisecond)
	res, err := c.Move(context.Background(), dimse.StudyRootMove, studyQuery(st), orthanctest.SCUAE, 1, b.busy)
	if err != nil || res.Completed != 4 {
		t.Fatalf("Move with busy: %+v, %v; want 4 completed", res, err)
	}

	// Without busy, the silence ends it.
	again := newStorage()
	slowStore(again, 1500*time.Millisecond)
	c2, st2, _ := moveFixture(t, again, time.Second)
	_, err = c2.Move(context.Background(), dimse.StudyRootMove, studyQuery(st2), orthanctest.SCUAE, 2, nil)
	if !errors.Is(err, dimse.ErrTimeout) {
		t.Errorf("Move without busy: %v, want %v", err, dimse.ErrTimeout)
	}
}

// DICOM TLS both ways: the C-MOVE to Orthanc's TLS port, and Orthanc's
// C-STOREs to a TLS server that requires its client certificate.
func TestServer_TLS_MoveFromOrthanc(t *testing.T) {
	t.Parallel()
	pacsCA, ourCA := tlstest.NewCA(t, "pacs-ca"), tlstest.NewCA(t, "priorflow-ca")
	// Orthanc accepts and opens TLS connections with one certificate.
	_, pacsCert, pacsKey := pacsCA.IssueNode(t, "orthanc")
	_, cliCert, cliKey := ourCA.Issue(t, "priorflow", false)
	_, scpCert, scpKey := ourCA.Issue(t, "priorflow-scp", true)
	o := orthanctest.StartWith(t, orthanctest.Options{DICOMTLS: &orthanctest.DICOMTLS{CertFile: pacsCert, KeyFile: pacsKey,
		TrustedFile: ourCA.File, RequireClientCertificate: true}})
	serverTLS, err := tlsfiles.Server(scpCert, scpKey, pacsCA.File)
	if err != nil {
		t.Fatal(err)
	}
	clientTLS, err := tlsfiles.Client(cliCert, cliKey, pacsCA.File)
	if err != nil {
		t.Fatal(err)
	}
	got := newStorage()
	port := serve(t, &dimse.Server{AETitle: "PF-TLS", Store: got.store, TLS: serverTLS})
	o.MoveToTLS(t, "PF-TLS", port)
	st := dicomtest.NewStudy(t, dicomtest.WithTemplate(dicomtest.FileMR), dicomtest.WithInstancesPerSeries(3))
	o.UploadStudy(t, st)
	c := &dimse.Client{Addr: fmt.Sprintf("127.0.0.1:%d", o.Port), Config: dimse.Config{CallingAE: orthanctest.SCUAE, CalledAE: o.AET,
		IdleTimeout: 30 * time.Second, Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return (&tls.Dialer{Config: clientTLS}).DialContext(ctx, network, addr)
		}}}
	res, err := c.Move(context.Background(), dimse.StudyRootMove, studyQuery(st), "PF-TLS", 11, nil)
	if err != nil || res.Completed != 3 || len(got.objs) != 3 {
		t.Fatalf("Move over TLS: %+v, %v, %d objects; want 3", res, err, len(got.objs))
	}

	// A server whose certificate Orthanc does not trust receives nothing.
	_, strangerCert, strangerKey := tlstest.NewCA(t, "other-ca").Issue(t, "stranger-scp", true)
	strangerTLS, err := tlsfiles.Server(strangerCert, strangerKey, pacsCA.File)
	if err != nil {
		t.Fatal(err)
	}
	none := newStorage()
	o.MoveToTLS(t, "PF-STRANGER", serve(t, &dimse.Server{AETitle: "PF-STRANGER", Store: none.store, TLS: strangerTLS}))
	if _, err := c.Move(context.Background(), dimse.StudyRootMove, studyQuery(st), "PF-STRANGER", 12, nil); err == nil || len(none.objs) != 0 {
		t.Errorf("Move to an SCP of an untrusted CA: %v, %d objects; want a failure and none", err, len(none.objs))
	}
}
