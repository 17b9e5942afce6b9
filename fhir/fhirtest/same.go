package fhirtest

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/priorflow/priorflow/fhir"
)

// SameResource fails t unless got, a resource built in Go, is the message
// want that the codec parsed from JSON, and prints the same bytes: what is
// indexed from the proto and what is stored must not tell the two apart.
// what names the resource in the messages.
func SameResource(t testing.TB, codec *fhir.Codec, what string, want, got proto.Message) {
	t.Helper()
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("%s differs from the parsed JSON (-want +got):\n%s", what, diff)
	}
	if !proto.Equal(want, got) {
		t.Errorf("%s: proto.Equal: false", what)
	}
	wb, err := codec.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	gb, err := codec.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	if string(wb) != string(gb) {
		t.Errorf("%s prints differently:\n got %s\nwant %s", what, gb, wb)
	}
}
