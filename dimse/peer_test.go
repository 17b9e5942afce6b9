package dimse

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
	dicomuid "github.com/suyashkumar/dicom/pkg/uid"
)

// The faults of a peer that Orthanc cannot be made to commit are played
// by a scripted peer: the bytes it sends after reading the client's
// A-ASSOCIATE-RQ.

// scripted returns a client of a loopback peer that, on each connection,
// sends script, then closes its side for writing and reads what comes until
// the client closes: a peer that said all it had to say.
func scripted(t testing.TB, script []byte, idle time.Duration) *Client {
	return peerOn(t, script, true, idle)
}

// silentAfter is scripted but keeps its side open after script.
func silentAfter(t testing.TB, script []byte) *Client {
	return peerOn(t, script, false, time.Minute)
}

func peerOn(t testing.TB, script []byte, closeWrite bool, idle time.Duration) *Client {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				go func() { _, _ = conn.Write(script); _ = closeSend(conn, closeWrite) }()
				_, _ = io.Copy(io.Discard, conn)
			}()
		}
	}()
	return &Client{Addr: ln.Addr().String(), Config: Config{CallingAE: "PRIORFLOW", CalledAE: "PEER", IdleTimeout: idle}}
}

func closeSend(conn net.Conn, yes bool) error {
	if !yes {
		return nil
	}
	return conn.(*net.TCPConn).CloseWrite()
}

type acContext struct {
	id     byte
	result byte
	ts     string
}

// acPDU is an A-ASSOCIATE-AC accepting contexts with a maximum length.
func acPDU(maxLength uint32, pcs ...acContext) []byte {
	var b bytes.Buffer
	b.Write([]byte{0x00, 0x01, 0x00, 0x00})
	b.WriteString(aeField("PEER"))
	b.WriteString(aeField("PRIORFLOW"))
	b.Write(make([]byte, 32))
	writeItem(&b, itemApplicationContext, []byte(ApplicationContext))
	for _, pc := range pcs {
		var sub bytes.Buffer
		sub.Write([]byte{pc.id, 0, pc.result, 0})
		writeItem(&sub, itemTransferSyntax, []byte(pc.ts))
		writeItem(&b, itemPresentationAC, sub.Bytes())
	}
	var ui bytes.Buffer
	writeItem(&ui, itemMaxLength, binary.BigEndian.AppendUint32(nil, maxLength))
	writeItem(&b, itemUserInformation, ui.Bytes())
	return pduBytes(pduAssociateAC, b.Bytes())
}

func pduBytes(typ byte, body []byte) []byte {
	var b bytes.Buffer
	_ = writePDU(&b, typ, body)
	return b.Bytes()
}

// message is a DIMSE message as P-DATA-TF PDUs on context 1: its command,
// then its data set when not nil.
func messagePDUs(cmd *Command, data []byte) []byte {
	return messagePDUsOn(1, cmd, data)
}

func messagePDUsOn(pc byte, cmd *Command, data []byte) []byte {
	cmd.HasDataSet = data != nil
	out := pduBytes(pduPData, pdvBytes(pc, 3, cmd.marshal()))
	if data != nil {
		out = append(out, pduBytes(pduPData, pdvBytes(pc, 2, data))...)
	}
	return out
}

func pdvBytes(ctx, mch byte, data []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(data)+2))
	b = append(b, ctx, mch)
	return append(b, data...)
}

var studyIdentifier = Identifier{
	{Tag: tag.QueryRetrieveLevel, VR: "CS", Value: "STUDY"},
	{Tag: tag.PatientID, VR: "LO", Value: "P1"},
	{Tag: tag.StudyInstanceUID, VR: "UI", Value: "1.2.3.4"},
}

func mustEncode(t testing.TB, id Identifier, ts string) []byte {
	t.Helper()
	b, err := id.encode(ts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// findScript is a peer's answer to a C-FIND: one match, then success.
func findScript(t testing.TB, ts string) []byte {
	s := acPDU(16384, acContext{id: 1, ts: ts})
	s = append(s, messagePDUs(&Command{Field: CFindRSP, AffectedSOPClassUID: StudyRootFind, MessageIDBeingRespondedTo: 1,
		Status: StatusPending}, mustEncode(t, studyIdentifier, ts))...)
	s = append(s, messagePDUs(&Command{Field: CFindRSP, AffectedSOPClassUID: StudyRootFind, MessageIDBeingRespondedTo: 1,
		Status: StatusSuccess}, nil)...)
	return append(s, pduBytes(pduReleaseRP, make([]byte, 4))...)
}

func find(c *Client) ([]dicom.Dataset, error) {
	var got []dicom.Dataset
	err := c.Find(context.Background(), StudyRootFind, studyIdentifier, func(ds dicom.Dataset) error {
		got = append(got, ds)
		return nil
	})
	return got, err
}

func TestFind_BothLittleEndianSyntaxes(t *testing.T) {
	for _, ts := range []string{ExplicitVRLittleEndian, ImplicitVRLittleEndian} {
		got, err := find(scripted(t, findScript(t, ts), time.Minute))
		if err != nil {
			t.Fatalf("%s: Find: %v", ts, err)
		}
		if len(got) != 1 {
			t.Fatalf("%s: %d matches, want 1", ts, len(got))
		}
		e, err := got[0].FindElementByTag(tag.StudyInstanceUID)
		if err != nil {
			t.Fatalf("%s: no StudyInstanceUID", ts)
		}
		if v := e.Value.GetValue().([]string); len(v) != 1 || v[0] != "1.2.3.4" {
			t.Errorf("%s: StudyInstanceUID = %q, want 1.2.3.4", ts, v)
		}
	}
}

// A command split into several PDVs and PDUs, and a data set in fragments
// of one byte, read as one message.
func TestFind_Fragments(t *testing.T) {
	ts := ExplicitVRLittleEndian
	s := acPDU(16384, acContext{id: 1, ts: ts})
	cmd := (&Command{Field: CFindRSP, MessageIDBeingRespondedTo: 1, Status: StatusPending, HasDataSet: true}).marshal()
	s = append(s, pduBytes(pduPData, append(pdvBytes(1, 1, cmd[:5]), pdvBytes(1, 1, cmd[5:9])...))...)
	s = append(s, pduBytes(pduPData, pdvBytes(1, 3, cmd[9:]))...)
	data := mustEncode(t, studyIdentifier, ts)
	for i := range data {
		mch := byte(0)
		if i == len(data)-1 {
			mch = 2
		}
		s = append(s, pduBytes(pduPData, pdvBytes(1, mch, data[i:i+1]))...)
	}
	s = append(s, messagePDUs(&Command{Field: CFindRSP, MessageIDBeingRespondedTo: 1, Status: StatusSuccess}, nil)...)
	got, err := find(scripted(t, s, time.Minute))
	if err != nil || len(got) != 1 {
		t.Fatalf("Find = %d matches, %v; want 1, nil", len(got), err)
	}
}

func TestFind_PeerFaults(t *testing.T) {
	ac := acPDU(16384, acContext{id: 1, ts: ExplicitVRLittleEndian})
	rsp := func(c *Command, data []byte) []byte { return append(append([]byte{}, ac...), messagePDUs(c, data)...) }
	huge := make([]byte, 8)
	huge[0] = pduPData
	binary.BigEndian.PutUint32(huge[2:], 1<<30)
	for _, c := range []struct {
		name   string
		script []byte
		check  func(error) bool
	}{
		{"rejected, transient", pduBytes(pduAssociateRJ, []byte{0, 2, 3, 1}), func(err error) bool {
			var rj *RejectedError
			return errors.As(err, &rj) && !rj.Permanent
		}},
		{"no context accepted", acPDU(0, acContext{id: 1, result: 3}), func(err error) bool { return errors.Is(err, ErrNoContext) }},
		{"closed after the acceptance", ac, func(err error) bool { return errors.Is(err, io.ErrUnexpectedEOF) }},
		{"aborted", append(append([]byte{}, ac...), pduBytes(pduAbort, []byte{0, 0, 2, 0})...), func(err error) bool {
			var ab *AbortedError
			return errors.As(err, &ab)
		}},
		{"PDU longer than announced", append(append([]byte{}, ac...), huge...), func(err error) bool { return errors.Is(err, ErrProtocol) }},
		{"response to another message", rsp(&Command{Field: CFindRSP, MessageIDBeingRespondedTo: 9, Status: StatusSuccess}, nil),
			func(err error) bool { return errors.Is(err, ErrProtocol) }},
		{"another service's response", rsp(&Command{Field: CGetRSP, MessageIDBeingRespondedTo: 1, Status: StatusSuccess}, nil),
			func(err error) bool { return errors.Is(err, ErrProtocol) }},
		{"pending without identifier", rsp(&Command{Field: CFindRSP, MessageIDBeingRespondedTo: 1, Status: StatusPending}, nil),
			func(err error) bool { return errors.Is(err, ErrProtocol) }},
		{"unreadable identifier", rsp(&Command{Field: CFindRSP, MessageIDBeingRespondedTo: 1, Status: StatusPending}, []byte{0x10, 0x00, 0x20}),
			func(err error) bool { return errors.Is(err, ErrProtocol) }},
		{"failure status", rsp(&Command{Field: CFindRSP, MessageIDBeingRespondedTo: 1, Status: 0xA900}, nil), func(err error) bool {
			var se *StatusError
			return errors.As(err, &se) && se.Status == 0xA900 && !se.Temporary()
		}},
		{"out of resources", rsp(&Command{Field: CFindRSP, MessageIDBeingRespondedTo: 1, Status: 0xA700}, nil), func(err error) bool {
			var se *StatusError
			return errors.As(err, &se) && se.Temporary()
		}},
		{"canceled", rsp(&Command{Field: CFindRSP, MessageIDBeingRespondedTo: 1, Status: StatusCancel}, nil),
			func(err error) bool { return errors.Is(err, ErrCanceled) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := find(scripted(t, c.script, time.Minute))
			if !c.check(err) {
				t.Errorf("Find = %v", err)
			}
		})
	}
}

func TestFind_SilentPeer(t *testing.T) {
	c := silentAfter(t, acPDU(16384, acContext{id: 1, ts: ExplicitVRLittleEndian}))
	c.Config.IdleTimeout = 50 * time.Millisecond
	if _, err := find(c); !errors.Is(err, ErrTimeout) {
		t.Errorf("Find from a silent peer = %v, want ErrTimeout", err)
	}
}

func TestFind_ContextCanceled(t *testing.T) {
	c := silentAfter(t, acPDU(16384, acContext{id: 1, ts: ExplicitVRLittleEndian}))
	ctx, cancel := context.WithCancelCause(context.Background())
	stop := errors.New("job stopped")
	time.AfterFunc(20*time.Millisecond, func() { cancel(stop) })
	err := c.Find(ctx, StudyRootFind, studyIdentifier, func(dicom.Dataset) error { return nil })
	if !errors.Is(err, stop) {
		t.Errorf("Find after the context ended = %v, want its cause", err)
	}
}

// getScript is a peer's answer to a C-GET: one C-STORE sub-operation on
// context 3 (the first storage class), then success.
func getScript(t testing.TB) []byte {
	s := acPDU(16384, acContext{id: 1, ts: ExplicitVRLittleEndian}, acContext{id: 3, ts: ExplicitVRLittleEndian})
	obj := mustEncode(t, Identifier{{Tag: tag.SOPInstanceUID, VR: "UI", Value: "1.2.3.4.5"}}, ExplicitVRLittleEndian)
	store := (&Command{Field: CStoreRQ, AffectedSOPClassUID: StorageSOPClasses[0], MessageID: 7, HasDataSet: true,
		AffectedSOPInstanceUID: "1.2.3.4.5"}).marshal()
	s = append(s, pduBytes(pduPData, append(pdvBytes(3, 3, store), pdvBytes(3, 2, obj)...))...)
	s = append(s, messagePDUs(&Command{Field: CGetRSP, MessageIDBeingRespondedTo: 1, Status: StatusSuccess}, nil)...)
	return append(s, pduBytes(pduReleaseRP, make([]byte, 4))...)
}

func TestGet_StoreSubOperation(t *testing.T) {
	var got []byte
	var req StoreRequest
	res, err := scripted(t, getScript(t), time.Minute).Get(context.Background(), StudyRootGet, studyIdentifier,
		func(r *StoreRequest) (uint16, error) {
			req = *r
			var err error
			got, err = io.ReadAll(r.Object)
			return StatusSuccess, err
		})
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if res.Status != StatusSuccess {
		t.Errorf("status 0x%04X", res.Status)
	}
	if req.SOPInstanceUID != "1.2.3.4.5" || req.SOPClassUID != StorageSOPClasses[0] || req.TransferSyntax != ExplicitVRLittleEndian {
		t.Errorf("store request = %+v", req)
	}
	ds, err := dicom.Parse(bytes.NewReader(got), int64(len(got)), nil)
	if err != nil {
		t.Fatalf("the object is not Part 10: %v", err)
	}
	for tg, want := range map[tag.Tag]string{tag.MediaStorageSOPInstanceUID: "1.2.3.4.5", tag.SourceApplicationEntityTitle: "PEER",
		tag.TransferSyntaxUID: ExplicitVRLittleEndian, tag.SOPInstanceUID: "1.2.3.4.5"} {
		e, err := ds.FindElementByTag(tg)
		if err != nil {
			t.Errorf("%s missing", tg)
			continue
		}
		if v, _ := e.Value.GetValue().([]string); len(v) != 1 || v[0] != want {
			t.Errorf("%s = %q, want %q", tg, v, want)
		}
	}
}

func TestGet_ContextsWithinLimit(t *testing.T) {
	pcs := getContexts(StudyRootGet)
	if len(pcs) > 128 {
		t.Fatalf("%d presentation contexts, at most 128", len(pcs))
	}
	seen := map[byte]bool{}
	for _, pc := range pcs {
		if pc.ID%2 == 0 || seen[pc.ID] {
			t.Fatalf("context ID %d repeated or even", pc.ID)
		}
		seen[pc.ID] = true
	}
}

func TestCheckAETitle(t *testing.T) {
	for ae, ok := range map[string]bool{"PRIORFLOW": true, "A": true, "SIXTEEN_CHARS_OK": true, "SEVENTEEN_CHARS_X": false,
		"": false, "    ": false, `BACK\SLASH`: false, "TAB\tX": false, "ÄE": false} {
		if err := CheckAETitle(ae); (err == nil) != ok {
			t.Errorf("CheckAETitle(%q) = %v, want ok=%v", ae, err, ok)
		}
	}
}

// FuzzAssociation plays any byte stream as the peer of a C-FIND and of a
// C-GET: the client must end with results or an error, never panic, hang
// or read beyond its bounds.
func FuzzAssociation(f *testing.F) {
	f.Add(findScript(f, ExplicitVRLittleEndian))
	f.Add(findScript(f, ImplicitVRLittleEndian))
	f.Add(getScript(f))
	f.Add(pduBytes(pduAssociateRJ, []byte{0, 1, 1, 7}))
	f.Fuzz(func(t *testing.T, script []byte) {
		// In memory: a loopback connection per input would run out of
		// ports at the fuzzer's pace.
		c := &Client{Addr: "peer:104", Config: Config{CallingAE: "PRIORFLOW", CalledAE: "PEER",
			Dial: func(context.Context, string, string) (net.Conn, error) {
				return &scriptConn{r: bytes.NewReader(script)}, nil
			}}}
		_, _ = find(c)
		_, _ = c.Get(context.Background(), StudyRootGet, studyIdentifier, func(r *StoreRequest) (uint16, error) {
			_, err := io.Copy(io.Discard, r.Object)
			return StatusSuccess, err
		})
	})
}

func FuzzParseCommand(f *testing.F) {
	f.Add((&Command{Field: CFindRSP, MessageIDBeingRespondedTo: 1, Status: StatusPending, HasDataSet: true}).marshal())
	f.Add((&Command{Field: CStoreRQ, AffectedSOPClassUID: "1.2", MessageID: 3, AffectedSOPInstanceUID: "1.2.3"}).marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseCommand(b)
		if err != nil {
			return
		}
		// What was read writes back and reads the same.
		again, err := parseCommand(c.marshal())
		if err != nil {
			t.Fatalf("re-read: %v", err)
		}
		if again.Field != c.Field || again.HasDataSet != c.HasDataSet || again.AffectedSOPClassUID != c.AffectedSOPClassUID {
			t.Fatalf("re-read %+v, want %+v", again, c)
		}
	})
}

// scriptConn is a connection to a peer that sends a script and takes
// whatever it is sent, kept in w when set.
type scriptConn struct {
	r *bytes.Reader
	w *bytes.Buffer
}

func (c *scriptConn) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *scriptConn) Write(p []byte) (int, error) {
	if c.w != nil {
		c.w.Write(p)
	}
	return len(p), nil
}
func (c *scriptConn) Close() error                     { return nil }
func (c *scriptConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *scriptConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// Every proposed class is a storage SOP class of the standard: a typing
// slip in a UID would silently lose its objects.
func TestStorageSOPClasses_Known(t *testing.T) {
	seen := map[string]bool{}
	for _, sop := range StorageSOPClasses {
		info, err := dicomuid.Lookup(sop)
		if err != nil || !strings.Contains(info.Name, "Storage") || seen[sop] {
			t.Errorf("%s: %q, %v (or listed twice)", sop, info.Name, err)
		}
		seen[sop] = true
	}
	for sop := range compressedClasses {
		if !seen[sop] {
			t.Errorf("compressed class %s is not a listed storage class", sop)
		}
	}
}
