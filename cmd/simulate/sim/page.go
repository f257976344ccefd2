package sim

import (
	"cmp"
	"fmt"
	"html"
	"maps"
	"slices"
	"strings"
)

// HTML renders reports as one self-contained page: inline SVG charts
// and one inline script (see pageScript), nothing fetched from the
// network. One run gets a timeline of its nodes and its own charts;
// many runs get a table of seeds and charts over all of them.
func HTML(reports []*Report) []byte {
	var b strings.Builder
	title := fmt.Sprintf("clinicsync simulation, seed %d", reports[0].Seed)
	if len(reports) > 1 {
		title = fmt.Sprintf("clinicsync simulation, %d seeds from %d", len(reports), reports[0].Seed)
	}
	fmt.Fprintf(&b, `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>%s</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:1080px;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse}td,th{padding:2px 8px;text-align:left;border-bottom:1px solid #eee}
.bad{color:#b00020;font-weight:bold}.ok{color:#1b7f3b;font-weight:bold}
pre{background:#f6f6f6;padding:8px;font-size:12px;white-space:pre-wrap;overflow-wrap:anywhere}
code,summary,td{overflow-wrap:anywhere}
svg{display:block;margin:8px 0}svg text{font:11px system-ui,sans-serif;fill:#333}
a.violation{cursor:pointer}details{margin:4px 0}details:target>summary{background:#fde8ea}
summary{cursor:pointer;font:12px ui-monospace,monospace}
table.hist{font-size:12px;margin:4px 0 8px}tr.final td{font-weight:bold}td.diff{background:#fde8ea}
</style></head><body>
<h1>%s</h1>
`, html.EscapeString(title), html.EscapeString(title))
	if len(reports) == 1 {
		page1(&b, reports[0])
	} else {
		pageMany(&b, reports)
	}
	b.WriteString(pageScript)
	b.WriteString("</body></html>\n")
	return []byte(b.String())
}

func page1(b *strings.Builder, r *Report) {
	status := `<span class="ok">all invariants held</span>`
	if !r.OK() {
		status = fmt.Sprintf(`<span class="bad">%d violations</span>`, len(r.Violations))
	}
	o := r.Options
	fmt.Fprintf(b, "<p>%s. %d clinics × (1 hub + %d devices), %d day(s), faults <code>%s</code>, %s store.</p>\n",
		status, o.Clinics, o.Devices, o.Days, html.EscapeString(o.Faults), o.Store)
	b.WriteString("<table>\n")
	row := func(k, v string) { fmt.Fprintf(b, "<tr><th>%s</th><td>%s</td></tr>\n", k, html.EscapeString(v)) }
	row("nodes", fmt.Sprint(r.Nodes))
	row("simulated time", duration(r.SimulatedMs))
	row("rows written", fmt.Sprint(r.RowsWritten))
	row("syncs", fmt.Sprintf("%d (%s)", r.Syncs, counts(r.Outcomes)))
	row("faults injected", counts(r.Faults))
	row("conflicts merged", fmt.Sprint(r.ConflictsMerged))
	row("convergence", fmt.Sprintf("%d rounds, %s after the heal", r.ConvergenceRounds, duration(r.ConvergenceMs)))
	row("speed", fmt.Sprintf("%.1f clinic-days/s", r.ClinicDaysPerS))
	row("digest", r.Digest)
	row("replay", r.Replay)
	b.WriteString("</table>\n")
	b.WriteString("<h2>Timeline: each node over simulated time</h2>\n")
	b.WriteString("<p>Hover over a mark for what it is; click a violation for its row's history across nodes.</p>\n")
	b.WriteString(timeline(r))
	if !r.OK() {
		b.WriteString("<h2>Violations</h2>\n")
		violationList(b, r)
		b.WriteString("<h3>Options derived from the seed</h3>\n<pre>")
		b.WriteString(html.EscapeString(strings.Join(r.Plan, "\n")))
		b.WriteString("</pre>\n")
	}
	b.WriteString("<h2>Sync latency (virtual time, syncs that ended ok)</h2>\n")
	b.WriteString(bars("latency", latencyBuckets(r.stats.Latencies), "#3b6ea8"))
	b.WriteString("<h2>Convergence after the heal: rows pending upstream, and rows each settling round moved</h2>\n")
	b.WriteString("<p>Purple: rows pending upstream on all nodes, at the heal and after each round; green: rows the round's syncs pulled and pushed.</p>\n")
	b.WriteString(bars("convergence", convergence(r.stats), "#7a5195"))
	b.WriteString("<h2>Faults over time (per simulated hour of clinic time)</h2>\n")
	b.WriteString(faultChart(r))
	b.WriteString("<h2>Live rows per node at the end</h2>\n")
	var rows []bar
	for _, n := range sortedKeys(r.RowsPerNode) {
		rows = append(rows, bar{label: n, n: r.RowsPerNode[n]})
	}
	b.WriteString(hbars("rows", rows, "#2f8f6b"))
}

func pageMany(b *strings.Builder, reports []*Report) {
	var failed int
	var lat []int64
	rounds := map[int]int{}
	faults := map[string]int{}
	for _, r := range reports {
		if !r.OK() {
			failed++
		}
		lat = append(lat, r.stats.Latencies...)
		rounds[r.ConvergenceRounds]++
		for k, v := range r.Faults {
			faults[k] += v
		}
	}
	status := `<span class="ok">every seed held every invariant</span>`
	if failed > 0 {
		status = fmt.Sprintf(`<span class="bad">%d of %d seeds failed</span>`, failed, len(reports))
	}
	fmt.Fprintf(b, "<p>%s.</p>\n", status)
	b.WriteString("<h2>Sync latency over all seeds (virtual time)</h2>\n")
	b.WriteString(bars("latency", latencyBuckets(lat), "#3b6ea8"))
	b.WriteString("<h2>Settling rounds to convergence</h2>\n")
	var rb []bar
	for _, k := range slices.Sorted(maps.Keys(rounds)) {
		label := fmt.Sprintf("%d rounds", k)
		if k < 0 {
			label = "not quiet"
		}
		rb = append(rb, bar{label: label, n: rounds[k]})
	}
	b.WriteString(bars("rounds", rb, "#7a5195"))
	b.WriteString("<h2>Faults injected, all seeds</h2>\n")
	var fb []bar
	for _, k := range sortedKeys(faults) {
		fb = append(fb, bar{label: k, n: faults[k]})
	}
	b.WriteString(hbars("faults", fb, "#d45087"))
	b.WriteString("<h2>Seeds</h2>\n<table><tr><th>seed</th><th>result</th><th>rows</th><th>syncs</th><th>faults</th><th>rounds</th><th>digest</th></tr>\n")
	for _, r := range reports {
		res := `<span class="ok">ok</span>`
		if !r.OK() {
			kinds := map[string]int{}
			for _, v := range r.Violations {
				kinds[v.Kind]++
			}
			res = fmt.Sprintf(`<span class="bad">%s</span><br><code>%s</code>`, html.EscapeString(counts(kinds)), html.EscapeString(r.Replay))
		}
		fmt.Fprintf(b, "<tr><td>%d</td><td>%s</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td><code>%s</code></td></tr>\n",
			r.Seed, res, r.RowsWritten, r.Syncs, sum(r.Faults), r.ConvergenceRounds, r.Digest[:16])
	}
	b.WriteString("</table>\n")
}

type bar struct {
	label string
	n     int
	color string // "" for the chart's colour
}

// convergence pairs, for each settling round, the rows it pulled and
// pushed with the rows still pending upstream after it, after the rows
// pending at the heal.
func convergence(s Stats) []bar {
	if len(s.SettlePending) == 0 {
		return nil
	}
	out := []bar{{"heal pending", s.SettlePending[0], ""}}
	for i, p := range s.SettlePending[1:] {
		moved := 0
		if i < len(s.SettleMoved) {
			moved = s.SettleMoved[i]
		}
		out = append(out, bar{fmt.Sprintf("r%d moved", i+1), moved, "#2f8f6b"}, bar{fmt.Sprintf("r%d pending", i+1), p, ""})
	}
	return out
}

var latencyEdges = []int64{10, 30, 100, 300, 1000, 3000, 10_000, 30_000, 60_000}
var latencyLabels = []string{"<10ms", "10-30ms", "30-100ms", "0.1-0.3s", "0.3-1s", "1-3s", "3-10s", "10-30s", "30-60s", "≥1min"}

func latencyBuckets(lat []int64) []bar {
	out := make([]bar, len(latencyLabels))
	for i, l := range latencyLabels {
		out[i].label = l
	}
	for _, ms := range lat {
		i, _ := slices.BinarySearch(latencyEdges, ms+1)
		out[i].n++
	}
	return out
}

// bars draws a vertical bar chart.
func bars(name string, data []bar, color string) string {
	if len(data) == 0 {
		return "<p>(no data)</p>\n"
	}
	const h, top, bottom = 180, 16, 34
	w := max(400, 70*len(data))
	most := 1
	for _, d := range data {
		most = max(most, d.n)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg data-chart="%s" width="%d" height="%d" role="img">`, name, w, h+top+bottom)
	bw := w / len(data)
	for i, d := range data {
		bh := d.n * h / most
		x := i*bw + 4
		c := cmp.Or(d.color, color)
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"><title>%s: %d</title></rect>`,
			x, top+h-bh, bw-8, bh, c, html.EscapeString(d.label), d.n)
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%d</text>`, x+(bw-8)/2, top+h-bh-3, d.n)
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`, x+(bw-8)/2, top+h+16, html.EscapeString(d.label))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// hbars draws a horizontal bar chart.
func hbars(name string, data []bar, color string) string {
	if len(data) == 0 {
		return "<p>(no data)</p>\n"
	}
	const w, label, rowH = 700, 110, 20
	most := 1
	for _, d := range data {
		most = max(most, d.n)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg data-chart="%s" width="%d" height="%d" role="img">`, name, w, rowH*len(data)+4)
	for i, d := range data {
		bw := d.n * (w - label - 60) / most
		y := i * rowH
		fmt.Fprintf(&b, `<text x="0" y="%d">%s</text>`, y+14, html.EscapeString(d.label))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"></rect>`, label, y+3, bw, rowH-6, color)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%d</text>`, label+bw+4, y+14, d.n)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

var faultColors = []string{"#003f5c", "#2f4b7c", "#665191", "#a05195", "#d45087", "#f95d6a",
	"#ff7c43", "#ffa600", "#7a9a01", "#1b7f3b", "#5c8bd6", "#8c6d31"}

// faultChart stacks the faults of each simulated hour of the clinic
// days, one colour per kind.
func faultChart(r *Report) string {
	hours := int((r.runEnd-r.start)/hourMs) + 1
	if hours <= 0 || len(r.stats.FaultTimes) == 0 {
		return "<p>(no faults)</p>\n"
	}
	kinds := sortedKeys(r.stats.FaultTimes)
	perHour := make([]map[string]int, hours)
	most := 1
	for h := range perHour {
		perHour[h] = map[string]int{}
	}
	for _, k := range kinds {
		for _, t := range r.stats.FaultTimes[k] {
			h := int((t - r.start) / hourMs)
			if h < 0 || h >= hours {
				continue
			}
			perHour[h][k]++
		}
	}
	for _, m := range perHour {
		most = max(most, sum(m))
	}
	const ch, top, bottom = 180, 10, 30
	bw := max(6, min(40, 900/hours))
	w := max(bw*hours+20, 10+6*150)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg data-chart="faults" width="%d" height="%d" role="img">`, w, ch+top+bottom+20*((len(kinds)+5)/6))
	for h, m := range perHour {
		y := top + ch
		for _, k := range kinds {
			if m[k] == 0 {
				continue
			}
			seg := m[k] * ch / most
			y -= seg
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"><title>hour %d: %s %d</title></rect>`,
				h*bw+10, y, bw-1, seg, faultColors[slices.Index(AllFaults, k)%len(faultColors)], h, k, m[k])
		}
		if step := (60 + bw - 1) / bw; h%step == 0 {
			fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`, h*bw+10, top+ch+14, hourLabel(r.start+int64(h)*hourMs-epoch))
		}
	}
	for i, k := range kinds {
		x, y := 10+(i%6)*150, top+ch+34+(i/6)*20
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="%s"></rect><text x="%d" y="%d">%s (%d)</text>`,
			x, y-9, faultColors[slices.Index(AllFaults, k)%len(faultColors)], x+14, y, k, len(r.stats.FaultTimes[k]))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// hourLabel names the hour of a world offset: "d0 08h".
func hourLabel(ms int64) string { return fmt.Sprintf("d%d %02dh", ms/dayMs, ms%dayMs/hourMs) }

// pageScript opens the violation a link targets, and records in the
// page what it drew: on <body>, data-charts lists each chart with its
// marks of non-zero size, data-ok is set once every chart has some,
// data-errors collects script errors. A headless browser's DOM dump
// shows the three (see TestPageDraws).
const pageScript = `<script>
(function () {
  var errors = [];
  window.addEventListener("error", function (e) {
    errors.push(e.message);
    document.body.dataset.errors = errors.join("; ");
  });
  function openTarget() {
    var d = location.hash && document.getElementById(location.hash.slice(1));
    if (d && d.tagName === "DETAILS") d.open = true;
  }
  window.addEventListener("hashchange", openTarget);
  openTarget();
  var drawn = [], ok = true;
  document.querySelectorAll("svg[data-chart]").forEach(function (svg) {
    var n = 0;
    svg.querySelectorAll("rect:not(.bg),path:not(.bg),circle:not(.bg)").forEach(function (el) {
      var r = el.getBBox();
      if (r.width > 0 && r.height > 0) n++;
    });
    drawn.push(svg.dataset.chart + ":" + n);
    if (n === 0) ok = false;
  });
  document.body.dataset.charts = drawn.join(" ");
  document.body.dataset.violations = document.querySelectorAll("a.violation circle").length;
  if (ok && errors.length === 0) document.body.dataset.ok = "1";
})();
</script>
`
