package parallel_test

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/priorflow/priorflow/internal/parallel"
)

func TestDo(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			calls := make([]atomic.Int32, n)
			if err := parallel.Do(n, func(i int) error { calls[i].Add(1); return nil }); err != nil {
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

func TestDo_LowestError(t *testing.T) {
	var done atomic.Int32
	err := parallel.Do(100, func(i int) error {
		done.Add(1)
		if i == 7 || i == 60 {
			return fmt.Errorf("step %d: %w", i, errors.ErrUnsupported)
		}
		return nil
	})
	if err == nil || err.Error() != "step 7: unsupported operation" {
		t.Errorf("Do = %v, want step 7's error", err)
	}
	if done.Load() != 100 {
		t.Errorf("%d calls returned before Do, want all 100", done.Load())
	}
}
