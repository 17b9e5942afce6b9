package worker

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the worker's and the retriever's Prometheus metrics. It
// implements retrieve.Observer.
type Metrics struct {
	running  prometheus.Gauge
	jobs     *prometheus.CounterVec
	failures *prometheus.CounterVec
	retries  *prometheus.CounterVec
	loaded   prometheus.Histogram
	bytes    *prometheus.CounterVec
	inst     *prometheus.CounterVec
	refused  prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		running: prometheus.NewGauge(prometheus.GaugeOpts{Name: "priorflow_prefetch_jobs_running",
			Help: "Prefetch jobs running in this worker."}),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "priorflow_prefetch_job_outcomes_total",
			Help: "Job attempts by how they ended: completed, failed, retry, handed-back, dropped, cancelled."}, []string{"state"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "priorflow_prefetch_failures_total",
			Help: "Failures by stage: search, retrieve, index."}, []string{"stage"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "priorflow_prefetch_retries_total",
			Help: "Retries: of a job (search) or of a study pull, by source."}, []string{"source"}),
		loaded: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "priorflow_prefetch_event_to_loaded_seconds",
			Help:    "From the care event to the prior loaded in the local archive.",
			Buckets: prometheus.ExponentialBuckets(0.25, 2, 16)}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "priorflow_retrieve_bytes_total",
			Help: "DICOM bytes received (WADO-RS, C-GET, C-MOVE), by source."}, []string{"source"}),
		inst: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "priorflow_retrieve_instances_total",
			Help: "DICOM instances received (WADO-RS, C-GET, C-MOVE), by source."}, []string{"source"}),
		// Not by calling AE title: any peer may send any title.
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "priorflow_dicom_objects_refused_total",
			Help: "Objects the Storage SCP refused: no C-MOVE in progress asked for them."}),
	}
	if reg != nil {
		reg.MustRegister(m.running, m.jobs, m.failures, m.retries, m.loaded, m.bytes, m.inst, m.refused)
	}
	return m
}

// Received implements retrieve.Observer.
func (m *Metrics) Received(source string, instances int, bytes int64) {
	m.inst.WithLabelValues(source).Add(float64(instances))
	m.bytes.WithLabelValues(source).Add(float64(bytes))
}

// Retried implements retrieve.Observer.
func (m *Metrics) Retried(source string) { m.retries.WithLabelValues(source).Inc() }

// Refused implements retrieve.Observer.
func (m *Metrics) Refused() { m.refused.Inc() }

// JobStates is a collector of priorflow_prefetch_jobs{state}: the
// prefetch_job rows by state, counted at scrape time.
type JobStates struct {
	pool *pgxpool.Pool
	desc *prometheus.Desc
}

// NewJobStates returns the collector; register it once per process.
func NewJobStates(pool *pgxpool.Pool) *JobStates {
	return &JobStates{pool: pool, desc: prometheus.NewDesc("priorflow_prefetch_jobs", "Prefetch jobs by state.", []string{"state"}, nil)}
}

// Describe implements prometheus.Collector.
func (c *JobStates) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *JobStates) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	counts := map[string]float64{"requested": 0, "in-progress": 0, "completed": 0, "failed": 0, "cancelled": 0}
	rows, err := c.pool.Query(ctx, `SELECT state, count(*) FROM prefetch_job GROUP BY state`)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		var n int64
		if err := rows.Scan(&s, &n); err != nil {
			ch <- prometheus.NewInvalidMetric(c.desc, err)
			return
		}
		counts[s] = float64(n)
	}
	for s, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, n, s)
	}
}
