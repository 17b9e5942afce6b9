package natsjs_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/priorflow/priorflow/internal/database/dbtest"
	"github.com/priorflow/priorflow/internal/natsjs"
)

func TestStartEmbedded_RefusesAStoreDirInUse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := natsjs.EmbeddedConfig{StoreDir: dir, Addr: "127.0.0.1:0", MaxMemory: 64 << 20, MaxStore: 1 << 30}
	first, err := natsjs.StartEmbedded(cfg, dbtest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(first.Shutdown)

	second, err := natsjs.StartEmbedded(cfg, dbtest.Logger())
	if err == nil {
		second.Shutdown()
		t.Fatal("a second embedded server started on a store dir in use")
	}
	if want := "pid " + strconv.Itoa(os.Getpid()); !strings.Contains(err.Error(), "in use") || !strings.Contains(err.Error(), want) {
		t.Errorf("error = %q, want it to say the store is in use by %s", err, want)
	}

	// Released with the server, the store serves the next one (a restart).
	first.Shutdown()
	first.Shutdown() // idempotent: the test cleanup calls it again too
	again, err := natsjs.StartEmbedded(cfg, dbtest.Logger())
	if err != nil {
		t.Fatalf("restart on the released store: %v", err)
	}
	again.Shutdown()
	if _, err := os.Stat(filepath.Join(dir, "jetstream")); err != nil {
		t.Errorf("the store was not used: %v", err)
	}
}
