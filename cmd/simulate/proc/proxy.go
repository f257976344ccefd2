package proc

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy is a fault-injecting TCP proxy in front of one listener. Its
// faults are of two sorts. Intervals, planned from the seed before the
// run: a partition (new connections refused, open ones reset) and a
// one-way cut (bytes in one direction discarded; the connections that
// lost bytes are reset when the cut ends, since their stream is
// broken). Per connection, drawn from the proxy's seeded stream as
// connections arrive: dropped at once, reset after some bytes, or every
// chunk delayed. Every fault it injects is recorded as an Event.
type Proxy struct {
	Name   string
	Target string // host:port of the listener behind it
	ln     net.Listener
	record func(Event)

	// mu guards everything below.
	mu        sync.Mutex
	start     time.Time
	rng       *rand.Rand
	rates     ConnFaults
	intervals []Interval
	healed    bool
	conns     map[*pipe]bool
	closed    bool
}

// ConnFaults are the per-connection fault rates, each a probability.
type ConnFaults struct {
	Drop  float64 // closed as soon as accepted
	Reset float64 // reset after a random number of bytes
	Delay float64 // every chunk held 20-200ms
}

// Interval is a planned fault over a span of the run, in ms from its
// start: a partition, or a one-way cut toward the target (requests
// lost) or from it (answers lost).
type Interval struct {
	Kind     string `json:"kind"` // FaultPartition, FaultCutRequests or FaultCutAnswers
	FromMs   int64  `json:"from_ms"`
	UntilMs  int64  `json:"until_ms"`
	announce bool   // recorded as it begins
}

// Interval kinds.
const (
	FaultPartition   = "partition"
	FaultCutRequests = "cut-requests" // one way: toward the target
	FaultCutAnswers  = "cut-answers"  // one way: from the target
)

// NewProxy listens on 127.0.0.1 (a free port) and forwards to target.
func NewProxy(name, target string, seed uint64, start time.Time, record func(Event)) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proc: proxy %s: %w", name, err)
	}
	p := &Proxy{Name: name, Target: target, ln: ln, start: start, record: record,
		rng: rand.New(rand.NewPCG(seed, 0x70726f78)), conns: map[*pipe]bool{}}
	go p.accept()
	return p, nil
}

// Addr is where clients reach the proxy (host:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Plan sets the per-connection fault rates and the intervals, in ms
// from start.
func (p *Proxy) Plan(start time.Time, rates ConnFaults, intervals []Interval) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.start = start
	p.rates = rates
	p.intervals = append([]Interval(nil), intervals...)
	for i := range p.intervals {
		p.intervals[i].announce = true
	}
}

// Heal ends every fault: from now on the proxy forwards faithfully.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.healed = true
}

// Close stops accepting and closes every open connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = map[*pipe]bool{}
	p.mu.Unlock()
	p.ln.Close()
	for c := range conns {
		c.close(false)
	}
}

// now is the time since start in ms (p.mu held).
func (p *Proxy) now() int64 { return time.Since(p.start).Milliseconds() }

// active returns the interval of this kind in force now, if any, and
// records its start the first time it is seen.
func (p *Proxy) active(kind string) (Interval, bool) {
	if p.healed {
		return Interval{}, false
	}
	now := p.now()
	for i := range p.intervals {
		iv := &p.intervals[i]
		if iv.Kind == kind && now >= iv.FromMs && now < iv.UntilMs {
			if iv.announce {
				iv.announce = false
				p.record(Event{AtMs: now, Node: p.Name, Kind: kind, Detail: fmt.Sprintf("until %dms", iv.UntilMs)})
			}
			return *iv, true
		}
	}
	return Interval{}, false
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.serve(c)
	}
}

// serve decides a connection's fate and forwards it.
func (p *Proxy) serve(c net.Conn) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.Close()
		return
	}
	if _, cut := p.active(FaultPartition); cut {
		p.mu.Unlock()
		reset(c)
		return
	}
	faulty := !p.healed
	r := p.rng.Float64()
	resetAfter, delay := int64(-1), time.Duration(0)
	switch rates := p.rates; {
	case !faulty:
	case r < rates.Drop:
		p.record(Event{AtMs: p.now(), Node: p.Name, Kind: "drop", Detail: "connection closed on accept"})
		p.mu.Unlock()
		reset(c)
		return
	case r < rates.Drop+rates.Reset:
		resetAfter = 64 + p.rng.Int64N(16<<10)
		p.record(Event{AtMs: p.now(), Node: p.Name, Kind: "reset", Detail: fmt.Sprintf("after %d bytes", resetAfter)})
	case r < rates.Drop+rates.Reset+rates.Delay:
		delay = time.Duration(20+p.rng.IntN(180)) * time.Millisecond
		p.record(Event{AtMs: p.now(), Node: p.Name, Kind: "delay", Detail: fmt.Sprintf("%s a chunk", delay)})
	}
	p.mu.Unlock()
	t, err := net.DialTimeout("tcp", p.Target, 5*time.Second)
	if err != nil {
		reset(c) // the node is down: the client sees a refusal
		return
	}
	pp := &pipe{client: c, target: t, resetAfter: resetAfter, delay: delay}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		pp.close(false)
		return
	}
	p.conns[pp] = true
	p.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.copy(pp, t, c, FaultCutRequests, &pp.lostRequests) }()
	go func() { defer wg.Done(); p.copy(pp, c, t, FaultCutAnswers, &pp.lostAnswers) }()
	wg.Wait()
	pp.close(false)
	p.mu.Lock()
	delete(p.conns, pp)
	p.mu.Unlock()
}

// copy forwards src to dst until either side ends, applying the faults
// of the direction named by cut; lost notes bytes it discarded.
func (p *Proxy) copy(pp *pipe, dst, src net.Conn, cut string, lost *atomic.Bool) {
	buf := make([]byte, 8<<10)
	for {
		src.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		n, err := src.Read(buf)
		p.mu.Lock()
		_, partitioned := p.active(FaultPartition)
		_, cutNow := p.active(cut)
		healed := p.healed
		p.mu.Unlock()
		if partitioned {
			pp.close(true)
			return
		}
		if lost.Load() && !cutNow {
			pp.close(true) // bytes were discarded: the stream is broken
			return
		}
		if n > 0 {
			if cutNow {
				lost.Store(true)
			} else {
				if pp.delay > 0 && !healed {
					time.Sleep(pp.delay) // the fault itself: this chunk is late
				}
				if pp.count(int64(n)) && !healed {
					pp.close(true)
					return
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					pp.close(false)
					return
				}
			}
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, io.EOF) {
				if tc, ok := dst.(*net.TCPConn); ok {
					tc.CloseWrite() // the other direction goes on
					return
				}
			}
			pp.close(false)
			return
		}
	}
}

// reset closes c with a TCP reset.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// pipe is one proxied connection.
type pipe struct {
	client, target net.Conn
	resetAfter     int64 // reset once this many bytes went through (-1: never)
	delay          time.Duration
	// Bytes discarded by a one-way cut, by direction.
	lostRequests, lostAnswers atomic.Bool

	mu    sync.Mutex // guards bytes and done
	bytes int64
	done  bool
}

// count adds n forwarded bytes and reports whether the connection is
// due for its reset.
func (pp *pipe) count(n int64) bool {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	pp.bytes += n
	return pp.resetAfter >= 0 && pp.bytes >= pp.resetAfter
}

// close closes both sides, with a reset when rst is set.
func (pp *pipe) close(rst bool) {
	pp.mu.Lock()
	done := pp.done
	pp.done = true
	pp.mu.Unlock()
	if done {
		return
	}
	if rst {
		reset(pp.client)
		reset(pp.target)
		return
	}
	pp.client.Close()
	pp.target.Close()
}
