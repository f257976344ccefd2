package main

// Peak memory of the processes a benchmark step runs: RssAnon from
// /proc/PID/status (anonymous resident memory: the heap and stacks,
// not the mapped bbolt file), sampled every sampleEvery while the step
// runs.

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"strconv"
	"sync"
	"time"
)

const sampleEvery = 20 * time.Millisecond

// sampler records the peak RssAnon of the processes it watches, by label.
type sampler struct {
	mu     sync.Mutex       // guards pids and peakKB
	pids   map[string]int   // label → pid
	peakKB map[string]int64 // label → the largest RssAnon seen, kB

	stopc chan struct{}
	done  chan struct{}
}

// startSampler starts sampling; watch adds processes, stop ends it.
func startSampler() *sampler {
	s := &sampler{pids: map[string]int{}, peakKB: map[string]int64{},
		stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(sampleEvery)
		defer tick.Stop()
		for {
			s.sampleAll()
			select {
			case <-tick.C:
			case <-s.stopc:
				return
			}
		}
	}()
	return s
}

// watch samples pid under label from now on (and at once).
func (s *sampler) watch(label string, pid int) {
	s.mu.Lock()
	s.pids[label] = pid
	s.mu.Unlock()
	s.sample(label, pid)
}

func (s *sampler) sampleAll() {
	s.mu.Lock()
	pids := make(map[string]int, len(s.pids))
	for l, p := range s.pids {
		pids[l] = p
	}
	s.mu.Unlock()
	for l, p := range pids {
		s.sample(l, p)
	}
}

// sample reads pid's RssAnon; a process that has exited is skipped.
func (s *sampler) sample(label string, pid int) {
	kb, err := rssAnonKB(pid)
	if err != nil {
		return
	}
	s.mu.Lock()
	s.peakKB[label] = max(s.peakKB[label], kb)
	s.mu.Unlock()
}

// stop ends the sampling and returns the peaks in MB, by label.
func (s *sampler) stop() map[string]float64 {
	close(s.stopc)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]float64, len(s.peakKB))
	for l, kb := range s.peakKB {
		out[l] = round(float64(kb)/1024, 1)
	}
	return out
}

// rssAnonKB returns the RssAnon line of /proc/PID/status, in kB.
func rssAnonKB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("RssAnon:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest) // "1234 kB"
		if len(f) == 0 {
			break
		}
		return strconv.ParseInt(string(f[0]), 10, 64)
	}
	return 0, fmt.Errorf("/proc/%d/status has no RssAnon line", pid)
}

// round rounds f to n decimals.
func round(f float64, n int) float64 {
	p := math.Pow(10, float64(n))
	return math.Round(f*p) / p
}
