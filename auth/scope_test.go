package auth

import (
	"errors"
	"testing"
)

func TestParseScope(t *testing.T) {
	for _, tc := range []struct {
		in   string
		ok   bool
		typ  string
		perm Perm
		err  bool
	}{
		{in: "system/ImagingStudy.rs", ok: true, typ: "ImagingStudy", perm: PermRead | PermSearch},
		{in: "user/*.cruds", ok: true, typ: "*", perm: PermAll},
		{in: "patient/Patient.read", ok: true, typ: "Patient", perm: PermRead | PermSearch},
		{in: "system/Appointment.write", ok: true, typ: "Appointment", perm: PermCreate | PermUpdate | PermDelete},
		{in: "system/*.*", ok: true, typ: "*", perm: PermAll},
		{in: "system/Appointment.cu", ok: true, typ: "Appointment", perm: PermCreate | PermUpdate},
		{in: "system/ImagingStudy.rs?modality=CT", ok: true, typ: "ImagingStudy", perm: PermRead | PermSearch},
		{in: "openid"},
		{in: "launch/patient"},
		{in: "fhirUser"},
		{in: "system/ImagingStudy.sr", err: true},
		{in: "system/ImagingStudy.x", err: true},
		{in: "system/ImagingStudy.", err: true},
		{in: "system/.rs", err: true},
		{in: "admin/ImagingStudy.rs", err: true},
		{in: "system/imaging.rs", err: true},
		{in: "system/ImagingStudy.rs?", err: true},
	} {
		s, ok, err := ParseScope(tc.in)
		if (err != nil) != tc.err || ok != tc.ok {
			t.Errorf("%s: ok %v err %v", tc.in, ok, err)
			continue
		}
		if ok && (s.Type != tc.typ || s.Perm != tc.perm) {
			t.Errorf("%s: type %s perm %s, want %s %s", tc.in, s.Type, s.Perm, tc.typ, tc.perm)
		}
	}
}

func TestAllow(t *testing.T) {
	scopes := func(s string) Scopes {
		ss, err := ParseScopes(s)
		if err != nil {
			t.Fatal(err)
		}
		return ss
	}
	var nilP *Principal
	if n, err := nilP.Allow("ImagingStudy", PermDelete); err != nil || !n.None() {
		t.Errorf("auth off: %v %v", n, err)
	}
	p := &Principal{Scopes: scopes("openid system/ImagingStudy.rs system/Appointment.cu")}
	if _, err := p.Allow("ImagingStudy", PermRead); err != nil {
		t.Errorf("read: %v", err)
	}
	var de *DeniedError
	if _, err := p.Allow("ImagingStudy", PermUpdate); !errors.As(err, &de) {
		t.Errorf("update with rs: %v", err)
	}
	if _, err := p.Allow("Patient", PermRead); !errors.As(err, &de) {
		t.Errorf("other type: %v", err)
	}
	if _, err := p.Allow("Appointment", PermCreate); err != nil {
		t.Errorf("create: %v", err)
	}

	pt := &Principal{Scopes: scopes("patient/*.rs"), Patient: "p1"}
	if n, err := pt.Allow("ImagingStudy", PermSearch); err != nil || n.Patient != "p1" {
		t.Errorf("patient scope: %+v %v", n, err)
	}
	if _, err := (&Principal{Scopes: scopes("patient/*.rs")}).Allow("ImagingStudy", PermSearch); !errors.As(err, &de) {
		t.Errorf("patient scope without context: %v", err)
	}

	q := &Principal{Scopes: scopes("system/ImagingStudy.rs?modality=CT")}
	if n, err := q.Allow("ImagingStudy", PermSearch); err != nil || n.Query.Get("modality") != "CT" {
		t.Errorf("query scope: %+v %v", n, err)
	}
	wide := &Principal{Scopes: scopes("system/ImagingStudy.rs?modality=CT user/ImagingStudy.rs"), Patient: "p1"}
	if n, err := wide.Allow("ImagingStudy", PermRead); err != nil || !n.None() {
		t.Errorf("the widest scope wins: %+v %v", n, err)
	}
}

func TestWithin(t *testing.T) {
	limit, _ := ParseScopes("system/ImagingStudy.rs system/Appointment.cruds")
	for in, want := range map[string]bool{
		"system/ImagingStudy.rs":     true,
		"system/ImagingStudy.r":      true,
		"system/ImagingStudy.rds":    false,
		"system/Patient.r":           false,
		"system/Appointment.cu":      true,
		"system/*.rs":                false,
		"patient/ImagingStudy.rs":    true,
		"system/ImagingStudy.rs?a=b": true,
	} {
		s, _, err := ParseScope(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Within(limit); got != want {
			t.Errorf("%s within %s: %v", in, limit, got)
		}
	}
}

func FuzzParseScopes(f *testing.F) {
	for _, s := range []string{"system/ImagingStudy.rs", "patient/*.read openid", "user/Patient.cruds?identifier=a|b", "system/x.y?%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ss, err := ParseScopes(s)
		if err != nil {
			return
		}
		for _, sc := range ss {
			if sc.Perm == 0 || sc.Perm&^PermAll != 0 {
				t.Fatalf("%q: perm %d", s, sc.Perm)
			}
		}
		again, err := ParseScopes(ss.String())
		if err != nil || len(again) != len(ss) {
			t.Fatalf("%q does not parse back: %v", ss.String(), err)
		}
	})
}
