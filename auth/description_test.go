package auth_test

import (
	"testing"

	"github.com/priorflow/priorflow/auth"
)

func TestErrorDescription(t *testing.T) {
	for in, want := range map[string]string{
		`token for "x" expired`:          `token for 'x' expired`,
		`C:\keys`:                        `C:/keys`,
		"line\r\nWWW-Authenticate: evil": "lineWWW-Authenticate: evil",
		"patient Müller":                 "patient Mller",
		"":                               "",
	} {
		if got := auth.ErrorDescription(in); got != want {
			t.Errorf("ErrorDescription(%q) = %q, want %q", in, got, want)
		}
	}
}
