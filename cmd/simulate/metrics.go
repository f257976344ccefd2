package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clinicsync/clinicsync/cmd/simulate/sim"
)

// simMetrics are the simulator's Prometheus metrics, counted as each
// run ends.
type simMetrics struct {
	reg        *prometheus.Registry
	runs       *prometheus.CounterVec
	syncs      *prometheus.CounterVec
	rows       prometheus.Counter
	violations prometheus.Counter
	clinicDays prometheus.Counter
}

func newSimMetrics() *simMetrics {
	m := &simMetrics{
		reg: prometheus.NewRegistry(),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clinicsync_sim_runs_total",
			Help: "Simulation runs ended, by result (ok, or violation when an invariant broke)."}, []string{"result"}),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clinicsync_sim_syncs_total",
			Help: "Syncs in ended runs, by outcome (ok, error, skipped)."}, []string{"outcome"}),
		rows: prometheus.NewCounter(prometheus.CounterOpts{Name: "clinicsync_sim_rows_written_total",
			Help: "Rows the simulated users wrote in ended runs."}),
		violations: prometheus.NewCounter(prometheus.CounterOpts{Name: "clinicsync_sim_violations_total",
			Help: "Invariant violations found in ended runs (those listed and those dropped past 50 of a kind)."}),
		clinicDays: prometheus.NewCounter(prometheus.CounterOpts{Name: "clinicsync_sim_clinic_days_total",
			Help: "Simulated clinic days (clinics × days) of ended runs."}),
	}
	m.reg.MustRegister(m.runs, m.syncs, m.rows, m.violations, m.clinicDays)
	return m
}

// observe counts an ended run: a sim.Options.OnRun.
func (m *simMetrics) observe(r *sim.Report) {
	result := "ok"
	if !r.OK() {
		result = "violation"
	}
	m.runs.WithLabelValues(result).Inc()
	for outcome, n := range r.Outcomes {
		m.syncs.WithLabelValues(outcome).Add(float64(n))
	}
	m.rows.Add(float64(r.RowsWritten))
	m.violations.Add(float64(len(r.Violations) + r.Dropped))
	m.clinicDays.Add(float64(r.Options.Clinics * r.Options.Days))
}
