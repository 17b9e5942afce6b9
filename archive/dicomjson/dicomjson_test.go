package dicomjson_test

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive/dicomheader"
	"github.com/priorflow/priorflow/archive/dicomjson"
	"github.com/priorflow/priorflow/archive/dicomtest"
)

func header(t *testing.T, name string) *dicomheader.Header {
	t.Helper()
	b, err := os.ReadFile(dicomtest.TestdataPath(t, name))
	if err != nil {
		t.Fatal(err)
	}
	h, err := dicomheader.Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func bulkURI(p dicomjson.Path) string { return "https://archive.example/bulk/" + p.String() }

// generic decodes JSON into maps for checks of the raw shape.
func generic(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, b)
	}
	return m
}

func TestEncode_CTFileShapes(t *testing.T) {
	t.Parallel()
	h := header(t, dicomtest.FileCTMulti)
	b, err := dicomjson.Marshal(h.Dataset, dicomjson.Options{BulkDataURI: bulkURI})
	if err != nil {
		t.Fatal(err)
	}
	m := generic(t, b)
	tests := []struct {
		key  string
		want string // the attribute re-marshaled
	}{
		{"00080060", `{"Value":["CT"],"vr":"CS"}`},
		{"0020000D", `{"Value":["1.3.6.1.4.1.5962.1.2.10.1166562673.14401"],"vr":"UI"}`},
		{"00100010", `{"Value":[{"Alphabetic":"Perfusion^MCA Stroke"}],"vr":"PN"}`},
		{"00080090", `{"Value":[{"Alphabetic":"Thomas^Albert"}],"vr":"PN"}`},
		{"00200011", `{"Value":[3],"vr":"IS"}`},
		{"00280008", `{"Value":[2],"vr":"IS"}`},
		{"00280010", `{"Value":[512],"vr":"US"}`},
		{"00080020", `{"Value":["20061219"],"vr":"DA"}`},
		{"00081030", `{"vr":"LO"}`},
		{"00080201", `{"Value":["-0500"],"vr":"SH"}`},
	}
	for _, tt := range tests {
		got, err := json.Marshal(m[tt.key])
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != tt.want {
			t.Errorf("%s = %s, want %s", tt.key, got, tt.want)
		}
	}
	for k := range m {
		if strings.HasPrefix(k, "0002") {
			t.Errorf("File Meta Information attribute %s written", k)
		}
	}
	if _, ok := m["7FE00010"]; ok {
		t.Errorf("Pixel Data written although the header data set has none")
	}
}

func TestEncode_IsDeterministicAndSorted(t *testing.T) {
	t.Parallel()
	h := header(t, dicomtest.FilePET1)
	a, err := dicomjson.Marshal(h.Dataset, dicomjson.Options{BulkDataURI: bulkURI})
	if err != nil {
		t.Fatal(err)
	}
	// Shuffle the top-level order; the output must not change.
	rev := dicom.Dataset{Elements: append([]*dicom.Element(nil), h.Dataset.Elements...)}
	for i, j := 0, len(rev.Elements)-1; i < j; i, j = i+1, j-1 {
		rev.Elements[i], rev.Elements[j] = rev.Elements[j], rev.Elements[i]
	}
	b, err := dicomjson.Marshal(rev, dicomjson.Options{BulkDataURI: bulkURI})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("output depends on element order")
	}
	var keys []string
	d := json.NewDecoder(bytes.NewReader(a))
	d.Token() // {
	for d.More() {
		k, _ := d.Token()
		keys = append(keys, k.(string))
		var skip json.RawMessage
		d.Decode(&skip)
	}
	for i := 1; i < len(keys); i++ {
		if keys[i-1] >= keys[i] {
			t.Fatalf("keys not ascending: %s then %s", keys[i-1], keys[i])
		}
	}
}

func TestEncode_PETSequencesAndBulkData(t *testing.T) {
	t.Parallel()
	h := header(t, dicomtest.FilePET1)
	b, err := dicomjson.Marshal(h.Dataset, dicomjson.Options{BulkDataURI: bulkURI})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := dicomjson.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	o := objs[0]
	items := o.Sequence(tag.EnergyWindowRangeSequence)
	if len(items) == 0 {
		t.Fatalf("EnergyWindowRangeSequence has no items")
	}
	if a, ok := items[0].Attribute(tag.EnergyWindowLowerLimit); !ok || a.VR != "DS" || len(a.Value) != 1 {
		t.Errorf("EnergyWindowLowerLimit in item = %+v, want one DS value", a)
	}
	if a, _ := o.Attribute(tag.RescaleSlope); a.VR != "DS" || len(a.Value) != 1 || a.Value[0] != json.Number("9.12329") {
		t.Errorf("RescaleSlope = %+v, want DS [9.12329] as a number", a)
	}
	// The icon image's Pixel Data is nested in Icon Image Sequence.
	icon := o.Sequence(tag.IconImageSequence)
	if len(icon) != 1 {
		t.Fatalf("IconImageSequence has %d items, want 1", len(icon))
	}
	px, _ := icon[0].Attribute(tag.PixelData)
	if want := "https://archive.example/bulk/00880200/0/7FE00010"; px.BulkDataURI != want {
		t.Errorf("icon PixelData BulkDataURI = %q, want %q", px.BulkDataURI, want)
	}
}

func TestEncode_FullDatasetPixelDataAndInlineBinary(t *testing.T) {
	t.Parallel()
	ds, err := dicom.ParseFile(dicomtest.TestdataPath(t, dicomtest.FileMR), nil, dicom.SkipPixelData())
	if err != nil {
		t.Fatal(err)
	}
	withURI, err := dicomjson.Marshal(ds, dicomjson.Options{BulkDataURI: bulkURI})
	if err != nil {
		t.Fatal(err)
	}
	m := generic(t, withURI)
	got, _ := json.Marshal(m["7FE00010"])
	if want := `{"BulkDataURI":"https://archive.example/bulk/7FE00010","vr":"OW"}`; string(got) != want {
		t.Errorf("PixelData = %s, want %s", got, want)
	}
	noURI, err := dicomjson.Marshal(ds, dicomjson.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, _ = json.Marshal(generic(t, noURI)["7FE00010"])
	if want := `{"vr":"OW"}`; string(got) != want {
		t.Errorf("PixelData without BulkDataURI func = %s, want %s", got, want)
	}

	small := binaryElement(t, tag.Tag{Group: 0x0009, Element: 0x1010}, []byte{1, 2, 3, 4})
	large := binaryElement(t, tag.Tag{Group: 0x0009, Element: 0x1011}, bytes.Repeat([]byte{7}, 2000))
	b, err := dicomjson.Marshal(dicom.Dataset{Elements: []*dicom.Element{large, small}}, dicomjson.Options{BulkDataURI: bulkURI})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"00091010":{"vr":"OB","InlineBinary":"AQIDBA=="},"00091011":{"vr":"OB","BulkDataURI":"https://archive.example/bulk/00091011"}}`; string(b) != want {
		t.Errorf("binary values = %s, want %s", b, want)
	}
}

func TestEncode_IncludeFilter(t *testing.T) {
	t.Parallel()
	h := header(t, dicomtest.FileMR)
	b, err := dicomjson.Marshal(h.Dataset, dicomjson.Options{Include: map[tag.Tag]bool{
		tag.StudyInstanceUID: true, tag.Modality: true, tag.PatientName: true,
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"00080060":{"vr":"CS","Value":["MR"]},"00100010":{"vr":"PN"},` +
		`"0020000D":{"vr":"UI","Value":["1.3.6.1.4.1.14519.5.2.1.9823.1001.108958069993282969141944803554"]}}`
	if string(b) != want {
		t.Errorf("Marshal(includefield) =\n%s\nwant\n%s", b, want)
	}
}

func binaryElement(t *testing.T, tg tag.Tag, b []byte) *dicom.Element {
	t.Helper()
	v, err := dicom.NewValue(b)
	if err != nil {
		t.Fatal(err)
	}
	return &dicom.Element{Tag: tg, RawValueRepresentation: "OB", ValueRepresentation: tag.VRBytes, Value: v}
}

func el(t *testing.T, tg tag.Tag, vr string, v any) *dicom.Element {
	t.Helper()
	e, err := dicom.NewElement(tg, v)
	if err != nil {
		t.Fatal(err)
	}
	e.RawValueRepresentation = vr
	return e
}

func TestEncode_ValueRepresentations(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		el   *dicom.Element
		want string
	}{
		{"IS with padding and sign", el(t, tag.SeriesNumber, "IS", []string{" +12 ", "3"}), `{"vr":"IS","Value":[12,3]}`},
		{"invalid IS kept as string", el(t, tag.SeriesNumber, "IS", []string{"12.5"}), `{"vr":"IS","Value":["12.5"]}`},
		{"DS forms", el(t, tag.RescaleSlope, "DS", []string{"0010", ".5", "-1e3"}), `{"vr":"DS","Value":[10,0.5,-1000]}`},
		{"invalid DS kept as string", el(t, tag.RescaleSlope, "DS", []string{"NaN", "abc"}), `{"vr":"DS","Value":["NaN","abc"]}`},
		{"empty value in multi-valued", el(t, tag.WindowCenter, "DS", []string{"1", ""}), `{"vr":"DS","Value":[1,null]}`},
		{"empty", el(t, tag.AccessionNumber, "SH", []string{""}), `{"vr":"SH"}`},
		{"PN groups", el(t, tag.PatientName, "PN", []string{"Yamada^Tarou=山田^太郎=やまだ^たろう"}), `{"vr":"PN","Value":[{"Alphabetic":"Yamada^Tarou","Ideographic":"山田^太郎","Phonetic":"やまだ^たろう"}]}`},
		{"PN ideographic only", el(t, tag.PatientName, "PN", []string{"=山田^太郎"}), `{"vr":"PN","Value":[{"Ideographic":"山田^太郎"}]}`},
		{"LT keeps backslash", el(t, tag.Tag{Group: 0x0020, Element: 0x4000}, "LT", []string{`a\b `}), `{"vr":"LT","Value":["a\\b"]}`},
		{"AT as tags", el(t, tag.Tag{Group: 0x0020, Element: 0x5000}, "AT", []int{0x0010, 0x0020, 0x7fe0, 0x0010}), `{"vr":"AT","Value":["00100020","7FE00010"]}`},
		{"FD", el(t, tag.Tag{Group: 0x0018, Element: 0x9087}, "FD", []float64{1.5, 2}), `{"vr":"FD","Value":[1.5,2]}`},
		{"US", el(t, tag.Rows, "US", []int{512}), `{"vr":"US","Value":[512]}`},
		{"empty sequence", el(t, tag.ReferencedImageSequence, "SQ", [][]*dicom.Element{}), `{"vr":"SQ"}`},
		{"sequence", el(t, tag.ReferencedImageSequence, "SQ", [][]*dicom.Element{{el(t, tag.ReferencedSOPInstanceUID, "UI", []string{"1.2.3"})}, {}}),
			`{"vr":"SQ","Value":[{"00081155":{"vr":"UI","Value":["1.2.3"]}},{}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := dicomjson.Marshal(dicom.Dataset{Elements: []*dicom.Element{tt.el}}, dicomjson.Options{})
			if err != nil {
				t.Fatal(err)
			}
			want := `{"` + dicomjson.Key(tt.el.Tag) + `":` + tt.want + `}`
			if string(b) != want {
				t.Errorf("Marshal() =\n%s\nwant\n%s", b, want)
			}
		})
	}
}

func TestUnmarshal_QIDOResponse(t *testing.T) {
	t.Parallel()
	resp := `[{"0020000D":{"vr":"UI","Value":["1.2.3"]},"00100010":{"vr":"PN","Value":[{"Alphabetic":"DOE^JANE","Ideographic":"山田"}]},` +
		`"00201208":{"vr":"IS","Value":[42]},"00200011":{"vr":"IS","Value":["7"]},"00080061":{"vr":"CS","Value":["CT","PT"]},` +
		`"00081030":{"vr":"LO"},"00081190":{"vr":"UR","Value":["https://pacs/studies/1.2.3"]}},{"0020000D":{"vr":"UI","Value":["4.5"]}}]`
	objs, err := dicomjson.Unmarshal([]byte(resp))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(objs), 2; got != want {
		t.Fatalf("len(objects) = %d, want %d", got, want)
	}
	o := objs[0]
	if got, want := o.String(tag.StudyInstanceUID), "1.2.3"; got != want {
		t.Errorf("String(StudyInstanceUID) = %q, want %q", got, want)
	}
	if diff := cmp.Diff([]string{"CT", "PT"}, o.Strings(tag.ModalitiesInStudy)); diff != "" {
		t.Errorf("Strings(ModalitiesInStudy) mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(dicomjson.PersonName{Alphabetic: "DOE^JANE", Ideographic: "山田"}, o.PersonName(tag.PatientName)); diff != "" {
		t.Errorf("PersonName mismatch (-want +got):\n%s", diff)
	}
	if got, want := o.String(tag.PatientName), "DOE^JANE=山田"; got != want {
		t.Errorf("String(PatientName) = %q, want %q", got, want)
	}
	if n, ok := o.Int(tag.NumberOfStudyRelatedInstances); !ok || n != 42 {
		t.Errorf("Int(NumberOfStudyRelatedInstances) = %d, %v, want 42, true", n, ok)
	}
	if n, ok := o.Int(tag.SeriesNumber); !ok || n != 7 {
		t.Errorf("Int(SeriesNumber) from a string = %d, %v, want 7, true", n, ok)
	}
	if _, ok := o.Int(tag.StudyDescription); ok {
		t.Errorf("Int(StudyDescription) ok = true for an empty attribute")
	}
	if got := o.String(tag.AccessionNumber); got != "" {
		t.Errorf("String(absent) = %q, want empty", got)
	}
}

// Senders put in JSON what their DICOM held, padding included (Orthanc
// serves a modality " CT" as it was stored); a reader takes the value the
// standard means.
func TestStrings_InsignificantPadding(t *testing.T) {
	t.Parallel()
	cases := []struct {
		tag  tag.Tag
		vr   string
		raw  string
		want string
	}{
		{tag.Modality, "CS", " CT ", "CT"},
		{tag.PatientID, "LO", "  B100 ", "B100"},
		{tag.AccessionNumber, "SH", " A1", "A1"},
		{tag.StudyInstanceUID, "UI", "1.2.3\x00", "1.2.3"},
		{tag.StudyDate, "DA", "20250101 ", "20250101"},
		{tag.SeriesNumber, "IS", " 7 ", "7"},
		{tag.StationAETitle, "AE", " AE1 ", "AE1"},
		// Leading spaces of a text are part of it.
		{tag.ImageComments, "LT", "  indented  ", "  indented"},
		{tag.TextValue, "UT", " a ", " a"},
		{tag.RetrieveURL, "UR", "https://pacs/x ", "https://pacs/x"},
		// Inner spaces are the value's own.
		{tag.StudyDescription, "LO", " CT  CHEST ", "CT  CHEST"},
	}
	for _, c := range cases {
		body, _ := json.Marshal([]map[string]any{{dicomjson.Key(c.tag): map[string]any{"vr": c.vr, "Value": []string{c.raw}}}})
		objs, err := dicomjson.Unmarshal(body)
		if err != nil {
			t.Fatalf("%s %q: %v", c.vr, c.raw, err)
		}
		if got := objs[0].String(c.tag); got != c.want {
			t.Errorf("%s %q read as %q, want %q", c.vr, c.raw, got, c.want)
		}
	}
	body := `[{"00200011":{"vr":"IS","Value":[" 7 "]}}]`
	objs, err := dicomjson.Unmarshal([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := objs[0].Int(tag.SeriesNumber); !ok || n != 7 {
		t.Errorf("Int of IS \" 7 \" = %d, %v, want 7, true", n, ok)
	}
}

func TestUnmarshal_RoundTripsEncode(t *testing.T) {
	t.Parallel()
	for _, name := range dicomtest.Files {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := header(t, name)
			b, err := dicomjson.Marshal(h.Dataset, dicomjson.Options{BulkDataURI: bulkURI})
			if err != nil {
				t.Fatal(err)
			}
			objs, err := dicomjson.Unmarshal(b)
			if err != nil {
				t.Fatalf("Unmarshal(Marshal()): %v", err)
			}
			again, err := json.Marshal(objs[0])
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(generic(t, b), generic(t, again)); diff != "" {
				t.Errorf("re-marshaled object differs (-encoded +re-marshaled):\n%s", diff)
			}
			if got, want := objs[0].String(tag.SOPInstanceUID), h.SOPInstanceUID; got != want {
				t.Errorf("SOPInstanceUID = %q, want %q", got, want)
			}
		})
	}
}

func TestUnmarshal_Invalid(t *testing.T) {
	t.Parallel()
	deep := strings.Repeat(`{"00081115":{"vr":"SQ","Value":[`, 40) + "{}" + strings.Repeat("]}}", 40)
	for name, in := range map[string]string{
		"not JSON":           `{`,
		"trailing data":      `{} {}`,
		"number":             `42`,
		"bad key":            `{"0020000G":{"vr":"UI"}}`,
		"short key":          `{"0020000":{"vr":"UI"}}`,
		"missing vr":         `{"0020000D":{"Value":["1"]}}`,
		"lower-case vr":      `{"0020000D":{"vr":"ui"}}`,
		"Value not array":    `{"0020000D":{"vr":"UI","Value":"1"}}`,
		"PN not object":      `{"00100010":{"vr":"PN","Value":["DOE"]}}`,
		"SQ item not object": `{"00081115":{"vr":"SQ","Value":["x"]}}`,
		"bad InlineBinary":   `{"00091010":{"vr":"OB","InlineBinary":"!!"}}`,
		"object value":       `{"00080060":{"vr":"CS","Value":[{}]}}`,
		"too deep":           deep,
	} {
		if _, err := dicomjson.Unmarshal([]byte(in)); err == nil || !strings.Contains(err.Error(), dicomjson.ErrInvalid.Error()) {
			t.Errorf("Unmarshal(%s) error = %v, want ErrInvalid", name, err)
		}
	}
}

func FuzzUnmarshal(f *testing.F) {
	f.Add([]byte(`[{"0020000D":{"vr":"UI","Value":["1.2.3"]},"00100010":{"vr":"PN","Value":[{"Alphabetic":"A^B"}]}}]`))
	f.Add([]byte(`{"00081115":{"vr":"SQ","Value":[{"00081150":{"vr":"UI","Value":["1.2"]}},null]},"00201208":{"vr":"IS","Value":[1,null]}}`))
	f.Add([]byte(`{"7FE00010":{"vr":"OB","BulkDataURI":"http://x/1"},"00091010":{"vr":"OB","InlineBinary":"AQID"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		objs, err := dicomjson.Unmarshal(b)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode and decode to the same objects.
		for _, o := range objs {
			for k := range o {
				_ = o.String(tag.Tag{}) // helpers never panic
				_ = o.Strings(tag.Tag{})
				_ = k
			}
			enc, err := json.Marshal(o)
			if err != nil {
				t.Fatalf("Marshal(decoded): %v", err)
			}
			back, err := dicomjson.Unmarshal(enc)
			if err != nil {
				t.Fatalf("Unmarshal(Marshal(decoded)) = %v\n%s", err, enc)
			}
			if diff := cmp.Diff([]dicomjson.Object{o}, back, cmp.Comparer(func(a, b json.Number) bool { return a.String() == b.String() })); diff != "" {
				t.Fatalf("round trip mismatch (-want +got):\n%s", diff)
			}
		}
	})
}

// BenchmarkMarshal prints the header of an MR image as the archive stores
// it for /metadata at every instance it indexes.
func BenchmarkMarshal(b *testing.B) {
	raw, err := os.ReadFile(dicomtest.TestdataPath(b, dicomtest.FileMR))
	if err != nil {
		b.Fatal(err)
	}
	h, err := dicomheader.Parse(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := dicomjson.Marshal(h.Dataset, dicomjson.Options{BulkDataURI: bulkURI}); err != nil {
			b.Fatal(err)
		}
	}
}
