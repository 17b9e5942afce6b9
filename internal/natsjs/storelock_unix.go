//go:build unix

package natsjs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// storeLockName is the file in the store directory whose lock marks the
// directory as in use.
const storeLockName = "priorflow-nats.lock"

// lockStore takes an exclusive lock on storeDir for this process.
//
// nats-server does not lock its file store: a second server on the same
// directory (an API started while an old one still runs on the same data
// dir) would write the same message blocks, and its readiness wait would
// only time out on the taken port. The kernel drops a flock with the last
// descriptor, so a crashed process never leaves the directory locked.
func lockStore(storeDir string) (*os.File, error) {
	if err := os.MkdirAll(storeDir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded nats: store dir: %w", err)
	}
	path := filepath.Join(storeDir, storeLockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := ""
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid := strings.TrimSpace(string(b)); pid != "" {
				holder = " (pid " + pid + ")"
			}
		}
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("embedded nats: store dir %s is in use by another process%s; stop it or set a different data dir", storeDir, holder)
		}
		return nil, fmt.Errorf("embedded nats: lock %s: %w", path, err)
	}
	// The pid is for the message above only; the lock is the flock.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}
