//go:build unix

package audit_test

import (
	"context"
	"net/http"
	"os"
	"strconv"
	"strings"
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

// machineCPU is the CPU time all processes have used, from /proc/stat in
// clock ticks of 10 ms (USER_HZ on Linux), or false where there is none: with
// PostgreSQL's share, on a machine otherwise quiet.
func machineCPU() (time.Duration, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, false
	}
	var ticks int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, false
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, true
}

// BenchmarkRecorder_SearchPage is the writer's throughput for the record of
// a paged search: one access that returned 100 studies of 100 patients, which
// BALP records as one AuditEvent per patient. An op is one such access
// recorded and written; the timer stops once the writer has drained.
// Besides the time it reports the process's CPU per AuditEvent written and,
// on Linux, the machine's (the process's and PostgreSQL's).
func BenchmarkRecorder_SearchPage(b *testing.B) {
	benchmarkRecorder(b, 100)
}

// BenchmarkRecorder_Read is BenchmarkRecorder_SearchPage for accesses of one
// patient each, as reads and most searches are.
func BenchmarkRecorder_Read(b *testing.B) {
	benchmarkRecorder(b, 1)
}

func benchmarkRecorder(b *testing.B, perAccess int) {
	store := newStore(b)
	rec, _ := newRecorder(b, store, audit.Config{})
	stop := run(b, rec)
	patients := make([]string, perAccess)
	for i := range patients {
		patients[i] = "Patient/p" + itoa(i)
	}
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	ev := audit.Event{Interaction: audit.SearchType, ResourceType: "ImagingStudy",
		Query: "/fhir/ImagingStudy?_sort=_lastUpdated&_count=100", Patients: patients, Status: http.StatusOK,
		Principal: callers["clinician"], ClientAddress: "192.0.2.7", RequestID: "req-1", Start: t0, Recorded: t0}
	cpu0 := processCPU(b)
	all0, machine := machineCPU()
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
	if all, ok := machineCPU(); ok && machine {
		b.ReportMetric(float64((all-all0).Microseconds())/records, "machine-cpu-µs/AuditEvent")
	}
}
