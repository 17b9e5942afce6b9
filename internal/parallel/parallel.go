// Package parallel runs independent CPU-bound steps on several CPUs.
package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Workers is the goroutines Do runs for a worker count: GOMAXPROCS when
// workers is 0 or above it.
func Workers(workers int) int {
	if workers <= 0 || workers > runtime.GOMAXPROCS(0) {
		return runtime.GOMAXPROCS(0)
	}
	return workers
}

// Do calls fn(0) ... fn(n-1) on up to workers goroutines (GOMAXPROCS when
// workers is 0 or above GOMAXPROCS) and returns the error of the lowest i
// that failed, once every call has returned. With one worker the calls run
// in order on the caller's goroutine.
func Do(workers, n int, fn func(i int) error) error {
	workers = Workers(workers)
	if workers == 1 || n == 1 {
		var first error
		for i := range n {
			if err := fn(i); err != nil && first == nil {
				first = err
			}
		}
		return first
	}
	errs := make([]error, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				errs[i] = fn(i)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
