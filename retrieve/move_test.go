package retrieve

import (
	"testing"
	"time"

	"github.com/priorflow/priorflow/dimse"
)

func dimseSource(calling, called string) *source {
	return &source{Source: Source{Name: called, DIMSE: &dimse.Client{Config: dimse.Config{CallingAE: calling, CalledAE: called}}}}
}

// An object goes to the C-MOVE it names, from the peer that was asked,
// and to none other.
func TestMoves_Candidates(t *testing.T) {
	var ms moves
	pacs := dimseSource("PRIORFLOW", "PACS")
	a := ms.add(pacs, "1.2.3", newTaker(nil, nil, time.Second))
	b := ms.add(pacs, "1.2.4", newTaker(nil, nil, time.Second))
	other := ms.add(dimseSource("PRIORFLOW", "OTHER"), "1.2.5", newTaker(nil, nil, time.Second))
	if a.id == b.id || a.id == 0 || b.id == 0 || other.id == 0 {
		t.Fatalf("message IDs %d %d %d, want distinct and not 0", a.id, b.id, other.id)
	}
	for _, tc := range []struct {
		name string
		req  dimse.StoreRequest
		want []*move
	}{
		{"named", dimse.StoreRequest{CallingAE: "PACS", MoveOriginatorAE: "PRIORFLOW", MoveOriginatorMessageID: b.id}, []*move{b}},
		{"named, from another peer", dimse.StoreRequest{CallingAE: "OTHER", MoveOriginatorAE: "PRIORFLOW", MoveOriginatorMessageID: b.id}, nil},
		{"named by another originator", dimse.StoreRequest{CallingAE: "PACS", MoveOriginatorAE: "VIEWER", MoveOriginatorMessageID: b.id}, nil},
		{"named, not in progress", dimse.StoreRequest{CallingAE: "PACS", MoveOriginatorAE: "PRIORFLOW", MoveOriginatorMessageID: b.id + 100}, nil},
		{"unnamed", dimse.StoreRequest{CallingAE: "PACS"}, []*move{a, b}},
		{"unnamed, unknown peer", dimse.StoreRequest{CallingAE: "MODALITY"}, nil},
	} {
		got := ms.candidates(&tc.req)
		if len(got) != len(tc.want) {
			t.Errorf("%s: %d candidates, want %d", tc.name, len(got), len(tc.want))
			continue
		}
		for _, w := range tc.want {
			found := false
			for _, g := range got {
				found = found || g == w
			}
			if !found {
				t.Errorf("%s: move %d not a candidate", tc.name, w.id)
			}
		}
	}
	ms.remove(b)
	if got := ms.candidates(&dimse.StoreRequest{CallingAE: "PACS", MoveOriginatorAE: "PRIORFLOW", MoveOriginatorMessageID: b.id}); len(got) != 0 {
		t.Errorf("an ended C-MOVE is still a candidate")
	}
	if status, err := b.t.take(&dimse.StoreRequest{SOPInstanceUID: "1.2.4.1"}, nil); status != dimse.StatusNotAuthorized || err != nil {
		t.Errorf("take after the end = 0x%04X, %v; want refused", status, err)
	}
}

// A source that sends under another AE title than it answers with.
func TestMoves_StoreAETitle(t *testing.T) {
	var ms moves
	src := dimseSource("PRIORFLOW", "PACS")
	src.StoreAETitle = "PACS_SCU"
	m := ms.add(src, "1.2.3", newTaker(nil, nil, time.Second))
	if got := ms.candidates(&dimse.StoreRequest{CallingAE: "PACS_SCU", MoveOriginatorAE: "PRIORFLOW", MoveOriginatorMessageID: m.id}); len(got) != 1 {
		t.Errorf("from PACS_SCU: %d candidates, want the C-MOVE", len(got))
	}
	if got := ms.candidates(&dimse.StoreRequest{CallingAE: "PACS", MoveOriginatorAE: "PRIORFLOW", MoveOriginatorMessageID: m.id}); len(got) != 0 {
		t.Errorf("from PACS: %d candidates, want none", len(got))
	}
}

// Message IDs stay unique among the C-MOVEs in progress as the counter
// wraps around.
func TestMoves_IDsWrapAround(t *testing.T) {
	var ms moves
	src := dimseSource("PRIORFLOW", "PACS")
	live := map[uint16]*move{}
	for range 200 {
		m := ms.add(src, "1.2.3", newTaker(nil, nil, time.Second))
		live[m.id] = m
	}
	for i := range 70000 {
		m := ms.add(src, "1.2.3", newTaker(nil, nil, time.Second))
		if m.id == 0 || live[m.id] != nil {
			t.Fatalf("add %d: message ID %d in use or 0", i, m.id)
		}
		ms.remove(m)
	}
}

func TestTaker_Busy(t *testing.T) {
	tk := newTaker(nil, nil, 50*time.Millisecond)
	if tk.busy() {
		t.Error("busy with nothing received")
	}
	tk.begin("1.2.3")
	time.Sleep(80 * time.Millisecond)
	if !tk.busy() {
		t.Error("not busy while an object is being taken")
	}
	tk.end()
	if !tk.busy() || !tk.received("1.2.3") {
		t.Error("not busy right after an object")
	}
}
