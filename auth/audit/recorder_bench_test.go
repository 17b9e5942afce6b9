//go:build unix

package audit_test

import (
	"context"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/priorflow/priorflow/auth/audit"
)

// processCPU is the CPU time this process has used, user and system: the
// writer's CPU is what it takes from the requests it records.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRecorder_SearchPage is the writer's throughput for the record of
// a paged search: one access that returned 100 studies of 100 patients, which
// BALP records as one AuditEvent per patient. An op is one such access
// recorded and written; the timer stops once the writer has drained.
// Besides the time it reports the process's CPU per AuditEvent written.
func BenchmarkRecorder_SearchPage(b *testing.B) {
	store := newStore(b)
	rec, _ := newRecorder(b, store, audit.Config{})
	stop := run(b, rec)
	patients := make([]string, 100)
	for i := range patients {
		patients[i] = "Patient/p" + itoa(i)
	}
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	ev := audit.Event{Interaction: audit.SearchType, ResourceType: "ImagingStudy",
		Query: "/fhir/ImagingStudy?_sort=_lastUpdated&_count=100", Patients: patients, Status: http.StatusOK,
		Principal: callers["clinician"], ClientAddress: "192.0.2.7", RequestID: "req-1", Start: t0, Recorded: t0}
	cpu0 := processCPU(b)
	b.ResetTimer()
	for range b.N {
		if err := rec.Record(context.Background(), ev); err != nil {
			b.Fatal(err)
		}
	}
	if err := stop(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	records := float64(b.N * len(patients))
	b.ReportMetric(float64(b.Elapsed().Microseconds())/records, "µs/AuditEvent")
	b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/records, "cpu-µs/AuditEvent")
}
