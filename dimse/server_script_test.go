package dimse

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/suyashkumar/dicom/pkg/tag"
)

const mrStorage = "1.2.840.10008.5.1.4.1.1.4"

// storeScript is a PACS sending one object of a C-MOVE, after an echo, on
// an association that also proposes a query and a syntax unknown here.
func storeScript(t testing.TB) []byte {
	rq := associateRQ{calledAE: "PRIORFLOW", callingAE: "PACS", maxLength: 16384, implementationUID: "1.2.3",
		contexts: []PresentationContext{
			{ID: 1, AbstractSyntax: mrStorage, TransferSyntaxes: []string{"1.2.3.4.5", ExplicitVRLittleEndian, ImplicitVRLittleEndian}},
			{ID: 3, AbstractSyntax: Verification, TransferSyntaxes: []string{ImplicitVRLittleEndian}},
			{ID: 5, AbstractSyntax: StudyRootFind, TransferSyntaxes: []string{ImplicitVRLittleEndian}},
			{ID: 7, AbstractSyntax: mrStorage, TransferSyntaxes: []string{"1.2.3.4.5"}},
		}}
	s := pduBytes(pduAssociateRQ, rq.marshal())
	s = append(s, messagePDUsOn(3, &Command{Field: CEchoRQ, AffectedSOPClassUID: Verification, MessageID: 1}, nil)...)
	s = append(s, messagePDUsOn(1, &Command{Field: CStoreRQ, AffectedSOPClassUID: mrStorage, MessageID: 2,
		AffectedSOPInstanceUID: "1.2.3.4", MoveOriginatorAE: "PRIORFLOW", MoveOriginatorMessageID: 9}, storedData(t))...)
	return append(s, pduBytes(pduReleaseRQ, make([]byte, 4))...)
}

func storedData(t testing.TB) []byte {
	return mustEncode(t, Identifier{{Tag: tag.SOPClassUID, VR: "UI", Value: mrStorage},
		{Tag: tag.SOPInstanceUID, VR: "UI", Value: "1.2.3.4"}, {Tag: tag.PatientID, VR: "LO", Value: "P1"}}, ExplicitVRLittleEndian)
}

func serveScript(script []byte, store StoreFunc) []byte {
	var out bytes.Buffer
	srv := &Server{AETitle: "PRIORFLOW", Store: store, Logger: slog.New(slog.DiscardHandler)}
	srv.serve(context.Background(), &scriptConn{r: bytes.NewReader(script), w: &out}, false)
	return out.Bytes()
}

// What a server answers, PDU by PDU: the contexts it takes, the echo, the
// store's status, the release.
func TestServer_Script(t *testing.T) {
	var got []StoreRequest
	var obj []byte
	out := serveScript(storeScript(t), func(req *StoreRequest) (uint16, error) {
		got = append(got, *req)
		var err error
		obj, err = io.ReadAll(req.Object)
		req.ErrorComment = "refused\\here\n: " + strings.Repeat("x", 80)
		return StatusNotAuthorized, err
	})
	r := bytes.NewReader(out)
	p, err := readPDU(r, 1<<20, nil)
	if err != nil || p.typ != pduAssociateAC {
		t.Fatalf("first PDU: type 0x%02X, %v; want A-ASSOCIATE-AC", p.typ, err)
	}
	ac, err := parseAssociateAC(p.body)
	if err != nil {
		t.Fatal(err)
	}
	want := map[byte]acResult{1: {0, ExplicitVRLittleEndian}, 3: {0, ImplicitVRLittleEndian}, 5: {3, ImplicitVRLittleEndian},
		7: {4, ImplicitVRLittleEndian}}
	for id, w := range want {
		if g := ac.results[id]; g.result != w.result || (w.result == 0 && g.transferSyntax != w.transferSyntax) {
			t.Errorf("context %d: result %d syntax %s, want %d %s", id, g.result, g.transferSyntax, w.result, w.transferSyntax)
		}
	}
	if ac.maxLength != DefaultMaxPDULength || ac.calledAE != "PRIORFLOW" || ac.callingAE != "PACS" {
		t.Errorf("A-ASSOCIATE-AC: max length %d, called %q, calling %q", ac.maxLength, ac.calledAE, ac.callingAE)
	}
	var cmds []*Command
	for {
		p, err := readPDU(r, 1<<20, nil)
		if err != nil {
			t.Fatalf("reading the answers: %v", err)
		}
		if p.typ != pduPData {
			if p.typ != pduReleaseRP {
				t.Errorf("last PDU type 0x%02X, want A-RELEASE-RP", p.typ)
			}
			break
		}
		vs, err := parsePData(p.body, nil)
		if err != nil || len(vs) != 1 || !vs[0].command {
			t.Fatalf("P-DATA-TF: %v", err)
		}
		c, err := parseCommand(vs[0].data)
		if err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, c)
	}
	if len(cmds) != 2 || cmds[0].Field != CEchoRSP || cmds[0].Status != StatusSuccess || cmds[1].Field != CStoreRSP ||
		cmds[1].Status != StatusNotAuthorized || cmds[1].MessageIDBeingRespondedTo != 2 || cmds[1].AffectedSOPInstanceUID != "1.2.3.4" {
		t.Errorf("answers %+v, want C-ECHO-RSP success and C-STORE-RSP 0x0124 to message 2", cmds)
	}
	// Why, as an LO value: no backslash or control character, 64 at most.
	if want := "refusedhere: " + strings.Repeat("x", 51); len(cmds) == 2 && cmds[1].ErrorComment != want {
		t.Errorf("Error Comment %q, want %q", cmds[1].ErrorComment, want)
	}
	if len(got) != 1 || got[0].CallingAE != "PACS" || got[0].MoveOriginatorAE != "PRIORFLOW" || got[0].MoveOriginatorMessageID != 9 ||
		got[0].TransferSyntax != ExplicitVRLittleEndian || got[0].SOPInstanceUID != "1.2.3.4" {
		t.Errorf("store requests %+v", got)
	}
	// A Part 10 stream: the File Meta Information, then the data set as
	// sent.
	if len(obj) < 132 || string(obj[128:132]) != "DICM" || !bytes.HasSuffix(obj, storedData(t)) ||
		!bytes.Contains(obj, []byte("PACS")) {
		t.Errorf("object of %d bytes is not the Part 10 stream of the data set from PACS", len(obj))
	}
}

func TestParseAssociateRQ_Refusals(t *testing.T) {
	good := associateRQ{calledAE: "PRIORFLOW", callingAE: "PACS", maxLength: 16384, implementationUID: "1.2.3",
		contexts: []PresentationContext{{ID: 1, AbstractSyntax: Verification, TransferSyntaxes: []string{ImplicitVRLittleEndian}}}}
	for _, tc := range []struct {
		name   string
		edit   func([]byte) []byte
		source byte
		reason byte
	}{
		{"protocol version 2", func(b []byte) []byte { b[1] = 2; return b }, 2, 2},
		{"blank calling AE", func(b []byte) []byte { copy(b[20:36], bytes.Repeat([]byte(" "), 16)); return b }, 1, 3},
		{"other application context", func(b []byte) []byte {
			return bytes.Replace(b, []byte(ApplicationContext), []byte("1.2.840.10008.3.1.1.2"), 1)
		}, 1, 2},
	} {
		_, err := parseAssociateRQ(tc.edit(good.marshal()))
		var rj *RejectedError
		if !errors.As(err, &rj) || !rj.Permanent || rj.Source != tc.source || rj.Reason != tc.reason {
			t.Errorf("%s: %v, want rejection source %d reason %d", tc.name, err, tc.source, tc.reason)
		}
	}
	if _, err := parseAssociateRQ(good.marshal()[:40]); !errors.Is(err, ErrProtocol) {
		t.Errorf("short request: %v, want %v", err, ErrProtocol)
	}
}

func FuzzServer(f *testing.F) {
	f.Add(storeScript(f))
	f.Fuzz(func(t *testing.T, script []byte) {
		serveScript(script, func(req *StoreRequest) (uint16, error) {
			_, err := io.Copy(io.Discard, req.Object)
			return StatusSuccess, err
		})
	})
}
