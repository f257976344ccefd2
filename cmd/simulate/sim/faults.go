package sim

import (
	"github.com/clinicsync/clinicsync/actors"
)

// scheduleFaults lays out the scheduled faults of every day from the
// fault stream: partitions (a node cut off, or a clinic's internet
// down), one-way cuts, hub restarts, clock jumps, the device that goes
// offline for weeks, and the moves of switching devices. Per-call
// faults (loss, duplication, delay, crashes, second triggers) are drawn
// by the hook as calls happen.
func (w *World) scheduleFaults() {
	p := w.plan
	during := func(day int) int64 {
		return w.dayStart(day) + openAt + w.fault.Int64N(shutAt-openAt)
	}
	for day := range w.opts.Days {
		for range p.Partitions {
			t, dur := during(day), 5*minMs+w.fault.Int64N(85*minMs)
			if w.fault.IntN(3) == 0 {
				h := w.hubs[w.fault.IntN(len(w.hubs))]
				w.at(t, func() { w.cutUplink(h, true) })
				w.at(t+dur, func() { w.cutUplink(h, false) })
				continue
			}
			n := w.all[1+w.fault.IntN(len(w.all)-1)]
			w.at(t, func() { w.partition(n, true) })
			w.at(t+dur, func() { w.partition(n, false) })
		}
		for range p.OneWays {
			t, dur := during(day), 5*minMs+w.fault.Int64N(60*minMs)
			n := w.all[w.fault.IntN(len(w.all))]
			dir := []string{"in", "out"}[w.fault.IntN(2)]
			w.at(t, func() { w.cutOneWay(n, dir) })
			w.at(t+dur, func() { w.cutOneWay(n, "") })
		}
		for range p.Restarts {
			h := w.hubs[w.fault.IntN(len(w.hubs))]
			w.at(during(day), func() { w.crash(h, FaultRestart, "scheduled hub restart") })
		}
		for range p.Jumps {
			n := w.all[w.fault.IntN(len(w.all))]
			by := minMs + w.fault.Int64N(6*hourMs)
			if w.fault.IntN(2) == 0 {
				by = -by
			}
			w.at(during(day), func() { w.jump(n, by) })
		}
	}
	if p.Offline != "" {
		n := w.nodes[p.Offline]
		w.at(w.dayStart(0)+openAt+w.fault.Int64N(3*hourMs), func() {
			w.stats.fault(FaultOffline, n.name, w.clock.now)
			w.stats.cut(FaultOffline, n.name, w.clock.now, true)
			w.tracef("fault offline: %s leaves the network until the heal", n.name)
			w.setDown(n, true)
		})
	}
	for _, n := range w.devices {
		if p.Route[n.name] != "switch" {
			continue
		}
		for t := w.dayStart(0) + openAt + 20*minMs + w.fault.Int64N(hourMs); t < w.runEnd; t += 20*minMs + w.fault.Int64N(100*minMs) {
			w.at(t, func() { w.switchPeer(n, "the user picked the other peer") })
		}
	}
}

// networkFault decides what the network does to a call: lost toward a
// node cut one way or a hub whose uplink is down, or lost at random.
func (w *World) networkFault(c *call) actors.Fault {
	from, to := c.from.name, c.to.name
	switch {
	case c.to == w.cloud && (w.uplink[from] || w.plan.Route[from] == "switch" && w.uplink[c.from.peers[0]]):
		// The clinic's internet is down: the hub, and devices on its
		// LAN, cannot reach the cloud.
		return actors.DropRequest
	case w.oneway[to] == "in" || w.oneway[from] == "out":
		// Messages toward the server (or from the client) are lost:
		// the request never arrives.
		return actors.DropRequest
	case w.oneway[from] == "in" || w.oneway[to] == "out":
		// Messages toward the client are lost: the server acts, the
		// answer never arrives.
		return actors.DropResponse
	case w.chance(w.plan.Loss):
		w.stats.fault(FaultLoss, from, w.clock.now)
		if w.fault.IntN(2) == 0 {
			return actors.DropRequest
		}
		return actors.DropResponse
	}
	return actors.Deliver
}

// partition cuts a node off both ways (or reconnects it).
func (w *World) partition(n *node, down bool) {
	if down {
		w.stats.fault(FaultPartition, n.name, w.clock.now)
	}
	w.stats.cut(FaultPartition, n.name, w.clock.now, down)
	w.tracef("fault partition: %s %s", n.name, map[bool]string{true: "cut off", false: "reconnected"}[down])
	if n.name == w.plan.Offline && w.down[n.name] && !down {
		return // the offline device stays offline
	}
	w.setDown(n, down)
}

func (w *World) setDown(n *node, down bool) {
	w.net.Partition(n.name, down)
	if down {
		w.down[n.name] = true
	} else {
		delete(w.down, n.name)
	}
}

// cutUplink takes a clinic's internet down (or up): its hub and the
// devices on its LAN cannot reach the cloud; the LAN still works.
func (w *World) cutUplink(h *node, down bool) {
	w.stats.cut("uplink", h.name, w.clock.now, down)
	if down {
		w.stats.fault(FaultPartition, h.name, w.clock.now)
		w.uplink[h.name] = true
	} else {
		delete(w.uplink, h.name)
	}
	w.tracef("fault partition: %s uplink %s", h.name, map[bool]string{true: "down", false: "up"}[down])
}

// cutOneWay loses every message toward ("in") or from ("out") a node,
// or ("") restores it.
func (w *World) cutOneWay(n *node, dir string) {
	w.stats.cut(FaultOneWay, n.name, w.clock.now, dir != "")
	if dir == "" {
		delete(w.oneway, n.name)
	} else {
		w.stats.fault(FaultOneWay, n.name, w.clock.now)
		w.oneway[n.name] = dir
	}
	w.tracef("fault oneway: %s %q", n.name, dir)
}

// jump moves a node's clock by ms, forward or back.
func (w *World) jump(n *node, ms int64) {
	w.stats.fault(FaultJump, n.name, w.clock.now)
	n.clock.offset += ms
	w.tracef("fault jump: %s clock moves %+ds", n.name, ms/1000)
	w.checkCursors(n)
}

// heal ends every fault: partitions, one-way cuts and uplinks restored,
// the offline device back, the per-call faults stopped. The world
// clock moves on to the heal time (weeks later with an offline device).
func (w *World) heal() {
	w.phase = phaseSettle
	w.clock.advance(w.plan.HealGap.Milliseconds())
	w.net.Heal()
	w.stats.healed(w.clock.now)
	w.down, w.oneway, w.uplink = map[string]bool{}, map[string]string{}, map[string]bool{}
	w.tracef("heal: every fault ends")
	// Pushes still held arrive now, after every newer one.
	for len(w.late) > 0 {
		lp := w.late[0]
		w.late = w.late[1:]
		w.deliverLate(lp)
	}
}
