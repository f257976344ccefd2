package proc

import (
	"bufio"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// echo serves lines back on 127.0.0.1 until the test ends.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					c.Write([]byte(line))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// roundTrip sends a line through addr and reads it back.
func roundTrip(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "ping\n" {
		return fmt.Errorf("got %q", line)
	}
	return nil
}

// TestProxyFaults: a proxy forwards faithfully without faults; inside a
// partition or a one-way cut nothing gets through and the schedule
// records the fault; dropped connections fail; after Heal it forwards
// again.
func TestProxyFaults(t *testing.T) {
	var mu sync.Mutex
	var events []Event
	p, err := NewProxy("hub1", echo(t), 1, time.Now(), func(e Event) { mu.Lock(); events = append(events, e); mu.Unlock() })
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := roundTrip(p.Addr()); err != nil {
		t.Fatalf("no faults: %v", err)
	}
	kinds := func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]int{}
		for _, e := range events {
			out[e.Kind]++
		}
		return out
	}
	for _, kind := range []string{FaultPartition, FaultCutRequests, FaultCutAnswers} {
		// A cut lasts a second: then the connection, broken, is reset.
		p.Plan(time.Now(), ConnFaults{}, []Interval{{Kind: kind, FromMs: 0, UntilMs: 1000}})
		err := roundTrip(p.Addr())
		if err == nil {
			t.Errorf("%s: a round trip went through", kind)
		}
		if kinds()[kind] != 1 {
			t.Errorf("%s: schedule %v, want it recorded once", kind, kinds())
		}
	}
	p.Plan(time.Now(), ConnFaults{Drop: 1}, nil)
	if err := roundTrip(p.Addr()); err == nil || kinds()["drop"] != 1 {
		t.Errorf("drop: round trip %v, schedule %v", err, kinds())
	}
	p.Heal()
	if err := roundTrip(p.Addr()); err != nil {
		t.Errorf("healed: %v", err)
	}
}
