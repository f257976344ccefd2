package sim

import (
	"context"
	"runtime"
	"sync"
	"time"
)

// Run plays one simulation and returns its report. An error means the
// simulation could not run (bad options, a store that would not open);
// broken invariants are in the report.
func Run(o Options) (*Report, error) {
	w, err := newWorld(o)
	if err != nil {
		return nil, err
	}
	defer w.close()
	start := time.Now() // wall clock: only to report the speed
	w.run()
	r := w.report(time.Since(start))
	if o.OnRun != nil {
		o.OnRun(r)
	}
	return r, nil
}

// RunSeeds plays k simulations, seeds o.Seed to o.Seed+k-1, on up to
// GOMAXPROCS goroutines. Reports come back in seed order. When ctx
// ends no further seed starts, and RunSeeds returns ctx's error.
func RunSeeds(ctx context.Context, o Options, k int) ([]*Report, error) {
	reports := make([]*Report, k)
	errs := make([]error, k)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(k, runtime.GOMAXPROCS(0)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				so := o
				so.Seed = o.Seed + uint64(i)
				so.Trace = nil
				reports[i], errs[i] = Run(so)
			}
		}()
	}
	for i := range k {
		if ctx.Err() != nil {
			break
		}
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return reports, nil
}
