package main

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/priorflow/priorflow/internal/database/dbtest"
)

// Two runs on one bench database would drop it under each other's servers:
// the second is refused until the first releases its claim.
func TestClaimDatabase_OneRunAtATime(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(dbtest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/priorflow_bench_claim_" + strings.ReplaceAll(t.Name(), "/", "_")
	ctx := context.Background()
	release, err := claimDatabase(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	if r2, err := claimDatabase(ctx, u.String()); err == nil {
		r2()
		t.Fatal("a second run claimed the database the first holds")
	} else if !strings.Contains(err.Error(), "another dicombench run") {
		t.Fatalf("second claim: %v", err)
	}
	other := *u
	other.Path += "_other"
	r3, err := claimDatabase(ctx, other.String())
	if err != nil {
		t.Fatalf("a run on another database: %v", err)
	}
	r3()
	release()
	r4, err := claimDatabase(ctx, u.String())
	if err != nil {
		t.Fatalf("claim after release: %v", err)
	}
	r4()
}
