//go:build !unix

package natsjs

import "os"

// lockStore does not lock on systems without flock; Priorflow runs on Linux.
func lockStore(storeDir string) (*os.File, error) {
	return nil, os.MkdirAll(storeDir, 0o700)
}
