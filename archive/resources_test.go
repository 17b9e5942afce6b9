package archive

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"

	"github.com/priorflow/priorflow/archive/dicomheader"
	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/fhirtest"
	"github.com/priorflow/priorflow/fhir/postgres"
)

// resourceArchive returns the Archive the resource tests build with. One
// serves them all: building reads only its configuration and codec, and its
// store's pool never connects.
func resourceArchive(t testing.TB) *Archive {
	t.Helper()
	a, err := sharedResourceArchive()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

var sharedResourceArchive = sync.OnceValues(func() (*Archive, error) {
	codec, err := fhir.NewCodec()
	if err != nil {
		return nil, err
	}
	reg, err := fhir.NewRegistry(fhir.ImagingStudy(), fhir.Patient(), fhir.Endpoint())
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.New(context.Background(), "postgres://unused.invalid/none")
	if err != nil {
		return nil, err
	}
	store, err := postgres.New(pool, reg, codec, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	return &Archive{store: store, cfg: Config{AccessionSystem: "urn:oid:1.2.3.99", DefaultPatientIDSystem: "urn:pid"}}, nil
})

// sameResource fails unless got is the message the codec parses from
// wantJSON and prints the same bytes.
func sameResource(t *testing.T, a *Archive, wantJSON []byte, got proto.Message) {
	t.Helper()
	want, _, err := a.codec().Parse(wantJSON)
	if err != nil {
		t.Fatalf("parse the JSON: %v", err)
	}
	// The store sets versionId and lastUpdated whatever the resource held.
	at := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	fhir.SetMeta(want, 4, at)
	got = proto.Clone(got)
	fhir.SetMeta(got, 4, at)
	fhirtest.SameResource(t, a.codec(), fhir.TypeOf(got), want, got)
}

func TestImagingStudy_SameAsParsedJSON(t *testing.T) {
	t.Parallel()
	a := resourceArchive(t)
	n := func(i int) *int { return &i }
	base := func() (*studyRow, []*seriesRow) {
		st := &studyRow{patient: "MRN-1", patientFHIR: "p-1", isID: "is-1", date: "20240305", tm: "101502.25", tz: "+0100",
			acc: "ACC-7", desc: "CT CHEST W/O", referrer: "Doe^Jane^^Dr"}
		series := []*seriesRow{
			{uid: "1.2.3.4.1", modality: "CT", number: n(1), description: "AXIAL", bodyPart: "CHEST", laterality: "L",
				date: "20240305", time: "1016", instances: []instanceRow{
					{uid: "1.2.3.4.1.1", sopClass: "1.2.840.10008.5.1.4.1.1.2", number: n(1)},
					{uid: "1.2.3.4.1.2", sopClass: "1.2.840.10008.5.1.4.1.1.2"}}},
			{uid: "1.2.3.4.2", bodyPart: "foobar part", laterality: "r", date: "20240305",
				instances: []instanceRow{{uid: "1.2.3.4.2.1", sopClass: "1.2.840.10008.5.1.4.1.1.7", number: n(0)}}},
			{uid: "1.2.3.4.3", modality: "CT", instances: []instanceRow{{uid: "1.2.3.4.3.1", sopClass: "1.2.840.10008.5.1.4.1.1.2"}}},
		}
		return st, series
	}
	archiveWritten := []byte(`{"resourceType":"ImagingStudy","id":"is-1","meta":{"versionId":"3","lastUpdated":"2024-03-05T10:00:00.000Z"},` +
		`"status":"registered","subject":{"reference":"Patient/p-1"},"series":[{"uid":"9.9","modality":{"code":"MR"}}]}`)
	ownElements := []byte(`{"resourceType":"ImagingStudy","id":"is-1","meta":{"versionId":"3","lastUpdated":"2024-03-05T10:00:00.000Z",` +
		`"tag":[{"system":"urn:priorflow:tag","code":"remote"}]},"status":"registered","subject":{"reference":"Patient/p-1"},` +
		`"basedOn":[{"reference":"ServiceRequest/sr-1"}],"note":[{"text":"from hospital B"}],"procedureCode":[{"text":"CT chest"}],` +
		`"series":[{"uid":"9.9","modality":{"code":"MR"}}]}`)
	for name, tt := range map[string]struct {
		mod     func(*studyRow, []*seriesRow) []*seriesRow
		current []byte
	}{
		"new study": {},
		"no accession, description or referrer": {mod: func(st *studyRow, s []*seriesRow) []*seriesRow {
			st.acc, st.desc, st.referrer = "", "", ""
			return s
		}},
		"zone -0500":      {mod: func(st *studyRow, s []*seriesRow) []*seriesRow { st.tz = "-0500"; return s }},
		"zone +0000":      {mod: func(st *studyRow, s []*seriesRow) []*seriesRow { st.tz = "+0000"; return s }},
		"no zone":         {mod: func(st *studyRow, s []*seriesRow) []*seriesRow { st.tz = ""; return s }},
		"date only":       {mod: func(st *studyRow, s []*seriesRow) []*seriesRow { st.tm = ""; return s }},
		"bad time":        {mod: func(st *studyRow, s []*seriesRow) []*seriesRow { st.tm = "99"; return s }},
		"no date":         {mod: func(st *studyRow, s []*seriesRow) []*seriesRow { st.date = ""; return s }},
		"dotted old date": {mod: func(st *studyRow, s []*seriesRow) []*seriesRow { st.date, st.tm = "2024.03.05", ""; return s }},
		"text with spaces and accents": {mod: func(st *studyRow, s []*seriesRow) []*seriesRow {
			st.desc, s[0].description = " Thorax  sans injection ", "Coupe axiale – épaisseur 1 mm"
			return s
		}},
		"invalid UTF-8": {mod: func(st *studyRow, s []*seriesRow) []*seriesRow {
			st.desc, st.acc, s[0].description = "CT \xff\xfe chest", "A\xc3", "bad \x80 series"
			return s
		}},
		"over an archive-written version":      {current: archiveWritten},
		"over a version with its own elements": {current: ownElements},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			st, series := base()
			if tt.mod != nil {
				series = tt.mod(st, series)
			}
			got, err := a.imagingStudy("1.2.3.4", st, series, tt.current)
			if err != nil {
				t.Fatal(err)
			}
			sameResource(t, a, imagingStudyJSON(t, a, "1.2.3.4", st, series, tt.current), got)
		})
	}
}

// Negative Series and Instance Numbers are left out: the JSON the archive
// built before carried them, and the codec refused the study for it.
func TestImagingStudy_NegativeNumbersLeftOut(t *testing.T) {
	t.Parallel()
	a := resourceArchive(t)
	neg := -3
	st := &studyRow{patientFHIR: "p-1", isID: "is-1", date: "20240305"}
	series := []*seriesRow{{uid: "1.2.3.4.1", modality: "MR", number: &neg,
		instances: []instanceRow{{uid: "1.2.3.4.1.1", sopClass: "1.2.840.10008.5.1.4.1.1.4", number: &neg}}}}
	got, err := a.imagingStudy("1.2.3.4", st, series, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := got.Series[0]; s.Number != nil || s.Instance[0].Number != nil {
		t.Errorf("numbers %v, %v; want them left out", s.Number, s.Instance[0].Number)
	}
	if _, _, err := a.codec().Parse(imagingStudyJSON(t, a, "1.2.3.4", st, series, nil)); err == nil {
		t.Error("the codec now takes a negative unsignedInt; the JSON path would not have failed")
	}
}

// A value from a file that R4 does not take fails the build as it failed
// the parse.
func TestImagingStudy_RefusedAsParsed(t *testing.T) {
	t.Parallel()
	a := resourceArchive(t)
	for name, mod := range map[string]func(*studyRow, *seriesRow){
		"modality with a leading space":   func(_ *studyRow, s *seriesRow) { s.modality = " MR" },
		"series UID too long for an id":   func(_ *studyRow, s *seriesRow) { s.uid = "1." + strings.Repeat("2", 70) },
		"SOP class with a trailing space": func(_ *studyRow, s *seriesRow) { s.instances[0].sopClass = "1.2.3 " },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			st := &studyRow{patientFHIR: "p-1", isID: "is-1"}
			s := &seriesRow{uid: "1.2.3.4.1", modality: "MR", instances: []instanceRow{{uid: "1.2.3.4.1.1", sopClass: "1.2.3"}}}
			mod(st, s)
			_, err := a.imagingStudy("1.2.3.4", st, []*seriesRow{s}, nil)
			if !fhir.IsKind(err, fhir.KindUnprocessable) {
				t.Errorf("imagingStudy error %v, want unprocessable", err)
			}
			if _, _, perr := a.codec().Parse(imagingStudyJSON(t, a, "1.2.3.4", st, []*seriesRow{s}, nil)); perr == nil {
				t.Error("the codec parses the JSON: the case no longer tells anything")
			}
		})
	}
}

func TestPatient_SameAsParsedJSON(t *testing.T) {
	t.Parallel()
	a := resourceArchive(t)
	tok := fhir.Token{System: "urn:oid:1.2.3.4", Code: "MRN-1"}
	for name, h := range map[string]*dicomheader.Header{
		"full":                  {PatientName: dicomheader.ParsePersonName("Doe^John^Paul^Dr^Jr"), PatientBirthDate: "19700131", PatientSex: "M"},
		"family only":           {PatientName: dicomheader.ParsePersonName("Doe"), PatientSex: "f"},
		"given only":            {PatientName: dicomheader.ParsePersonName("^Anne Marie"), PatientSex: "O"},
		"no name, unknown sex":  {PatientBirthDate: "20010203", PatientSex: "U"},
		"year only birth date":  {PatientBirthDate: "1970"},
		"bad birth date":        {PatientBirthDate: "19701399"},
		"old dotted birth date": {PatientBirthDate: "1970.01.31"},
		"accented name":         {PatientName: dicomheader.ParsePersonName("Müller^Zoë")},
		"invalid UTF-8 name":    {PatientName: dicomheader.ParsePersonName("M\xfcller^Zo\xeb")},
		"three groups":          {PatientName: dicomheader.ParsePersonName("Yamada^Tarou=山田^太郎=やまだ^たろう")},
		"ideographic only":      {PatientName: dicomheader.ParsePersonName("=山田^太郎")},
		"empty phonetic group":  {PatientName: dicomheader.ParsePersonName("Wang^XiaoDong=王^小东=")},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := a.patient(h, tok)
			if err != nil {
				t.Fatal(err)
			}
			sameResource(t, a, patientJSON(t, h, tok), got)
		})
	}
}

// imagingStudyJSON is the JSON the archive built for the codec to parse
// before it built the proto (kept to prove the two the same).
func imagingStudyJSON(t *testing.T, a *Archive, study string, st *studyRow, series []*seriesRow, current []byte) []byte {
	t.Helper()
	is := map[string]any{}
	if current != nil {
		if err := json.Unmarshal(current, &is); err != nil {
			t.Fatal(err)
		}
	}
	loc := time.Local
	if l, err := dicomheader.ParseTimezoneOffset(st.tz); err == nil && l != nil {
		loc = l
	}
	ids := []any{map[string]any{"use": "official", "system": SystemDICOMUID, "value": "urn:oid:" + study}}
	if st.acc != "" {
		ids = append(ids, map[string]any{
			"type":   map[string]any{"coding": []any{map[string]any{"system": SystemV20203, "code": "ACSN"}}},
			"system": a.cfg.AccessionSystem, "value": st.acc})
	}
	is["resourceType"] = "ImagingStudy"
	is["id"] = st.isID
	is["identifier"] = ids
	is["status"] = "available"
	is["subject"] = map[string]any{"reference": "Patient/" + st.patientFHIR}
	is["endpoint"] = []any{map[string]any{"reference": "Endpoint/" + LocalEndpointID}}
	setOrDelete(is, "started", fhirDateTime(st.date, st.tm, loc))
	setOrDelete(is, "description", st.desc)
	if st.referrer != "" {
		is["referrer"] = map[string]any{"display": dicomheader.ParsePersonName(st.referrer).Raw}
	} else {
		delete(is, "referrer")
	}
	var modalities []any
	seenMod := map[string]bool{}
	var fs []any
	total := 0
	for _, s := range series {
		fser := map[string]any{"uid": s.uid, "numberOfInstances": len(s.instances)}
		total += len(s.instances)
		if s.number != nil {
			fser["number"] = *s.number
		}
		mod := s.modality
		if mod == "" {
			mod = "OT"
		}
		fser["modality"] = map[string]any{"system": SystemDCM, "code": mod}
		if !seenMod[mod] {
			seenMod[mod] = true
			modalities = append(modalities, map[string]any{"system": SystemDCM, "code": mod})
		}
		if s.description != "" {
			fser["description"] = s.description
		}
		if bs := bodySiteJSON(s.bodyPart); bs != nil {
			fser["bodySite"] = bs
		}
		if lat := lateralityJSON(s.laterality); lat != nil {
			fser["laterality"] = lat
		}
		if started := fhirDateTime(s.date, s.time, loc); started != "" {
			fser["started"] = started
		}
		var ins []any
		for _, in := range s.instances {
			fi := map[string]any{"uid": in.uid, "sopClass": map[string]any{"system": SystemRFC3986, "code": "urn:oid:" + in.sopClass}}
			if in.number != nil {
				fi["number"] = *in.number
			}
			ins = append(ins, fi)
		}
		fser["instance"] = ins
		fs = append(fs, fser)
	}
	is["modality"] = modalities
	is["numberOfSeries"] = len(series)
	is["numberOfInstances"] = total
	is["series"] = fs
	b, err := json.Marshal(is)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func setOrDelete(m map[string]any, k, v string) {
	if v == "" {
		delete(m, k)
		return
	}
	m[k] = v
}

func fhirDateTime(da, tm string, loc *time.Location) string {
	if da == "" {
		return ""
	}
	if tm != "" {
		if t, _, err := dicomheader.CombineDateTime(da, tm, loc); err == nil {
			return t.Format(time.RFC3339)
		}
	}
	if t, _, err := dicomheader.ParseDate(da); err == nil {
		return t.Format("2006-01-02")
	}
	return ""
}

func bodySiteJSON(part string) map[string]any {
	p := strings.ToUpper(strings.TrimSpace(part))
	if p == "" {
		return nil
	}
	if c, ok := bodyParts[p]; ok {
		return map[string]any{"system": SystemSNOMED, "code": c[0], "display": c[1]}
	}
	return map[string]any{"display": part}
}

func lateralityJSON(l string) map[string]any {
	switch strings.ToUpper(l) {
	case "L":
		return map[string]any{"system": SystemSNOMED, "code": "7771000", "display": "Left"}
	case "R":
		return map[string]any{"system": SystemSNOMED, "code": "24028007", "display": "Right"}
	}
	return nil
}

// patientJSON is the Patient JSON the archive built before the proto.
func patientJSON(t *testing.T, h *dicomheader.Header, tok fhir.Token) []byte {
	t.Helper()
	p := map[string]any{
		"resourceType": "Patient",
		"identifier":   []any{map[string]any{"system": tok.System, "value": tok.Code}},
	}
	if n := h.PatientName; !n.IsEmpty() {
		jsonName := func(n dicomheader.PersonName, representation string) map[string]any {
			name := map[string]any{"text": n.Raw}
			if representation != "" {
				name["extension"] = []any{map[string]any{"url": fhir.ENRepresentation, "valueCode": representation}}
			}
			if n.Family != "" {
				name["family"] = n.Family
			}
			if given := strings.Fields(strings.TrimSpace(n.Given + " " + n.Middle)); len(given) > 0 {
				name["given"] = given
			}
			return name
		}
		if n.Ideographic == "" && n.Phonetic == "" {
			p["name"] = []any{jsonName(n, "")}
		} else {
			var names []any
			for i, g := range strings.SplitN(n.Raw, "=", 3) {
				if pn := dicomheader.ParsePersonName(g); !pn.IsEmpty() {
					names = append(names, jsonName(pn, []string{"ABC", "IDE", "SYL"}[i]))
				}
			}
			p["name"] = names
		}
	}
	if t, prec, err := dicomheader.ParseDate(h.PatientBirthDate); err == nil && prec > 0 {
		p["birthDate"] = t.Format("2006-01-02")
	}
	switch strings.ToUpper(h.PatientSex) {
	case "M":
		p["gender"] = "male"
	case "F":
		p["gender"] = "female"
	case "O":
		p["gender"] = "other"
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The texts and codes of a file reach the ImagingStudy and Patient; built
// directly they must be refused exactly when the parsed JSON is, and equal
// it otherwise.
func FuzzResources_SameAsParsedJSON(f *testing.F) {
	f.Add("CT CHEST", "CT", "CHEST", "Doe^Jane", "Doe^John^^Dr", "MRN-1", "ACC-1", "20240305", "1015")
	f.Add(" x ", " MR", "foo", "", "\xff^\x80", "A\xc3", "", "2024", "25")
	f.Add("", "MR", "", "", "Yamada^Tarou=山田^太郎=", "J1", "", "", "")
	f.Fuzz(func(t *testing.T, desc, modality, bodyPart, referrer, name, pid, acc, date, tm string) {
		a := resourceArchive(t)
		st := &studyRow{patientFHIR: "p-1", isID: "is-1", desc: desc, referrer: referrer, acc: acc, date: date, tm: tm, tz: "+0200"}
		series := []*seriesRow{{uid: "1.2.3.4.1", modality: modality, description: desc, bodyPart: bodyPart, date: date, time: tm,
			instances: []instanceRow{{uid: "1.2.3.4.1.1", sopClass: "1.2.840.10008.5.1.4.1.1.4"}}}}
		got, err := a.imagingStudy("1.2.3.4", st, series, nil)
		want, _, perr := a.codec().Parse(imagingStudyJSON(t, a, "1.2.3.4", st, series, nil))
		if (err == nil) != (perr == nil) {
			t.Fatalf("built: %v; parsed: %v", err, perr)
		}
		if err == nil && !proto.Equal(want, got) {
			t.Fatalf("ImagingStudy differs from the parsed JSON:\n got %v\nwant %v", got, want)
		}
		h := &dicomheader.Header{PatientName: dicomheader.ParsePersonName(name), PatientBirthDate: date, PatientSex: modality}
		tok := fhir.Token{System: "urn:pid", Code: pid}
		gp, err := a.patient(h, tok)
		wp, _, perr := a.codec().Parse(patientJSON(t, h, tok))
		if (err == nil) != (perr == nil) {
			t.Fatalf("patient built: %v; parsed: %v", err, perr)
		}
		if err == nil && !proto.Equal(wp, gp) {
			t.Fatalf("Patient differs from the parsed JSON:\n got %v\nwant %v", gp, wp)
		}
	})
}
