package sim

import (
	"fmt"
	"html"
	"slices"
	"strings"
)

// The timeline: a lane per node over simulated time, in two segments
// with a break between them: the clinic days (from setup to the end of
// the last night), then the settling after the heal (hours or weeks
// later, when nothing happens in between).
const (
	tlWidth  = 1060
	tlLabel  = 74  // lane labels
	tlTop    = 34  // axis labels above the lanes
	tlLane   = 26  // lane height
	tlGap    = 30  // the break between the segments
	tlSettle = 150 // width of the settling segment
)

// Colours of sync outcomes, cut kinds and point faults.
var (
	outcomeColors = map[string]string{"ok": "#1b7f3b", "error": "#c62828", "skipped": "#f9a825"}
	cutColors     = map[string]string{FaultPartition: "#757575", "uplink": "#ff9800", FaultOneWay: "#7e57c2", FaultOffline: "#263238"}
	cutNames      = map[string]string{FaultPartition: "cut off", "uplink": "uplink down", FaultOneWay: "one-way cut", FaultOffline: "offline"}
)

// axis maps world ms to x on the two segments.
type axis struct {
	start, runEnd, heal, end int64
	a0, a1, b0, b1           float64
}

func newAxis(r *Report) axis {
	ax := axis{start: r.start, runEnd: r.runEnd, heal: r.stats.Timeline.HealAt, end: r.start + r.SimulatedMs}
	ax.a0, ax.b1 = tlLabel, tlWidth-10
	if ax.heal == 0 || ax.heal < ax.runEnd { // no heal: one segment
		ax.heal, ax.a1, ax.b0 = ax.end, ax.b1, ax.b1
		ax.runEnd = ax.end
		return ax
	}
	ax.b0 = ax.b1 - tlSettle
	ax.a1 = ax.b0 - tlGap
	return ax
}

func (ax axis) x(t int64) float64 {
	if t < ax.heal || ax.b0 == ax.b1 {
		f := float64(t-ax.start) / float64(max(1, ax.runEnd-ax.start))
		return ax.a0 + min(1, max(0, f))*(ax.a1-ax.a0)
	}
	f := float64(t-ax.heal) / float64(max(1, ax.end-ax.heal))
	return ax.b0 + min(1, f)*(ax.b1-ax.b0)
}

// timeline draws the lanes: cuts behind, then syncs, point faults and
// violations (links to their row's history below).
func timeline(r *Report) string {
	tl := r.stats.Timeline
	ax := newAxis(r)
	lanes := slices.Clone(r.nodes)
	lane := map[string]int{}
	for i, n := range lanes {
		lane[n] = i
	}
	laneOf := func(node string) int {
		if i, ok := lane[node]; ok {
			return i
		}
		lane[node] = len(lanes) // violations about no one node
		lanes = append(lanes, "all nodes")
		return lane[node]
	}
	for i, v := range r.Violations {
		if i < len(tl.ViolationAt) {
			laneOf(v.Node)
		}
	}
	h := tlTop + tlLane*len(lanes) + 70
	y := func(l int) int { return tlTop + l*tlLane }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg data-chart="timeline" width="%d" height="%d" role="img">`, tlWidth, h)
	for i, n := range lanes {
		if i%2 == 0 {
			fmt.Fprintf(&b, `<rect class="bg" x="%d" y="%d" width="%d" height="%d" fill="#f5f7fa"></rect>`, tlLabel, y(i), tlWidth-10-tlLabel, tlLane)
		}
		fmt.Fprintf(&b, `<text x="0" y="%d">%s</text>`, y(i)+17, html.EscapeString(n))
	}
	axisTicks(&b, ax, y(len(lanes)))
	for _, c := range tl.Cuts {
		x0, x1 := ax.x(c.From), ax.x(c.To)
		until := clockText(c.To - epoch)
		if c.To == 0 || c.To == tl.HealAt {
			x1, until = ax.a1+tlGap/2, "the heal"
		}
		fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s" fill-opacity="0.28"><title>%s %s from %s until %s</title></rect>`,
			x0, y(lane[c.Node]), max(1, x1-x0), tlLane, cutColors[c.Kind], c.Node, cutNames[c.Kind], clockText(c.From-epoch), until)
	}
	for _, s := range tl.Syncs {
		x0 := ax.x(s.From)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="8" fill="%s"><title>%s %s sync with %s at %s, %d ms: %s, pulled %d, pushed %d</title></rect>`,
			x0, y(lane[s.Node])+9, max(1.5, ax.x(s.To)-x0), outcomeColors[s.Outcome], s.Node, s.Trigger, s.Peer, clockText(s.From-epoch), s.To-s.From, s.Outcome, s.Pulled, s.Pushed)
	}
	for _, m := range tl.Marks {
		l, ok := lane[m.Node]
		if !ok {
			continue
		}
		fmt.Fprintf(&b, `<g><title>%s %s at %s</title>%s</g>`, m.Node, m.Kind, clockText(m.At-epoch), markShape(m.Kind, ax.x(m.At), y(l)))
	}
	violationMarks(&b, r, ax, laneOf, y)
	timelineLegend(&b, h-30)
	b.WriteString("</svg>\n")
	return b.String()
}

// markShape draws a point fault: a crash as a triangle, a restart as
// one upside down, a clock jump as a diamond, a switch as a tick on the
// lane's top, the per-call faults (loss, dup, delay, concurrent) as
// ticks at its foot.
func markShape(kind string, x float64, top int) string {
	switch kind {
	case FaultCrash:
		return fmt.Sprintf(`<path d="M%.1f %dl-5 9h10z" fill="#b71c1c"></path>`, x, top+15)
	case FaultRestart:
		return fmt.Sprintf(`<path d="M%.1f %dl-5 -9h10z" fill="#1565c0"></path>`, x, top+24)
	case FaultJump:
		return fmt.Sprintf(`<path d="M%.1f %dl5 5-5 5-5-5z" fill="#00838f"></path>`, x, top+3)
	case FaultSwitch:
		return fmt.Sprintf(`<rect x="%.1f" y="%d" width="1.5" height="6" fill="#6d4c41"></rect>`, x, top)
	case FaultSkew, FaultOffline, FaultPartition, FaultOneWay:
		return "" // skew is the node's, not a moment's; the others are cuts
	}
	return fmt.Sprintf(`<rect x="%.1f" y="%d" width="1" height="4" fill="#9e9e9e"></rect>`, x, top+tlLane-4)
}

// violationMarks draws a red dot per violation where and when it was
// found; violations within 16 px of each other on a lane share one dot,
// which shows their number. A dot's tooltip holds the rows' histories;
// it links to the first violation's entry below.
func violationMarks(b *strings.Builder, r *Report, ax axis, laneOf func(string) int, y func(int) int) {
	type spot struct{ lane, x int }
	groups := map[spot][]int{}
	var order []spot
	for i, v := range r.Violations {
		if i >= len(r.stats.Timeline.ViolationAt) || i >= maxListed {
			break
		}
		s := spot{laneOf(v.Node), int(ax.x(r.stats.Timeline.ViolationAt[i]))/16*16 + 8}
		if groups[s] == nil {
			order = append(order, s)
		}
		groups[s] = append(groups[s], i)
	}
	for _, s := range order {
		var tip strings.Builder
		for j, i := range groups[s] {
			if j == 4 {
				fmt.Fprintf(&tip, "... and %d more (click for all)\n", len(groups[s])-4)
				break
			}
			v := r.Violations[i]
			tip.WriteString(v.String() + "\n")
			if h := r.rows[v.Row]; h != nil {
				tip.WriteString(h.text() + "\n")
			}
		}
		label := "!"
		if n := len(groups[s]); n > 1 {
			label = fmt.Sprint(n)
		}
		fmt.Fprintf(b, `<a class="violation" href="#v-%d"><title>%s</title><circle cx="%d" cy="%d" r="8" fill="#b00020" stroke="#fff"></circle><text x="%d" y="%d" text-anchor="middle" style="fill:#fff;font:bold 9px sans-serif">%s</text></a>`,
			groups[s][0], html.EscapeString(strings.TrimSpace(tip.String())), s.x, y(s.lane)+13, s.x, y(s.lane)+16, label)
	}
}

// axisTicks labels the hours of the clinic days and the seconds of the
// settling, and marks the break between them.
func axisTicks(b *strings.Builder, ax axis, bottom int) {
	hours := (ax.runEnd - ax.start) / hourMs
	step := max(1, (hours+12)/13) * hourMs
	first := ax.start + (hourMs-(ax.start-epoch)%hourMs)%hourMs
	for t := first; t <= ax.runEnd; t += step {
		x := ax.x(t)
		if ax.b0 != ax.b1 && x > ax.a1-20 {
			break // its label would run into the settling's
		}
		fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"></line><text x="%.1f" y="%d" text-anchor="middle">%s</text>`,
			x, tlTop-4, x, bottom, x, tlTop-8, hourLabel(t-epoch))
	}
	if ax.b0 == ax.b1 {
		return
	}
	gap := duration(ax.heal - ax.runEnd)
	if d := ax.heal - ax.runEnd; d >= dayMs {
		gap = fmt.Sprintf("%dd", d/dayMs)
	}
	fmt.Fprintf(b, `<text x="%.1f" y="12" text-anchor="end">the heal, %s later, and the settling</text>`, ax.b1, gap)
	fmt.Fprintf(b, `<path d="M%.1f %dl6 -8M%.1f %dl6 -8" stroke="#555"></path>`, ax.a1+8, bottom+4, ax.a1+14, bottom+4)
	span := ax.end - ax.heal
	sec := int64(1000)
	for _, s := range []int64{1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600} {
		if sec = s * 1000; span/sec <= 3 {
			break
		}
	}
	for t := ax.heal; t <= ax.end; t += sec {
		x := ax.x(t)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"></line><text x="%.1f" y="%d" text-anchor="middle">+%s</text>`,
			x, tlTop-4, x, bottom, x, tlTop-8, duration(t-ax.heal))
	}
}

func timelineLegend(b *strings.Builder, y int) {
	x := tlLabel
	item := func(shape, label string) {
		fmt.Fprintf(b, `<g transform="translate(%d,%d)">%s<text x="16" y="9">%s</text></g>`, x, y, shape, label)
		x += 16 + 7*len(label) + 14
		if x > tlWidth-160 {
			x, y = tlLabel, y+18
		}
	}
	sw := func(c, op string) string {
		return fmt.Sprintf(`<rect class="bg" x="0" y="0" width="12" height="10" fill="%s" fill-opacity="%s"></rect>`, c, op)
	}
	for _, o := range []string{"ok", "error", "skipped"} {
		item(sw(outcomeColors[o], "1"), "sync "+o)
	}
	for _, k := range []string{FaultPartition, "uplink", FaultOneWay, FaultOffline} {
		item(sw(cutColors[k], "0.28"), cutNames[k])
	}
	item(`<path class="bg" d="M6 0l-5 9h10z" fill="#b71c1c"></path>`, "crash")
	item(`<path class="bg" d="M6 9l-5 -9h10z" fill="#1565c0"></path>`, "restart")
	item(`<path class="bg" d="M6 0l5 5-5 5-5-5z" fill="#00838f"></path>`, "clock jump")
	item(sw("#6d4c41", "1"), "switch")
	item(sw("#9e9e9e", "1"), "loss, dup, delay, concurrent")
	item(`<circle class="bg" cx="6" cy="5" r="6" fill="#b00020"></circle>`, "violation")
}

// maxListed bounds the violations listed on the page.
const maxListed = 50

// violationList lists the violations, each with the model's history
// of its row and every node's final value of the columns written.
func violationList(b *strings.Builder, r *Report) {
	for i, v := range r.Violations {
		if i == maxListed {
			fmt.Fprintf(b, "<p>... %d more violations (see the text report)</p>\n", len(r.Violations)-maxListed)
			break
		}
		fmt.Fprintf(b, `<details id="v-%d"><summary>%s</summary>`, i, html.EscapeString(v.String()))
		if v.History != "" {
			fmt.Fprintf(b, "<pre>%s</pre>", html.EscapeString(v.History))
		}
		if h := r.rows[v.Row]; h != nil {
			h.html(b)
		}
		b.WriteString("</details>\n")
	}
}

// text is the row's history in a few lines, for a tooltip.
func (h *RowHistory) text() string {
	var b strings.Builder
	if h.Unknown {
		fmt.Fprintf(&b, "%s: the model has no such row", h.Row)
	} else {
		fmt.Fprintf(&b, "%s created by %s at %s", h.Row, h.Creator, clockText(h.CreatedAt-epoch))
	}
	for i, w := range h.Writes {
		if i == 8 {
			fmt.Fprintf(&b, "\n  ... %d more writes", len(h.Writes)-8)
			break
		}
		fmt.Fprintf(&b, "\n  %s %s %s=%s", clockText(w.At-epoch), w.Node, w.Col, w.Value)
	}
	if h.DeletedBy != "" {
		fmt.Fprintf(&b, "\n  deleted by %s at %s", h.DeletedBy, clockText(h.DeletedAt-epoch))
	}
	var finals []string
	for _, f := range h.Finals {
		s := f.Node + " " + f.State
		if f.State == "live" {
			var vals []string
			for j, c := range h.Cols {
				vals = append(vals, c+"="+f.Values[j])
			}
			s = f.Node + " " + strings.Join(vals, " ")
		}
		finals = append(finals, s)
	}
	b.WriteString("\nat the end: " + strings.Join(finals, "; "))
	return b.String()
}

// html renders the row's writes and each node's final values as two
// tables; a final value that differs from the cloud's is marked.
func (h *RowHistory) html(b *strings.Builder) {
	e := html.EscapeString
	if h.Unknown {
		fmt.Fprintf(b, "<p>The model has no row %s.</p>", e(h.Row))
	} else {
		fmt.Fprintf(b, "<p>%s: created by %s at %s", e(h.Row), e(h.Creator), clockText(h.CreatedAt-epoch))
		if h.DeletedBy != "" {
			fmt.Fprintf(b, ", deleted by %s at %s", e(h.DeletedBy), clockText(h.DeletedAt-epoch))
		}
		b.WriteString(".</p>\n")
	}
	if len(h.Writes) > 0 {
		b.WriteString(`<table class="hist"><tr><th>when</th><th>write</th><th>by</th><th>column</th><th>value</th></tr>`)
		for _, w := range h.Writes {
			cls := ""
			if w.Final {
				cls = ` class="final"`
			}
			fmt.Fprintf(b, "<tr%s><td>%s</td><td>#%d</td><td>%s</td><td>%s</td><td>%s</td></tr>", cls, clockText(w.At-epoch), w.ID, e(w.Node), e(w.Col), e(w.Value))
		}
		b.WriteString("</table>\n")
	}
	b.WriteString(`<table class="hist"><tr><th>node</th><th>at the end</th>`)
	for _, c := range h.Cols {
		fmt.Fprintf(b, "<th>%s</th>", e(c))
	}
	b.WriteString("</tr>")
	var cloud []string
	for _, f := range h.Finals {
		if f.Node == cloudName {
			cloud = f.Values
		}
	}
	for _, f := range h.Finals {
		fmt.Fprintf(b, "<tr><td>%s</td><td>%s</td>", e(f.Node), e(f.State))
		for j := range h.Cols {
			v, cls := "", ""
			if j < len(f.Values) {
				v = f.Values[j]
				if j >= len(cloud) || cloud[j] != v {
					cls = ` class="diff"`
				}
			}
			fmt.Fprintf(b, "<td%s>%s</td>", cls, e(v))
		}
		b.WriteString("</tr>")
	}
	b.WriteString("</table>\n")
}
