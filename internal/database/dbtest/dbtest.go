// Package dbtest gives each test its own PostgreSQL database, cloned from a
// migrated template so that tests run in parallel without sharing state.
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/priorflow/priorflow/internal/database"
)

// AdminURL is the server used for tests: TEST_DATABASE_URL, or the local
// server's maintenance database.
func AdminURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

var (
	templateOnce sync.Once
	templateName string
	templateErr  error
)

// template migrates one template database per test process. Its name
// carries a random suffix so that concurrently running test binaries (go test
// runs packages in parallel) never clone a template while another migrates it.
func template(ctx context.Context) (string, error) {
	templateOnce.Do(func() {
		templateName = "pf_tmpl_" + randomSuffix()
		admin, err := pgx.Connect(ctx, AdminURL())
		if err != nil {
			templateErr = fmt.Errorf("connect to test server: %w", err)
			return
		}
		defer admin.Close(ctx)
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+templateName); err != nil {
			templateErr = fmt.Errorf("create template: %w", err)
			return
		}
		pool, err := pgxpool.New(ctx, urlFor(templateName))
		if err != nil {
			templateErr = err
			return
		}
		defer pool.Close()
		templateErr = database.Migrate(ctx, pool)
	})
	return templateName, templateErr
}

func urlFor(db string) string {
	cfg, err := pgx.ParseConfig(AdminURL())
	if err != nil {
		panic(err)
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, db)
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// NewDatabase returns the URL of a fresh migrated database, dropped when the
// test ends.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	ctx := context.Background()
	tmpl, err := template(ctx)
	if err != nil {
		tb.Fatalf("dbtest: %v", err)
	}
	name := "pf_test_" + randomSuffix()
	admin, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		tb.Fatalf("dbtest: connect: %v", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, tmpl)); err != nil {
		tb.Fatalf("dbtest: clone template: %v", err)
	}
	tb.Cleanup(func() {
		ctx := context.Background()
		admin, err := pgx.Connect(ctx, AdminURL())
		if err != nil {
			tb.Errorf("dbtest: drop %s: %v", name, err)
			return
		}
		defer admin.Close(ctx)
		if _, err := admin.Exec(ctx, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", name)); err != nil {
			tb.Errorf("dbtest: drop %s: %v", name, err)
		}
	})
	return urlFor(name)
}

// NewPool returns a pool on a fresh migrated database, closed when the test
// ends.
func NewPool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	pool, err := pgxpool.New(context.Background(), NewDatabase(tb))
	if err != nil {
		tb.Fatalf("dbtest: %v", err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// Logger is a logger that discards, for stores under test.
func Logger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// Main runs a package's tests and then drops its template database; a
// package whose tests use this one calls it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	DropTemplates()
	os.Exit(code)
}

// DropTemplates removes the template database of this process; call it
// from TestMain after m.Run (Main does).
func DropTemplates() {
	if templateName == "" {
		return
	}
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		return
	}
	defer admin.Close(ctx)
	_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+templateName+" WITH (FORCE)")
}
