package dicomheader_test

import (
	"strings"
	"testing"

	"github.com/priorflow/priorflow/archive/dicomheader"
	"github.com/priorflow/priorflow/archive/dicomtest"
)

func TestValidUID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		uid  string
		want bool
	}{
		{"1.2.840.10008.1.2.1", true},
		{"0", true},
		{"1.0.2", true},
		{"2.25." + strings.Repeat("9", 59), true},  // 64 characters
		{"2.25." + strings.Repeat("9", 60), false}, // 65 characters
		{"", false},
		{"1..2", false},
		{".1.2", false},
		{"1.2.", false},
		{"1.02", false},
		{"01.2", false},
		{"1.2a", false},
		{"1.2 ", false},
		{"1.2\x00", false},
		{"../..", false},
		{"1.2/3", false},
		{"-1.2", false},
	}
	for _, tt := range tests {
		if got := dicomheader.ValidUID(tt.uid); got != tt.want {
			t.Errorf("ValidUID(%q) = %v, want %v", tt.uid, got, tt.want)
		}
	}
}

func TestValidUID_GeneratedUIDs(t *testing.T) {
	t.Parallel()
	for range 100 {
		if uid := dicomtest.NewUID(); !dicomheader.ValidUID(uid) {
			t.Fatalf("ValidUID(%q) = false, want true", uid)
		}
	}
}
