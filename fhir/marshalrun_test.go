package fhir_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/fhirtest"
)

// runExamples are the R4 examples of the types runs are printed for, several
// of each, so that resources of one type differ in many ways.
var runExamples = []string{"AuditEvent-*.json", "Patient-*.json", "ImagingStudy-*.json", "Appointment-*.json",
	"Encounter-*.json", "Endpoint-*.json"}

func parsedExamples(t testing.TB, codec *fhir.Codec) map[string][]proto.Message {
	t.Helper()
	out := map[string][]proto.Message{}
	for _, pattern := range runExamples {
		for _, name := range fhirtest.Examples(t, pattern) {
			res, _, err := codec.Parse(fhirtest.Example(t, name))
			if err != nil {
				continue // a few official examples are not valid R4
			}
			typ := strings.SplitN(pattern, "-", 2)[0]
			out[typ] = append(out[typ], res)
		}
	}
	return out
}

// mixed returns a copy of a with the fields of b whose bit is set in mask
// (counting a's fields in order).
func mixed(a, b proto.Message, mask uint64) proto.Message {
	out := proto.Clone(a)
	m, from := out.ProtoReflect(), b.ProtoReflect()
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len() && i < 64; i++ {
		if mask&(1<<i) == 0 {
			continue
		}
		fd := fields.Get(i)
		if from.Has(fd) {
			m.Set(fd, proto.Clone(from.Interface()).ProtoReflect().Get(fd))
		} else {
			m.Clear(fd)
		}
	}
	return out
}

// withElement returns a copy of a whose element k of the list field f is
// b's first element of it, or nil when the two do not have such elements.
func withElement(a, b proto.Message, f, k int) proto.Message {
	fd := a.ProtoReflect().Descriptor().Fields().Get(f)
	if !fd.IsList() || fd.Kind() != protoreflect.MessageKind {
		return nil
	}
	from := b.ProtoReflect()
	if !from.Has(fd) {
		return nil
	}
	out := proto.Clone(a)
	l := out.ProtoReflect().Mutable(fd).List()
	if k >= l.Len() {
		return nil
	}
	e := proto.Clone(from.Get(fd).List().Get(0).Message().Interface())
	l.Set(k, protoreflect.ValueOfMessage(e.ProtoReflect()))
	return out
}

// runTypes are the registered types of runExamples, for their search
// parameters.
var runTypes = func() *fhir.Registry {
	reg, err := fhir.NewRegistry(fhir.AuditEvent(), fhir.Patient(), fhir.ImagingStudy(), fhir.Appointment(),
		fhir.Encounter(), fhir.Endpoint())
	if err != nil {
		panic(err)
	}
	return reg
}()

// runStats counts, over a test's runs, the search values a run said were
// the first's and those it had extracted, so that a test can tell that both
// happened.
type runStats struct{ shared, own int }

// checkRun prints run with MarshalOwnedRun and each of its resources with
// Marshal, and fails when any body differs, or when the run says a search
// parameter's values are the first's where extracting them gives others.
func checkRun(t *testing.T, codec *fhir.Codec, run []proto.Message, stats *runStats) {
	t.Helper()
	want := make([][]byte, len(run))
	owned := make([]proto.Message, len(run))
	for i, res := range run {
		b, err := codec.Marshal(res)
		if err != nil {
			t.Fatal(err)
		}
		want[i], owned[i] = b, proto.Clone(res)
	}
	r := fhir.NewRun(owned)
	rt := runTypes.Type(fhir.TypeOf(run[0]))
	for i := range run {
		if fhir.TypeOf(run[i]) != rt.Name {
			continue
		}
		for _, p := range rt.Params {
			if !r.SharesValues(i, p) {
				stats.own++
				continue
			}
			stats.shared++
			if got, first := p.Values(run[i]), p.Values(run[0]); !sameValues(got, first) {
				t.Fatalf("resource %d of the run: %s shared with the first (%v), but its own are %v", i, p.Name, first, got)
			}
		}
	}
	got, err := codec.MarshalOwnedRun(r)
	if err != nil {
		t.Fatal(err)
	}
	for i := range run {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("resource %d of the run:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
}

func sameValues(a, b []fhir.Value) bool {
	return slices.EqualFunc(a, b, func(x, y fhir.Value) bool {
		return x.Token == y.Token && x.String == y.String && x.Ref == y.Ref && x.Number == y.Number &&
			x.Date.Start.Equal(y.Date.Start) && x.Date.End.Equal(y.Date.End)
	})
}

// A run's later resources, printed as the first's JSON with what differs
// spliced in, are the bytes printing each whole gives: for every official
// example of these types taken as the first, with every other example of
// its type, each with one of its fields taken from another, with two, and
// with a field cleared.
func TestMarshalOwnedRun_SameAsMarshal(t *testing.T) {
	t.Parallel()
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	var stats runStats
	for typ, exs := range parsedExamples(t, codec) {
		for i, a := range exs {
			run := []proto.Message{a}
			for j, b := range exs {
				if i == j {
					continue
				}
				run = append(run, b)
				n := a.ProtoReflect().Descriptor().Fields().Len()
				for f := 0; f < n && f < 63; f++ {
					run = append(run, mixed(a, b, 1<<f), mixed(a, b, 1<<f|1<<(f+1)))
					for k := range 3 {
						if m := withElement(a, b, f, k); m != nil {
							run = append(run, m, mixed(m, b, 1<<((f+1)%n)))
						}
					}
				}
			}
			t.Run(typ, func(t *testing.T) { checkRun(t, codec, run, &stats) })
		}
	}
	if stats.shared == 0 || stats.own == 0 {
		t.Fatalf("search values: %d shared with the first, %d extracted; want both", stats.shared, stats.own)
	}
	t.Logf("search values: %d shared with the first, %d extracted", stats.shared, stats.own)
}

// Runs of the AuditEvents of one access: alike but for id and entities.
func TestMarshalOwnedRun_SplicesAuditEventsOfOneAccess(t *testing.T) {
	t.Parallel()
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	exs := parsedExamples(t, codec)["AuditEvent"]
	base := exs[0]
	var run []proto.Message
	entity := base.ProtoReflect().Descriptor().Fields().ByName("entity").Index()
	for k, other := range exs {
		m := mixed(base, other, fieldMask(base, "entity"))
		fhir.SetID(m, strings.Repeat("a", k+1))
		run = append(run, m)
		// As an access's records are: the same entities but the patient's.
		if m := withElement(base, other, entity, 0); m != nil {
			fhir.SetID(m, strings.Repeat("b", k+1))
			run = append(run, m)
		}
	}
	var stats runStats
	checkRun(t, codec, run, &stats)
	if stats.shared == 0 {
		t.Fatal("no search values shared with the first")
	}
}

func fieldMask(m proto.Message, names ...string) uint64 {
	var mask uint64
	fields := m.ProtoReflect().Descriptor().Fields()
	for _, n := range names {
		mask |= 1 << fields.ByName(protoreflect.Name(n)).Index()
	}
	return mask
}

func FuzzMarshalOwnedRun_SameAsMarshal(f *testing.F) {
	codec, err := fhir.NewCodec()
	if err != nil {
		f.Fatal(err)
	}
	exs := parsedExamples(f, codec)
	var types []string
	for _, p := range runExamples {
		types = append(types, strings.SplitN(p, "-", 2)[0])
	}
	f.Add(uint8(0), uint8(0), uint8(1), uint64(1<<3), uint64(1<<5|1<<9))
	f.Add(uint8(1), uint8(1), uint8(0), uint64(0xFFFF), uint64(2))
	f.Fuzz(func(t *testing.T, typ, i, j uint8, mask1, mask2 uint64) {
		list := exs[types[int(typ)%len(types)]]
		if len(list) < 2 {
			return
		}
		a, b := list[int(i)%len(list)], list[int(j)%len(list)]
		run := []proto.Message{a, mixed(a, b, mask1), mixed(b, a, mask2), mixed(a, b, mask2)}
		n := a.ProtoReflect().Descriptor().Fields().Len()
		if m := withElement(a, b, int(mask1%uint64(n)), int(mask2%4)); m != nil {
			run = append(run, m, mixed(m, b, mask2&^mask1))
		}
		checkRun(t, codec, run, &runStats{})
	})
}
