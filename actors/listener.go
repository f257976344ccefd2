package actors

// Connection caps: a net.Listener that bounds the connections it hands
// out, in all and per client address.

import (
	"log/slog"
	"net"
	"sync"
	"time"
)

// Connection cap defaults (ServeConfig).
const (
	DefaultMaxConns        = 1024
	DefaultMaxConnsPerAddr = 64
)

// capLogEvery spaces the log lines that say connections were refused.
const capLogEvery = time.Minute

// LimitListener wraps l so that at most maxConns of its connections are
// open at once and at most perAddr from one client IP address (0 or
// less: no such cap).
//
// Over the global cap, Accept waits until a connection closes: the
// connections past it wait in the kernel's listen backlog, and are
// served late rather than refused (idle keep-alive connections give
// their place back after the server's idle timeout). Over the
// per-address cap, the new connection is closed as soon as it is
// accepted, without a response: one client cannot take every place,
// and a client over its share sees a reset connection and retries
// later. Behind a reverse proxy every connection comes from the proxy:
// raise or lift the per-address cap there.
//
// log, when not nil, gets a line when connections are refused, at most
// one a minute.
func LimitListener(l net.Listener, maxConns, perAddr int, log *slog.Logger) net.Listener {
	ll := &limitListener{Listener: l, perAddr: perAddr, addrs: map[string]int{}, done: make(chan struct{}), log: log}
	if maxConns > 0 {
		ll.slots = make(chan struct{}, maxConns)
	}
	return ll
}

type limitListener struct {
	net.Listener
	slots   chan struct{} // one token per open connection; nil: no global cap
	perAddr int
	log     *slog.Logger

	mu      sync.Mutex     // guards addrs, refused and logged
	addrs   map[string]int // open connections by client IP
	refused int            // over the per-address cap, since the last log line
	logged  time.Time

	done      chan struct{} // closed by Close: Accept stops waiting
	closeOnce sync.Once
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		if l.slots != nil {
			select {
			case l.slots <- struct{}{}:
			case <-l.done:
				return nil, net.ErrClosed
			}
		}
		c, err := l.Listener.Accept()
		if err != nil {
			l.free()
			return nil, err
		}
		host := clientIP(c.RemoteAddr())
		if l.admit(host) {
			return &limitConn{Conn: c, l: l, host: host}, nil
		}
		c.Close()
		l.free()
	}
}

// admit counts a connection from host, unless host is at its cap.
func (l *limitListener) admit(host string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perAddr > 0 && l.addrs[host] >= l.perAddr {
		l.refused++
		if now := time.Now(); l.log != nil && now.Sub(l.logged) >= capLogEvery {
			l.log.Warn("connections refused: over the per-address cap", "client", host, "cap", l.perAddr, "refused", l.refused)
			l.logged, l.refused = now, 0
		}
		return false
	}
	l.addrs[host]++
	return true
}

// release forgets a closed connection from host.
func (l *limitListener) release(host string) {
	l.mu.Lock()
	if l.addrs[host]--; l.addrs[host] <= 0 {
		delete(l.addrs, host)
	}
	l.mu.Unlock()
	l.free()
}

// free gives back a global slot.
func (l *limitListener) free() {
	if l.slots != nil {
		<-l.slots
	}
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// clientIP is the IP address of a remote address (the whole address
// when it has no port).
func clientIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// limitConn gives its places back when it is closed (once).
type limitConn struct {
	net.Conn
	l    *limitListener
	host string
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.host) })
	return err
}
