// Package parallel runs independent CPU-bound steps on every CPU.
package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Do calls fn(0) ... fn(n-1) on up to GOMAXPROCS goroutines and returns the
// error of the lowest i that failed, once every call has returned.
func Do(n int, fn func(i int) error) error {
	errs := make([]error, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), n) {
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
