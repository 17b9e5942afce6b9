package service_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/priorflow/priorflow/fhir"
	fhirpg "github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/subscriptions"
	"github.com/priorflow/priorflow/subscriptions/service"
)

func TestTopic_StudyAvailable_FiltersAndPayloads(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, recvOpts{})
	e := newEnv(t, service.Config{AllowedEndpoints: []string{rcv.URL + "/"}, Delivery: fastDelivery()})
	idOnly := e.mustCreate(topicSub("rest-hook", rcv.URL+"/id", subscriptions.TopicStudyAvailable, "ImagingStudy?patient=Patient/p1&modality=CT", "id-only"))
	full := e.mustCreate(topicSub("rest-hook", rcv.URL+"/full", subscriptions.TopicStudyAvailable, "ImagingStudy?patient=p1", "full-resource"))
	empty := e.mustCreate(topicSub("rest-hook", rcv.URL+"/empty", subscriptions.TopicStudyAvailable, "", "empty"))

	ct := e.study("p1", "CT")
	mr := e.study("p1", "MR")
	for i, ev := range []*subscriptions.StudyAvailable{
		{EventID: "ev-1", Study: "ImagingStudy/" + ct.ID, Patient: "Patient/p1", ModalitiesInStudy: []string{"CT", "SR"}},
		{EventID: "ev-2", Study: "ImagingStudy/" + mr.ID, Patient: "Patient/p1", ModalitiesInStudy: []string{"MR"}},
		{EventID: "ev-3", Study: "ImagingStudy/other", Patient: "Patient/p2", ModalitiesInStudy: []string{"CT"}},
		{EventID: "ev-1", Study: "ImagingStudy/" + ct.ID, Patient: "Patient/p1", ModalitiesInStudy: []string{"CT", "SR"}}, // resent
	} {
		ev.TriggerEventID = "care-" + string(rune('a'+i))
		e.publishAvailable(ev)
	}
	waitFor(t, 10*time.Second, "notifications", func() bool {
		return len(e.receivedBy(rcv, idOnly.ID)) >= 1 && len(e.receivedBy(rcv, full.ID)) >= 2 && len(e.receivedBy(rcv, empty.ID)) >= 3
	})
	for _, tc := range []struct {
		id        string
		want      []int64
		focus     int
		resources int
	}{
		{idOnly.ID, []int64{1}, 1, 0},
		{full.ID, []int64{1, 2}, 2, 2},
		{empty.ID, []int64{1, 2, 3}, 0, 0},
	} {
		if got := e.receivedBy(rcv, tc.id); !slices.Equal(got, tc.want) {
			t.Errorf("subscription %s: events %v, want %v", tc.id, got, tc.want)
		}
		focus, resources := 0, 0
		for _, n := range rcv.snapshot() {
			if n.Sub == base+"/Subscription/"+tc.id && n.Type == "event-notification" {
				focus += len(n.Focus)
				resources += n.Resources
				if n.Topic != subscriptions.TopicStudyAvailable {
					t.Errorf("topic = %q, want %q", n.Topic, subscriptions.TopicStudyAvailable)
				}
			}
		}
		if focus != tc.focus || resources != tc.resources {
			t.Errorf("subscription %s: %d focus references and %d resources, want %d and %d", tc.id, focus, resources, tc.focus, tc.resources)
		}
	}

	t.Run("$status", func(t *testing.T) {
		rec := httptest.NewRecorder()
		e.svc.StatusHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/fhir/Subscription/"+full.ID+"/$status", nil))
		var b struct {
			Type  string `json:"type"`
			Total int    `json:"total"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || rec.Code != 200 {
			t.Fatalf("$status: %d %s", rec.Code, rec.Body)
		}
		n := parseNote(t, rec.Body.Bytes())
		if b.Type != "searchset" || n.Type != "query-status" || n.Since != 2 {
			t.Errorf("$status: bundle %s, type %s, events-since-subscription-start %d; want searchset, query-status, 2", b.Type, n.Type, n.Since)
		}
		rec = httptest.NewRecorder()
		e.svc.StatusHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/fhir/Subscription/nope/$status", nil))
		if rec.Code != 404 || !strings.Contains(rec.Body.String(), "OperationOutcome") {
			t.Errorf("$status of unknown: %d %s, want 404 OperationOutcome", rec.Code, rec.Body)
		}
	})
	t.Run("$events", func(t *testing.T) {
		n := e.getEvents(full.ID, "eventsSinceNumber=2")
		if !slices.Equal(n.Numbers, []int64{2}) || n.Resources != 1 {
			t.Errorf("$events since 2: numbers %v, %d resources; want [2] with the resource", n.Numbers, n.Resources)
		}
	})
}

func TestTopic_StudyChanged_Websocket(t *testing.T) {
	t.Parallel()
	e := newEnv(t, service.Config{Delivery: fastDelivery()})
	srv := httptest.NewServer(e.svc.WebsocketHandler())
	t.Cleanup(srv.Close)
	topic := e.mustCreate(topicSub("websocket", "", subscriptions.TopicStudyChanged, "ImagingStudy?modality=CT", "id-only"))
	classic := e.mustCreate(`{"resourceType":"Subscription","status":"requested","reason":"viewer","criteria":"ImagingStudy?patient=Patient/p9",
		"channel":{"type":"websocket"}}`)

	// Changes before a client binds wait in the queue.
	e.study("p9", "CT")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	for _, id := range []string{topic.ID, classic.ID} {
		if err := c.Write(ctx, websocket.MessageText, []byte("bind "+id)); err != nil {
			t.Fatal(err)
		}
	}
	e.study("p8", "CT")
	e.study("p9", "MR")
	var bound, pings int
	var numbers []int64
	for bound < 2 || pings < 2 || len(numbers) < 2 {
		_, msg, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v (bound %d, pings %d, topic events %v)", err, bound, pings, numbers)
		}
		switch s := string(msg); {
		case strings.HasPrefix(s, "bound "):
			bound++
		case s == "ping "+classic.ID:
			pings++
		case strings.HasPrefix(s, "{"):
			n := parseNote(t, msg)
			if n.Type == "event-notification" {
				numbers = append(numbers, n.Numbers...)
			}
		default:
			t.Errorf("unexpected message %q", s)
		}
	}
	if !slices.Equal(numbers, []int64{1, 2}) {
		t.Errorf("topic events over websocket = %v, want [1 2]", numbers)
	}
}

func TestLifecycle_HeartbeatOffAndDelete(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, recvOpts{})
	e := newEnv(t, service.Config{AllowedEndpoints: []string{rcv.URL + "/"}, Delivery: fastDelivery()})
	body := strings.Replace(topicSub("rest-hook", rcv.URL+"/hb", subscriptions.TopicStudyChanged, "", "empty"), `"valueUnsignedInt":60`, `"valueUnsignedInt":1`, 1)
	sub := e.mustCreate(body)
	waitFor(t, 10*time.Second, "a heartbeat", func() bool {
		return slices.ContainsFunc(rcv.snapshot(), func(n note) bool { return n.Type == "heartbeat" })
	})

	// status off stops delivery; the state keeps the counter.
	off := strings.Replace(body, `"status":"requested"`, `"status":"off"`, 1)
	off = strings.Replace(off, `{"resourceType":"Subscription",`, `{"resourceType":"Subscription","id":"`+sub.ID+`",`, 1)
	res, _, err := e.codec.Parse([]byte(off))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.fs.InTx(t.Context(), func(tx *fhirpg.Tx) error { _, _, err := tx.Put(t.Context(), res, 0); return err }); err != nil {
		t.Fatal(err)
	}
	if st := e.state(sub.ID); st.Status != "off" {
		t.Errorf("status after off = %s", st.Status)
	}
	e.study("p1", "CT")
	time.Sleep(300 * time.Millisecond) // nothing may arrive; give it the chance
	if st := e.state(sub.ID); st.EventsSinceStart != 0 {
		t.Errorf("an off subscription took event %d", st.EventsSinceStart)
	}

	if err := e.fs.InTx(t.Context(), func(tx *fhirpg.Tx) error { _, err := tx.Delete(t.Context(), "Subscription", sub.ID, 0); return err }); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Store().State(t.Context(), sub.ID); !fhir.IsKind(err, fhir.KindNotFound) {
		t.Errorf("state after delete: %v, want not found", err)
	}
}

// A subscription stored under criteria this server no longer accepts (an
// upgrade reads them more strictly; here the stored criteria are edited in
// the database between two runs, as an older version would have accepted
// them) matched nothing, and only a log line said so: its subscriber waited for
// notifications that never came. It is now in error, with the reason in
// its resource and $status, and can still be turned off or corrected; new
// criteria of that kind are refused.
func TestLifecycle_CriteriaNoLongerAccepted_ErrorUntilCorrected(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, recvOpts{})
	e := newEnv(t, service.Config{AllowedEndpoints: []string{rcv.URL + "/"}, Delivery: fastDelivery()})
	const good, stale = "ImagingStudy?patient=Patient/p1", "ImagingStudy?patient=Patient/p1&_text=chest"
	body := criteriaSub(rcv.URL+"/hook", good)
	sub := e.mustCreate(body)
	waitFor(t, 10*time.Second, "active", func() bool { return e.state(sub.ID).Status == "active" })

	if _, err := e.create(criteriaSub(rcv.URL+"/hook", stale)); !fhir.IsKind(err, fhir.KindUnprocessable) {
		t.Fatalf("creating a subscription with criteria %q: %v, want 422", stale, err)
	}
	// The API stops; the next version starts on what the previous one
	// stored.
	e.stop()
	for _, q := range []string{
		`UPDATE resource SET body = replace(body, $2, $3) WHERE type = 'Subscription' AND id = $1`,
		`UPDATE subscription_state SET definition = replace(definition::text, $2, $3)::jsonb WHERE id = $1`,
	} {
		if _, err := e.pool.Exec(t.Context(), q, sub.ID, good, stale); err != nil {
			t.Fatal(err)
		}
	}
	e.start()
	const reason = "this server no longer accepts the subscription's criteria"
	waitFor(t, 10*time.Second, "status error", func() bool { return e.state(sub.ID).Status == "error" })
	if st := e.state(sub.ID); !strings.Contains(st.Error, reason) || !strings.Contains(st.Error, "_text") {
		t.Errorf("$status error = %q, want the reason, naming the parameter", st.Error)
	}
	waitFor(t, 5*time.Second, "resource status error", func() bool {
		r, err := e.fs.Read(t.Context(), "Subscription", sub.ID)
		return err == nil && strings.Contains(string(r.Body), `"status":"error"`) && strings.Contains(string(r.Body), reason)
	})

	put := func(criteria, status string) error {
		b := strings.Replace(criteriaSub(rcv.URL+"/hook", criteria), `"status":"requested"`, `"status":"`+status+`"`, 1)
		b = strings.Replace(b, `{"resourceType":"Subscription",`, `{"resourceType":"Subscription","id":"`+sub.ID+`",`, 1)
		res, _, err := e.codec.Parse([]byte(b))
		if err != nil {
			t.Fatal(err)
		}
		return e.fs.InTx(t.Context(), func(tx *fhirpg.Tx) error { _, _, err := tx.Put(t.Context(), res, 0); return err })
	}
	// Turned off as it stands: accepted.
	if err := put(stale, "off"); err != nil {
		t.Fatalf("turning the subscription off: %v", err)
	}
	if st := e.state(sub.ID); st.Status != "off" || st.Error != "" {
		t.Errorf("after off: status %s error %q, want off without error", st.Status, st.Error)
	}
	// Other stale criteria: refused.
	if err := put(stale+"&_text=head", "requested"); !fhir.IsKind(err, fhir.KindUnprocessable) {
		t.Errorf("changing to other criteria the server does not accept: %v, want 422", err)
	}
	// Corrected: handshake, active, and notified again.
	if err := put(good, "requested"); err != nil {
		t.Fatalf("correcting the criteria: %v", err)
	}
	waitFor(t, 10*time.Second, "active after correction", func() bool { return e.state(sub.ID).Status == "active" })
	e.study("p1", "CT")
	waitFor(t, 10*time.Second, "an event after correction", func() bool { return len(rcv.events()) >= 1 })
}
