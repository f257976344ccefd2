package metrics_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/kv"
	"github.com/clinicsync/clinicsync/metrics"
)

const (
	email    = "nurse@example.org"
	password = "correct horse"
)

// A cloud serving with metrics, a phone syncing with it, a push with a
// row the cloud refuses and requests over the rate limit: each side's
// /metrics, scraped over HTTP and parsed, counts exactly that.
func TestMetricsCountSyncsAndPushes(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The cloud's clock runs a second ahead of the phone's: an edit on
	// the cloud made after one on the phone has the higher version, even
	// within the same millisecond of wall time.
	cloud := open(t, "cloud", actors.InitConfig{Kind: actors.KindCloud, Clinics: []string{"c1"}}, aheadClock(time.Second))
	if _, err := cloud.AddUser(actors.UserConfig{Email: email, Password: password, ClinicID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cloud.PutValues("patients", "p1", patient("Omar")); err != nil {
		t.Fatal(err)
	}
	cm := metrics.New()
	cm.Node(cloud)
	const rateLimit = 8
	opts := actors.ServeOptions{HTTP: "127.0.0.1:0", Logger: quiet, Cloud: actors.CloudConfig{RateLimit: rateLimit}}
	cm.Instrument(&opts)
	cloudURL := serve(t, ctx, cloud, opts)
	cloudMetrics := serveMetrics(t, ctx, cm)

	// The phone: one patient to push, one to pull.
	phone := open(t, "phone", actors.InitConfig{Kind: actors.KindMobile}, actors.SystemClock{})
	if _, err := phone.AddPeer(actors.PeerConfig{Type: kv.PeerCloud, URL: cloudURL}); err != nil {
		t.Fatal(err)
	}
	if err := phone.SetCredentials(email, password); err != nil {
		t.Fatal(err)
	}
	if _, err := phone.PutValues("patients", "p2", patient("Amina")); err != nil {
		t.Fatal(err)
	}
	pm := metrics.New()
	pm.Node(phone)
	if err := phone.Start(actors.NodeConfig{Transports: phone.HTTPTransports(nil), Logger: quiet, OnSync: pm.OnSync}); err != nil {
		t.Fatal(err)
	}
	phoneMetrics := serveMetrics(t, ctx, pm)
	before := scrape(t, phoneMetrics)
	expect(t, "phone before", before, 1, "clinicsync_pending_changes")
	expect(t, "phone before", before, 0, "clinicsync_sync_rows_pushed_total")

	res, err := phone.Sync(ctx, actors.SyncRequest{Trigger: actors.Manual})
	if err != nil || res.Outcome != actors.OutcomeOK || res.Pulled < 1 || res.Pushed != 1 {
		t.Fatalf("sync: %+v %v", res, err)
	}
	after := scrape(t, phoneMetrics)
	expect(t, "phone", after, 1, "clinicsync_syncs_total", "outcome", "ok", "peer_type", kv.PeerCloud)
	expect(t, "phone", after, float64(res.Pulled), "clinicsync_sync_rows_pulled_total")
	expect(t, "phone", after, 1, "clinicsync_sync_rows_pushed_total")
	expect(t, "phone", after, 0, "clinicsync_sync_rows_rejected_total")
	expect(t, "phone", after, 0, "clinicsync_pending_changes")
	expect(t, "phone", after, 1, "clinicsync_sync_state", "state", "idle")
	expect(t, "phone", after, 0, "clinicsync_sync_state", "state", "fetching")
	if h := metric(t, after, "clinicsync_sync_duration_seconds", "peer_type", kv.PeerCloud).GetHistogram(); h.GetSampleCount() != 1 || h.GetSampleSum() <= 0 {
		t.Errorf("phone: sync duration histogram %v, want one positive sample", h)
	}

	// Two nurses edit p1, the phone's first: at the next sync the cloud's
	// newer name and updated_at beat the phone's, which go to its
	// conflict log.
	if _, err := phone.PutValues("patients", "p1", map[string]any{"given_name": "Omer"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cloud.PutValues("patients", "p1", map[string]any{"given_name": "Umar"}); err != nil {
		t.Fatal(err)
	}
	res, err = phone.Sync(ctx, actors.SyncRequest{Trigger: actors.Manual})
	if err != nil || res.Outcome != actors.OutcomeOK || res.Conflicts != 2 {
		cs, _ := phone.Conflicts("", "")
		t.Fatalf("sync after two edits: %+v %v, want two conflicts; log %+v", res, err, cs)
	}
	after = scrape(t, phoneMetrics)
	expect(t, "phone", after, 2, "clinicsync_conflicts_logged_total", "where", "pull")
	expect(t, "phone", after, 2, "clinicsync_conflict_log_entries")
	expect(t, "phone", after, 2, "clinicsync_syncs_total", "outcome", "ok", "peer_type", kv.PeerCloud)

	// A WatermelonDB push of a good row and one with garbage in a bool
	// column, and an edit of p1: the cloud stores two and refuses the
	// other with its reason.
	body, _ := json.Marshal(map[string]any{"lastPulledAt": 0, "changes": map[string]any{
		"patients": map[string]any{"created": []any{
			map[string]any{"id": "p3", "primary_clinic_id": "c1", "given_name": "Lina"},
			map[string]any{"id": "p4", "primary_clinic_id": "c1", "is_deleted": "maybe"},
		}, "updated": []any{
			map[string]any{"id": "p1", "primary_clinic_id": "c1", "hometown": "Jerash", "_changed": "hometown"},
		}, "deleted": []any{}}}})
	if code, answer := request(t, http.MethodPost, cloudURL+actors.SyncPath, body); code != http.StatusOK || !bytes.Contains(answer, []byte(`"p4"`)) {
		t.Fatalf("push: %d %s", code, answer)
	}
	// Pulls until the rate limit answers 429, twice.
	tooMany := 0
	for i := 0; i < 2*rateLimit && tooMany < 2; i++ {
		if code, _ := request(t, http.MethodGet, cloudURL+actors.SyncPath, nil); code == http.StatusTooManyRequests {
			tooMany++
		}
	}
	if tooMany != 2 {
		t.Fatalf("%d requests over a limit of %d a minute: %d answered 429", 2*rateLimit, rateLimit, tooMany)
	}

	got := scrape(t, cloudMetrics)
	expect(t, "cloud", got, 2, "clinicsync_pushes_accepted_total")
	expect(t, "cloud", got, 3, "clinicsync_push_rows_applied_total") // p2, then p3 and p1
	// p1's hometown: the push had not seen the cloud's (last_pulled_at 0).
	expect(t, "cloud", got, 1, "clinicsync_conflicts_logged_total", "where", "push")
	expect(t, "cloud", got, 1, "clinicsync_push_rows_rejected_total")
	expect(t, "cloud", got, 2, "clinicsync_http_responses_total", "code", "429")
	expect(t, "cloud", got, 0, "clinicsync_http_responses_total", "code", "503")
	expect(t, "cloud", got, float64(actors.DefaultPushBudgetFactor*actors.DefaultMaxBodyBytes), "clinicsync_push_budget_bytes")
	expect(t, "cloud", got, 0, "clinicsync_push_budget_in_flight_requests")
	expect(t, "cloud", got, 0, "clinicsync_push_budget_in_flight_bytes")
	expect(t, "cloud", got, 0, "clinicsync_sessions", "kind", "rpc")
	expect(t, "cloud", got, 1, "clinicsync_sync_state", "state", "idle")
	// The cloud ran no sync of its own.
	if fam, ok := got["clinicsync_syncs_total"]; ok && len(fam.GetMetric()) > 0 {
		t.Errorf("cloud: syncs %v, want none", fam)
	}
}

// Two Metrics in one process have registries of their own.
func TestMetricsRegistriesApart(t *testing.T) {
	a, b := metrics.New(), metrics.New()
	a.OnPush(actors.PushResult{Accepted: 3})
	fa, err := a.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	fb, err := b.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	va, vb := byName(fa)["clinicsync_push_rows_applied_total"], byName(fb)["clinicsync_push_rows_applied_total"]
	if va.GetMetric()[0].GetCounter().GetValue() != 3 || vb.GetMetric()[0].GetCounter().GetValue() != 0 {
		t.Errorf("a %v, b %v: want 3 and 0", va, vb)
	}
}

func byName(fams []*dto.MetricFamily) map[string]*dto.MetricFamily {
	m := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		m[f.GetName()] = f
	}
	return m
}

func patient(name string) map[string]any {
	return map[string]any{"given_name": name, "surname": "Haddad", "date_of_birth": "1990-02-28", "sex": "female",
		"citizenship": "JO", "hometown": "Irbid", "phone": "0790000000", "government_id": "G-1", "external_patient_id": "E-1",
		"additional_data": json.RawMessage(`{}`), "metadata": json.RawMessage(`{}`), "is_deleted": false,
		"primary_clinic_id": "c1"}
}

func open(t *testing.T, name string, cfg actors.InitConfig, clock kv.Clock) *actors.Node {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if _, err := actors.Init(dir, cfg); err != nil {
		t.Fatal(err)
	}
	n, err := actors.Open(dir, clock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// aheadClock is the wall clock plus a fixed offset.
type aheadClock time.Duration

func (c aheadClock) Now() time.Time { return time.Now().Add(time.Duration(c)) }

// serve runs n.Serve until ctx ends and returns its HTTP URL.
func serve(t *testing.T, ctx context.Context, n *actors.Node, opts actors.ServeOptions) string {
	t.Helper()
	ready := make(chan actors.Addrs, 1)
	opts.Ready = func(a actors.Addrs) error { ready <- a; return nil }
	failed := make(chan error, 1)
	go func() { failed <- n.Serve(ctx, opts) }()
	select {
	case a := <-ready:
		return a.HTTP
	case err := <-failed:
		t.Fatalf("serve: %v", err)
	}
	panic("unreachable")
}

// serveMetrics serves m on 127.0.0.1 until ctx ends and returns the
// metrics URL.
func serveMetrics(t *testing.T, ctx context.Context, m *metrics.Metrics) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go metrics.Serve(ctx, l, m.Registry())
	return "http://" + l.Addr().String() + metrics.Path
}

func request(t *testing.T, method, url string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(email, password)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.Bytes()
}

// scrape gets url and parses it as the Prometheus text format.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing %s: %v", url, err)
	}
	for name, f := range fams {
		if f.GetHelp() == "" {
			t.Errorf("%s has no HELP", name)
		}
	}
	return fams
}

// metric is the series of name with the label pairs given.
func metric(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) *dto.Metric {
	t.Helper()
	fam, ok := fams[name]
	if !ok {
		t.Fatalf("no %s", name)
	}
next:
	for _, m := range fam.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		return m
	}
	return nil
}

// expect checks a counter's or gauge's value; a series not there is 0.
func expect(t *testing.T, what string, fams map[string]*dto.MetricFamily, want float64, name string, labels ...string) {
	t.Helper()
	got := 0.0
	if _, ok := fams[name]; !ok && want != 0 {
		t.Errorf("%s: no %s", what, name)
		return
	}
	if _, ok := fams[name]; ok {
		if m := metric(t, fams, name, labels...); m != nil {
			got = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	if got != want {
		t.Errorf("%s: %s%v = %v, want %v", what, name, labels, got, want)
	}
}
