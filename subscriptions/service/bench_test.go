package service_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/priorflow/priorflow/subscriptions"
	"github.com/priorflow/priorflow/subscriptions/service"
)

// benchSubs is the number of subscriptions the benchmarks deliver to.
const benchSubs = 1000

// benchEnv creates benchSubs topic subscriptions on imagingstudy-available,
// all posting to one local receiver, and waits until their handshakes made
// them active. filter gives each subscription's filter criteria.
func benchEnv(b *testing.B, filter func(i int) string) (*env, *receiver) {
	b.Helper()
	rcv := newReceiver(b, recvOpts{})
	d := fastDelivery()
	d.Lease = 30 * time.Second
	e := newEnv(b, service.Config{AllowedEndpoints: []string{rcv.URL + "/"}, Delivery: d})
	for i := range benchSubs {
		e.mustCreate(topicSub("rest-hook", fmt.Sprintf("%s/s%d", rcv.URL, i), subscriptions.TopicStudyAvailable, filter(i), "id-only"))
	}
	waitFor(b, 120*time.Second, "handshakes", func() bool { return len(rcv.snapshot()) >= benchSubs })
	// Wait until the resources say active too: those writes reload the
	// dispatcher's subscriptions, which is not what is measured.
	waitFor(b, 120*time.Second, "resources active", func() bool {
		var n int
		err := e.pool.QueryRow(b.Context(), `SELECT count(*) FROM resource WHERE type = 'Subscription' AND body LIKE '%"status":"active"%'`).Scan(&n)
		return err == nil && n == benchSubs
	})
	return e, rcv
}

// BenchmarkFanOut_1000Subscriptions publishes imaging.study.available events
// that match all 1,000 subscriptions and reports the notifications delivered
// per second, end to end (JetStream → dispatcher → PostgreSQL → rest-hook
// POST to a local receiver).
func BenchmarkFanOut_1000Subscriptions(b *testing.B) {
	e, rcv := benchEnv(b, func(int) string { return "" })
	before := len(rcv.snapshot())
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		e.publishAvailable(&subscriptions.StudyAvailable{EventID: fmt.Sprintf("fan-%d", i), Study: "ImagingStudy/s1", Patient: "Patient/p1", ModalitiesInStudy: []string{"CT"}})
	}
	want := before + b.N*benchSubs
	waitFor(b, 300*time.Second, "all notifications", func() bool {
		n := 0
		for _, x := range rcv.snapshot()[before:] {
			n += len(x.Numbers)
		}
		return before+n >= want
	})
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N*benchSubs)/el.Seconds(), "notifications/s")
}

// BenchmarkLatency_StudyAvailableToReceiver measures, with 1,000
// subscriptions each filtered to its own patient, the time from publishing
// an imaging.study.available event to its receiver having the notification
// (goal p95 ≤ 100 ms).
func BenchmarkLatency_StudyAvailableToReceiver(b *testing.B) {
	e, rcv := benchEnv(b, func(i int) string { return fmt.Sprintf("ImagingStudy?patient=Patient/p%d", i) })
	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		before := len(rcv.snapshot())
		start := time.Now()
		e.publishAvailable(&subscriptions.StudyAvailable{EventID: fmt.Sprintf("lat-%d", i), Study: "ImagingStudy/s1",
			Patient: fmt.Sprintf("Patient/p%d", i%benchSubs), ModalitiesInStudy: []string{"CT"}})
		for len(rcv.snapshot()) == before {
			select {
			case <-rcv.got:
			case <-time.After(10 * time.Second):
				b.Fatalf("event %d not delivered within 10s", i)
			}
		}
		lat = append(lat, rcv.snapshot()[before].ReceivedAt.Sub(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)*50/100].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*95/100].Microseconds())/1000, "p95-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}
