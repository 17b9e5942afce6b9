package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/priorflow/priorflow/archive/cdimport"
)

// progressPrinter shows an import's progress on w: a bar redrawn in place
// when w is a terminal, otherwise a plain line every interval and at the end.
type progressPrinter struct {
	w        io.Writer
	tty      bool
	interval time.Duration
	snapshot func() cdimport.Progress
	begin    time.Time
}

func newProgressPrinter(w io.Writer, interval time.Duration, snapshot func() cdimport.Progress) *progressPrinter {
	p := &progressPrinter{w: w, tty: isTerminal(w), interval: interval, snapshot: snapshot}
	if p.tty {
		p.interval = 200 * time.Millisecond
	}
	return p
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// start prints until the returned function is called, which prints the final
// state.
func (p *progressPrinter) start() (stop func()) {
	p.begin = time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(p.interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				p.print(p.snapshot(), false)
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
		p.print(p.snapshot(), true)
	}
}

func (p *progressPrinter) print(s cdimport.Progress, final bool) {
	elapsed := time.Since(p.begin)
	rate := 0.0
	if secs := elapsed.Seconds(); secs > 0 {
		rate = float64(s.BytesDone) / secs
	}
	counts := fmt.Sprintf("%d/%d files  %s/%s  %s/s", s.FilesDone, s.FilesTotal, size(s.BytesDone), size(s.BytesTotal), size(int64(rate)))
	if !p.tty {
		fmt.Fprintf(p.w, "import: %s: %s, stored %d, present %d, failed %d, not DICOM %d, %s\n",
			s.Phase, counts, s.Stored, s.AlreadyPresent, s.Failed, s.NotDICOM, elapsed.Round(time.Second))
		return
	}
	const width = 30
	filled := 0
	if s.FilesTotal > 0 {
		filled = width * s.FilesDone / s.FilesTotal
	}
	bar := strings.Repeat("#", filled) + strings.Repeat(".", width-filled)
	line := fmt.Sprintf("\r\x1b[K[%s] %s  %s", bar, counts, s.Phase)
	if s.Failed > 0 {
		line += fmt.Sprintf("  %d failed", s.Failed)
	}
	if final {
		line += "\n"
	}
	fmt.Fprint(p.w, line)
}

// size formats a byte count.
func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
