package service_test

import (
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/subscriptions/service"
)

func TestRestHook_CriteriaBased_HandshakeThenEventsInOrder(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, recvOpts{})
	e := newEnv(t, service.Config{AllowedEndpoints: []string{rcv.URL + "/"}, Delivery: fastDelivery()})
	sub := e.mustCreate(criteriaSub(rcv.URL+"/hook", "ImagingStudy?patient=Patient/p1&modality=CT"))

	var want []string
	for i := range 5 {
		want = append(want, base+"/"+"ImagingStudy/"+e.study("p1", "CT").ID)
		e.study("p2", "CT") // other patient
		if i%2 == 0 {
			e.study("p1", "MR") // other modality
		}
	}
	waitFor(t, 10*time.Second, "5 events", func() bool { return len(rcv.events()) >= 5 })

	notes := rcv.snapshot()
	if got, want := notes[0].Type, "handshake"; got != want {
		t.Errorf("first notification type = %q, want %q", got, want)
	}
	if got := rcv.events(); !slices.Equal(got, []int64{1, 2, 3, 4, 5}) {
		t.Errorf("event numbers = %v, want 1..5", got)
	}
	var focus []string
	for _, n := range notes[1:] {
		focus = append(focus, n.Focus...)
		if n.Auth != "Bearer s3cret" {
			t.Errorf("Authorization = %q, want the subscription's header", n.Auth)
		}
		if n.Resources != len(n.Numbers) {
			t.Errorf("bundle has %d resources for %d events, want the full resources", n.Resources, len(n.Numbers))
		}
	}
	if !slices.Equal(focus, want) {
		t.Errorf("focus = %v, want %v", focus, want)
	}
	if r, err := e.fs.Read(t.Context(), "Subscription", sub.ID); err != nil || !strings.Contains(string(r.Body), `"status":"active"`) {
		t.Errorf("Subscription resource after the handshake: %v %s, want status active", err, r.Body)
	}
	waitFor(t, 5*time.Second, "delivery recorded", func() bool { return e.state(sub.ID).DeliveredThrough == 5 })
	st := e.state(sub.ID)
	if st.Status != "active" || st.EventsSinceStart != 5 || st.DeliveredThrough != 5 {
		t.Errorf("state = %s since=%d delivered=%d, want active 5 5", st.Status, st.EventsSinceStart, st.DeliveredThrough)
	}
}

func TestRestHook_FailingThenRecovering_RetriesInOrder(t *testing.T) {
	t.Parallel()
	// The handshake passes; the next 6 POSTs fail, then the endpoint recovers.
	rcv := newReceiver(t, recvOpts{fail: func(call int) bool { return call >= 2 && call <= 7 }})
	e := newEnv(t, service.Config{AllowedEndpoints: []string{rcv.URL + "/"}, Delivery: fastDelivery()})
	sub := e.mustCreate(criteriaSub(rcv.URL+"/hook", "ImagingStudy?patient=Patient/p1"))
	waitFor(t, 10*time.Second, "handshake", func() bool { return len(rcv.snapshot()) >= 1 })
	for range 8 {
		e.study("p1", "CT")
	}
	waitFor(t, 15*time.Second, "8 events", func() bool { return len(rcv.events()) >= 8 })
	got := rcv.events()
	if !slices.IsSorted(got) || got[0] != 1 || got[len(got)-1] != 8 {
		t.Errorf("event numbers = %v, want 1..8 in order", got)
	}
	waitFor(t, 5*time.Second, "delivery recorded", func() bool { return e.state(sub.ID).DeliveredThrough == 8 })
	if st := e.state(sub.ID); st.Status != "active" || st.DeliveredThrough != 8 {
		t.Errorf("state = %s delivered=%d, want active 8", st.Status, st.DeliveredThrough)
	}
}

func TestRestHook_SlowEndpoint_TimesOutAndRetries(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, recvOpts{slowFirst: 1500 * time.Millisecond})
	d := fastDelivery()
	e := newEnv(t, service.Config{AllowedEndpoints: []string{rcv.URL + "/"}, Delivery: d})
	// backport-timeout 1 s: the first (slow) handshake times out.
	body := `{"resourceType":"Subscription","status":"requested","reason":"priors","criteria":"ImagingStudy?patient=Patient/p1",
		"channel":{"type":"rest-hook","endpoint":"` + rcv.URL + `/hook","payload":"application/fhir+json",
		"extension":[{"url":"http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-timeout","valueUnsignedInt":1}]}}`
	sub := e.mustCreate(body)
	e.study("p1", "CT")
	waitFor(t, 10*time.Second, "event after a timed-out handshake", func() bool { return len(rcv.events()) >= 1 })
	if st := e.state(sub.ID); st.Status != "active" {
		t.Errorf("status = %s, want active", st.Status)
	}
}

func TestRestHook_RetryWindowExhausted_ErrorThenActive(t *testing.T) {
	t.Parallel()
	var down atomic.Bool
	down.Store(true)
	rcv := newReceiver(t, recvOpts{fail: func(call int) bool { return call > 1 && down.Load() }})
	d := fastDelivery()
	d.RetryWindow = 300 * time.Millisecond
	e := newEnv(t, service.Config{AllowedEndpoints: []string{rcv.URL + "/"}, Delivery: d})
	sub := e.mustCreate(criteriaSub(rcv.URL+"/hook", "ImagingStudy?patient=Patient/p1"))
	waitFor(t, 10*time.Second, "handshake", func() bool { return len(rcv.snapshot()) >= 1 })
	e.study("p1", "CT")
	e.study("p1", "CT")
	waitFor(t, 10*time.Second, "status error", func() bool { return e.state(sub.ID).Status == "error" })
	waitFor(t, 5*time.Second, "resource status error", func() bool {
		r, err := e.fs.Read(t.Context(), "Subscription", sub.ID)
		return err == nil && strings.Contains(string(r.Body), `"status":"error"`) && strings.Contains(string(r.Body), `"error":"delivery failed`)
	})
	if st := e.state(sub.ID); st.Error == "" || st.DeliveredThrough != 2 {
		t.Errorf("error state: error=%q delivered=%d, want a reason and both events abandoned", st.Error, st.DeliveredThrough)
	}
	down.Store(false)
	e.study("p1", "CT")
	waitFor(t, 10*time.Second, "event 3 after recovery", func() bool { return slices.Contains(rcv.events(), 3) })
	waitFor(t, 5*time.Second, "active again", func() bool { return e.state(sub.ID).Status == "active" })
	if st := e.state(sub.ID); st.Status != "active" || st.Error != "" {
		t.Errorf("after recovery: status=%s error=%q, want active without error", st.Status, st.Error)
	}
	// The gap (1, 2) is fetched with $events.
	ev := e.getEvents(sub.ID, "eventsSinceNumber=1&eventsUntilNumber=2")
	if got := ev.Numbers; !slices.Equal(got, []int64{1, 2}) {
		t.Errorf("$events numbers = %v, want [1 2]", got)
	}
	if ev.Type != "query-event" {
		t.Errorf("$events type = %q, want query-event", ev.Type)
	}
}

// An endpoint's status line is outside text: Go's client takes one holding
// a NUL, other control characters or bytes that are not UTF-8, and the
// failure quoting it must still be recorded (PostgreSQL text holds no NUL,
// a FHIR string no control character), or the subscription never reaches
// error and the endpoint is tried again at every poll.
func TestRestHook_UnprintableStatusLine_RecordedAsError(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, recvOpts{fail: func(int) bool { return true }, failStatus: "HTTP/1.1 503 Busy\x00now\x01\xff"})
	d := fastDelivery()
	d.RetryWindow = 300 * time.Millisecond
	e := newEnv(t, service.Config{AllowedEndpoints: []string{rcv.URL + "/"}, Delivery: d})
	sub := e.mustCreate(criteriaSub(rcv.URL+"/hook", "ImagingStudy?patient=Patient/p1"))
	waitFor(t, 10*time.Second, "status error", func() bool { return e.state(sub.ID).Status == "error" })
	if got, want := e.state(sub.ID).Error, "503 Busy\uFFFDnow\uFFFD\uFFFD"; !strings.Contains(got, want) {
		t.Errorf("recorded error = %q, want it to quote the status line as %q", got, want)
	}
	waitFor(t, 5*time.Second, "resource status error", func() bool {
		r, err := e.fs.Read(t.Context(), "Subscription", sub.ID)
		return err == nil && strings.Contains(string(r.Body), `"status":"error"`) && strings.Contains(string(r.Body), "Busy\uFFFDnow")
	})
}

// When an attempt cannot be recorded (here a trigger refuses the write, as
// a full disk or a dropped connection would), the subscription stays due;
// the deliverer keeps its lease so the endpoint is tried again when the
// lease expires, not at once and over and over (it was, some 500 times a
// second).
func TestRestHook_RecordingFails_RetriedAfterLease(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, recvOpts{fail: func(int) bool { return true }})
	d := fastDelivery()
	d.Lease = time.Minute
	e := newEnv(t, service.Config{AllowedEndpoints: []string{rcv.URL + "/"}, Delivery: d})
	if _, err := e.pool.Exec(t.Context(), `
		CREATE FUNCTION refuse_failure() RETURNS trigger LANGUAGE plpgsql AS
		  $$BEGIN IF NEW.last_error IS NOT NULL THEN RAISE EXCEPTION 'disk full'; END IF; RETURN NEW; END$$;
		CREATE TRIGGER refuse_failure BEFORE UPDATE ON subscription_state FOR EACH ROW EXECUTE FUNCTION refuse_failure()`); err != nil {
		t.Fatal(err)
	}
	e.mustCreate(criteriaSub(rcv.URL+"/hook", "ImagingStudy?patient=Patient/p1"))
	waitFor(t, 10*time.Second, "handshake attempt", func() bool { rcv.mu.Lock(); defer rcv.mu.Unlock(); return rcv.calls >= 1 })
	// Many polls (50 ms) pass, and the lease is a minute.
	time.Sleep(time.Second)
	rcv.mu.Lock()
	calls := rcv.calls
	rcv.mu.Unlock()
	if calls != 1 {
		t.Errorf("the endpoint got %d requests while the failed attempt could not be recorded, want 1 until the lease expires", calls)
	}
}

func TestRestart_MidDelivery_NothingLostNothingReordered(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, recvOpts{delay: 30 * time.Millisecond})
	d := fastDelivery()
	d.Batch = 1
	e := newEnv(t, service.Config{AllowedEndpoints: []string{rcv.URL + "/"}, Delivery: d})
	subs := []*fhir.Resource{
		e.mustCreate(criteriaSub(rcv.URL+"/a", "ImagingStudy?patient=Patient/p1")),
		e.mustCreate(criteriaSub(rcv.URL+"/b", "ImagingStudy?patient=Patient/p1")),
	}
	const n = 30
	for range n {
		e.study("p1", "CT")
	}
	waitFor(t, 10*time.Second, "some deliveries", func() bool { return len(rcv.events()) >= 10 })
	e.stop() // the API goes down mid-delivery
	for range 5 {
		e.study("p1", "CT") // written while no dispatcher runs: waits in the outbox/stream
	}
	e.start()
	for _, s := range subs {
		waitFor(t, 20*time.Second, "all events of "+s.ID, func() bool { return e.state(s.ID).DeliveredThrough == n+5 })
	}
	// Per subscription (path), event numbers arrive in order; a retry after
	// the restart may repeat the last one, nothing is missing.
	for _, s := range subs {
		got := e.receivedBy(rcv, s.ID)
		if !slices.IsSorted(got) {
			t.Errorf("subscription %s: event numbers out of order: %v", s.ID, got)
		}
		if c := slices.Compact(slices.Clone(got)); len(c) != n+5 || c[0] != 1 || c[len(c)-1] != n+5 {
			t.Errorf("subscription %s: got %d distinct events (%v), want 1..%d", s.ID, len(c), c, n+5)
		}
	}
}

func TestAllowList_RefusesUnlistedAndPrivateEndpoints(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, recvOpts{})
	_, port, _ := splitHostPort(rcv.URL)
	e := newEnv(t, service.Config{AllowedEndpoints: []string{rcv.URL + "/hooks/", "http://localhost:" + port + "/"}, Delivery: fastDelivery()})
	for _, tc := range []struct{ name, endpoint string }{
		{"outside the listed path", rcv.URL + "/other"},
		{"unlisted host", "https://ehr.example.org/hook"},
		{"listed prefix as a longer host", "http://127.0.0.1.nip.io:" + port + "/hooks/x"},
		{"listed host name resolving to loopback", "http://localhost:" + port + "/x"},
		{"link-local metadata address", "http://169.254.169.254/latest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.create(criteriaSub(tc.endpoint, "ImagingStudy?patient=Patient/p1"))
			if got, want := fhir.ErrorKind(err), fhir.KindUnprocessable; got != want {
				t.Errorf("create with %s: kind = %v (%v), want %v", tc.endpoint, got, err, want)
			}
		})
	}
	t.Run("listed loopback IP literal", func(t *testing.T) {
		if _, err := e.create(criteriaSub(rcv.URL+"/hooks/1", "ImagingStudy?patient=Patient/p1")); err != nil {
			t.Errorf("create: %v, want accepted", err)
		}
	})
}

func TestStore_Prune_KeepsPending(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, recvOpts{fail: func(call int) bool { return call > 1 }}) // handshake only
	e := newEnv(t, service.Config{AllowedEndpoints: []string{rcv.URL + "/"}, Delivery: fastDelivery()})
	sub := e.mustCreate(criteriaSub(rcv.URL+"/hook", "ImagingStudy?patient=Patient/p1"))
	e.study("p1", "CT")
	waitFor(t, 10*time.Second, "queued", func() bool { return e.state(sub.ID).EventsSinceStart == 1 })
	if n, err := e.svc.Store().Prune(t.Context(), 0); err != nil || n != 0 {
		t.Errorf("Prune = %d, %v; want the pending notification kept", n, err)
	}
}
