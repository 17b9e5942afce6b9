package parallel_test

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/priorflow/priorflow/internal/parallel"
)

func TestDo(t *testing.T) {
	for _, workers := range []int{0, 1, 2, 64} {
		for _, n := range []int{0, 1, 2, 3, 1000} {
			t.Run(fmt.Sprint(workers, " workers, ", n), func(t *testing.T) {
				calls := make([]atomic.Int32, n)
				if err := parallel.Do(workers, n, func(i int) error { calls[i].Add(1); return nil }); err != nil {
					t.Fatal(err)
				}
				for i := range calls {
					if c := calls[i].Load(); c != 1 {
						t.Fatalf("fn(%d) called %d times", i, c)
					}
				}
			})
		}
	}
}

func TestDo_LowestError(t *testing.T) {
	for _, workers := range []int{1, 0} {
		var done atomic.Int32
		err := parallel.Do(workers, 100, func(i int) error {
			done.Add(1)
			if i == 7 || i == 60 {
				return fmt.Errorf("step %d: %w", i, errors.ErrUnsupported)
			}
			return nil
		})
		if err == nil || err.Error() != "step 7: unsupported operation" {
			t.Errorf("%d workers: Do = %v, want step 7's error", workers, err)
		}
		if done.Load() != 100 {
			t.Errorf("%d workers: %d calls returned before Do, want all 100", workers, done.Load())
		}
	}
}
