package dicomweb_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive/dicomjson"
	"github.com/priorflow/priorflow/archive/dicomtest"
)

// qidoStudies is the archive every QIDO-RS test searches:
//
//	ctHead   P1 (HOSP-A) DOE^JANE      2021-03-04 10:30  CT, 2 series x 2   ACC-A  "CT HEAD"  referrer Thomas^Albert, born 19500704
//	mrPelvis P1 (HOSP-A) DOE^JANE      2023-06-07 14:00  MR 1x1 + OT 1x1    ACC-B  "MR PELVIS"
//	petBody  P2 (HOSP-B) MÜLLER^HANS   2020-12-31 08:00  PT 1x1             ACC-C  ""
type qidoStudies struct {
	*server
	ctHead, mrPelvis, mrPelvisOT, petBody *dicomtest.Study
}

func newQIDOStudies(t *testing.T) *qidoStudies {
	t.Helper()
	s := &qidoStudies{server: newServer(t)}
	g := dicomtest.NewGenerator(t)
	must := func(st *dicomtest.Study, err error) *dicomtest.Study {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	s.ctHead = must(g.Study(dicomtest.WithPatient("P1", "HOSP-A", "DOE^JANE"), dicomtest.WithModality("CT"),
		dicomtest.WithSeries(2), dicomtest.WithInstancesPerSeries(2), dicomtest.WithAccession("ACC-A"),
		dicomtest.WithStudyDescription("CT HEAD"), dicomtest.WithStudyDate(time.Date(2021, 3, 4, 10, 30, 0, 0, time.UTC))))
	mrDate := time.Date(2023, 6, 7, 14, 0, 0, 0, time.UTC)
	s.mrPelvis = must(g.Study(dicomtest.WithPatient("P1", "HOSP-A", "DOE^JANE"), dicomtest.WithModality("MR"),
		dicomtest.WithAccession("ACC-B"), dicomtest.WithStudyDescription("MR PELVIS"), dicomtest.WithStudyDate(mrDate)))
	s.mrPelvisOT = must(g.Study(dicomtest.WithPatient("P1", "HOSP-A", "DOE^JANE"), dicomtest.WithModality("OT"),
		dicomtest.WithAccession("ACC-B"), dicomtest.WithStudyDescription("MR PELVIS"), dicomtest.WithStudyDate(mrDate),
		dicomtest.WithStudyInstanceUID(s.mrPelvis.StudyInstanceUID)))
	s.petBody = must(g.Study(dicomtest.WithPatient("P2", "HOSP-B", "MÜLLER^HANS"), dicomtest.WithModality("PT"),
		dicomtest.WithAccession("ACC-C"), dicomtest.WithStudyDate(time.Date(2020, 12, 31, 8, 0, 0, 0, time.UTC))))
	s.store(t, s.ctHead, s.mrPelvis, s.mrPelvisOT, s.petBody)
	return s
}

// search runs a QIDO-RS search that must succeed and returns its objects
// (none for 204).
func (s *server) search(t *testing.T, path string) []dicomjson.Object {
	t.Helper()
	resp, body := s.get(t, path)
	switch resp.StatusCode {
	case http.StatusNoContent:
		if len(body) != 0 {
			t.Errorf("GET %s: 204 with a body", path)
		}
		return nil
	case http.StatusOK:
	default:
		t.Fatalf("GET %s: %s %s", path, resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/dicom+json" {
		t.Errorf("GET %s: Content-Type %q", path, ct)
	}
	objs, err := dicomjson.Unmarshal(body)
	if err != nil {
		t.Fatalf("GET %s: %v\n%s", path, err, body)
	}
	return objs
}

func uidsOf(objs []dicomjson.Object, t tag.Tag) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.String(t))
	}
	return out
}

func TestQIDO_SearchForStudies_Matching(t *testing.T) {
	t.Parallel()
	s := newQIDOStudies(t)
	ct, mr, pet := s.ctHead.StudyInstanceUID, s.mrPelvis.StudyInstanceUID, s.petBody.StudyInstanceUID
	tests := []struct {
		name  string
		query string
		want  []string // StudyInstanceUIDs, newest first
	}{
		{"no keys lists every study", "", []string{mr, ct, pet}},
		{"PatientID", "PatientID=P1", []string{mr, ct}},
		{"PatientID by tag", "00100020=P2", []string{pet}},
		{"PatientID unknown", "PatientID=P9", nil},
		{"PatientID is case-sensitive", "PatientID=p1", nil},
		{"PatientID wildcard", "PatientID=P*", []string{mr, ct, pet}},
		{"PatientID star alone is universal", "PatientID=*", []string{mr, ct, pet}},
		{"PatientID and IssuerOfPatientID", "PatientID=P1&IssuerOfPatientID=HOSP-A", []string{mr, ct}},
		{"PatientID of another issuer", "PatientID=P1&IssuerOfPatientID=HOSP-B", nil},
		{"PatientName exact", "PatientName=DOE^JANE", []string{mr, ct}},
		{"PatientName is case-insensitive", "PatientName=doe^jane", []string{mr, ct}},
		{"PatientName trailing star", "PatientName=DOE*", []string{mr, ct}},
		{"PatientName question mark", "PatientName=D?E^JANE", []string{mr, ct}},
		{"PatientName accent-insensitive", "PatientName=muller*", []string{pet}},
		{"PatientName with accent", "PatientName=MÜLLER^HANS", []string{pet}},
		{"PatientName prefix without wildcard", "PatientName=DOE", nil},
		{"PatientName percent is literal", "PatientName=D%25", nil},
		{"PatientBirthDate", "PatientBirthDate=19500704", []string{ct}},
		{"PatientBirthDate range", "PatientBirthDate=19000101-19991231", []string{ct}},
		{"StudyDate single", "StudyDate=20210304", []string{ct}},
		{"StudyDate range", "StudyDate=20210101-20231231", []string{mr, ct}},
		{"StudyDate open start", "StudyDate=-20210304", []string{ct, pet}},
		{"StudyDate open end", "StudyDate=20210305-", []string{mr}},
		{"StudyDate year", "StudyDate=2020", []string{pet}},
		{"StudyDate to year", "StudyDate=-2021", []string{ct, pet}},
		{"StudyDate from year", "StudyDate=2021-", []string{mr, ct}},
		{"StudyTime single at minute precision", "StudyTime=1030", []string{ct}},
		{"StudyTime range", "StudyTime=0700-1100", []string{ct, pet}},
		{"StudyTime open end", "StudyTime=1200-", []string{mr}},
		{"StudyDate and StudyTime", "StudyDate=2021-&StudyTime=-1200", []string{ct}},
		{"AccessionNumber", "AccessionNumber=ACC-B", []string{mr}},
		{"AccessionNumber wildcard", "AccessionNumber=ACC-?", []string{mr, ct, pet}},
		{"ModalitiesInStudy", "ModalitiesInStudy=CT", []string{ct}},
		{"ModalitiesInStudy of a second series", "ModalitiesInStudy=OT", []string{mr}},
		{"ModalitiesInStudy list", "ModalitiesInStudy=PT,OT", []string{mr, pet}},
		{"ModalitiesInStudy backslash list", `ModalitiesInStudy=PT\CT`, []string{ct, pet}},
		{"StudyInstanceUID", "StudyInstanceUID=" + ct, []string{ct}},
		{"StudyInstanceUID comma list", "StudyInstanceUID=" + ct + "," + pet, []string{ct, pet}},
		{"StudyInstanceUID backslash list", "StudyInstanceUID=" + ct + `\` + mr, []string{mr, ct}},
		{"StudyInstanceUID repeated", "StudyInstanceUID=" + ct + "&StudyInstanceUID=" + pet, []string{ct, pet}},
		{"ReferringPhysicianName", "ReferringPhysicianName=THOMAS^ALBERT", []string{ct}},
		{"ReferringPhysicianName wildcard", "ReferringPhysicianName=thom*", []string{ct}},
		{"StudyDescription", "StudyDescription=CT HEAD", []string{ct}},
		{"StudyDescription wildcard", "StudyDescription=*PELVIS", []string{mr}},
		{"StudyDescription is case-sensitive", "StudyDescription=ct head", nil},
		{"keys combine with AND", "PatientID=P1&ModalitiesInStudy=MR", []string{mr}},
		{"fuzzymatching is accepted", "PatientName=DOE^JANE&fuzzymatching=true", []string{mr, ct}},
		{"empty value is universal", "PatientID=&AccessionNumber=", []string{mr, ct, pet}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := uidsOf(s.search(t, "/studies?"+strings.NewReplacer(`\`, "%5C", " ", "%20").Replace(tt.query)), tag.StudyInstanceUID)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("studies?%s (-want +got):\n%s", tt.query, diff)
			}
		})
	}
}

func TestQIDO_SearchForStudies_ReturnAttributes(t *testing.T) {
	t.Parallel()
	s := newQIDOStudies(t)
	objs := s.search(t, "/studies?StudyInstanceUID="+s.mrPelvis.StudyInstanceUID+","+s.ctHead.StudyInstanceUID)
	if len(objs) != 2 {
		t.Fatalf("%d studies, want 2", len(objs))
	}
	mr, ct := objs[0], objs[1]
	for _, tt := range []struct {
		name string
		got  []string
		want []string
	}{
		{"SpecificCharacterSet", ct.Strings(tag.SpecificCharacterSet), []string{"ISO_IR 192"}},
		{"StudyDate", ct.Strings(tag.StudyDate), []string{"20210304"}},
		{"StudyTime", ct.Strings(tag.StudyTime), []string{"103000.000000"}},
		{"AccessionNumber", ct.Strings(tag.AccessionNumber), []string{"ACC-A"}},
		{"ModalitiesInStudy", ct.Strings(tag.ModalitiesInStudy), []string{"CT"}},
		{"ModalitiesInStudy of two series", mr.Strings(tag.ModalitiesInStudy), []string{"MR", "OT"}},
		{"ReferringPhysicianName", ct.Strings(tag.ReferringPhysicianName), []string{"Thomas^Albert"}},
		{"PatientName", ct.Strings(tag.PatientName), []string{"DOE^JANE"}},
		{"PatientID", ct.Strings(tag.PatientID), []string{"P1"}},
		{"IssuerOfPatientID", ct.Strings(tag.IssuerOfPatientID), []string{"HOSP-A"}},
		{"PatientBirthDate", ct.Strings(tag.PatientBirthDate), []string{"19500704"}},
		{"PatientSex", ct.Strings(tag.PatientSex), []string{"M"}},
		{"StudyInstanceUID", ct.Strings(tag.StudyInstanceUID), []string{s.ctHead.StudyInstanceUID}},
		{"StudyID", ct.Strings(tag.StudyID), []string{"1"}},
		{"NumberOfStudyRelatedSeries", ct.Strings(tag.NumberOfStudyRelatedSeries), []string{"2"}},
		{"NumberOfStudyRelatedInstances", ct.Strings(tag.NumberOfStudyRelatedInstances), []string{"4"}},
		{"NumberOfStudyRelatedSeries of two modalities", mr.Strings(tag.NumberOfStudyRelatedSeries), []string{"2"}},
		{"RetrieveURL", ct.Strings(tag.Tag{Group: 0x0008, Element: 0x1190}), []string{s.URL + "/studies/" + s.ctHead.StudyInstanceUID}},
		{"TimezoneOffsetFromUTC", ct.Strings(tag.Tag{Group: 0x0008, Element: 0x0201}), []string{"+0000"}},
		{"StudyDescription", ct.Strings(tag.StudyDescription), []string{"CT HEAD"}},
	} {
		if diff := cmp.Diff(tt.want, tt.got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
	}
	if a, _ := ct.Attribute(tag.PatientName); a.VR != "PN" {
		t.Errorf("PatientName VR %q, want PN", a.VR)
	}
	if a, _ := ct.Attribute(tag.NumberOfStudyRelatedInstances); a.VR != "IS" || a.Value[0] != json.Number("4") {
		t.Errorf("NumberOfStudyRelatedInstances = %+v, want IS number 4", a)
	}
	// RetrieveURL is where WADO-RS serves the study.
	resp, _ := s.get(t, strings.TrimPrefix(ct.String(tag.Tag{Group: 0x0008, Element: 0x1190}), s.URL))
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET RetrieveURL: %s", resp.Status)
	}
}

func TestQIDO_SearchForSeries(t *testing.T) {
	t.Parallel()
	s := newQIDOStudies(t)
	ctSeries := []string{s.ctHead.Series[0].SeriesInstanceUID, s.ctHead.Series[1].SeriesInstanceUID}
	mrSeries, otSeries := s.mrPelvis.Series[0].SeriesInstanceUID, s.mrPelvisOT.Series[0].SeriesInstanceUID
	petSeries := s.petBody.Series[0].SeriesInstanceUID
	tests := []struct {
		name, path string
		want       []string
	}{
		{"series of a study", "/studies/" + s.ctHead.StudyInstanceUID + "/series", ctSeries},
		{"series of a study by Modality", "/studies/" + s.mrPelvis.StudyInstanceUID + "/series?Modality=OT", []string{otSeries}},
		{"series of an unknown study", "/studies/1.2.3.4/series", nil},
		{"all series by Modality", "/series?Modality=PT", []string{petSeries}},
		{"all series by Modality list", "/series?Modality=MR,PT", []string{mrSeries, petSeries}},
		{"all series by study key", "/series?PatientID=P2", []string{petSeries}},
		{"all series by SeriesInstanceUID tag", "/series?0020000E=" + ctSeries[1], ctSeries[1:]},
		{"all series by SeriesInstanceUID list", "/series?SeriesInstanceUID=" + ctSeries[0] + "," + petSeries, []string{ctSeries[0], petSeries}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := uidsOf(s.search(t, tt.path), tag.SeriesInstanceUID)
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tt.want))
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", tt.path, diff)
			}
		})
	}

	t.Run("return attributes", func(t *testing.T) {
		t.Parallel()
		objs := s.search(t, "/studies/"+s.ctHead.StudyInstanceUID+"/series")
		if len(objs) != 2 {
			t.Fatalf("%d series, want 2", len(objs))
		}
		o := objs[0]
		for _, tt := range []struct {
			t    tag.Tag
			want []string
		}{
			{tag.Modality, []string{"CT"}},
			{tag.SeriesNumber, []string{"1"}},
			{tag.SeriesInstanceUID, ctSeries[:1]},
			{tag.NumberOfSeriesRelatedInstances, []string{"2"}},
			{tag.Tag{Group: 0x0008, Element: 0x1190}, []string{s.URL + "/studies/" + s.ctHead.StudyInstanceUID + "/series/" + ctSeries[0]}},
		} {
			if diff := cmp.Diff(tt.want, o.Strings(tt.t)); diff != "" {
				t.Errorf("%v (-want +got):\n%s", tt.t, diff)
			}
		}
		for _, tg := range []tag.Tag{tag.SeriesDescription, tag.BodyPartExamined} {
			if _, ok := o.Attribute(tg); !ok {
				t.Errorf("required attribute %v missing", tg)
			}
		}
		if _, ok := o.Attribute(tag.PatientID); ok {
			t.Errorf("series of one study carry study attribute PatientID")
		}
	})
	t.Run("all series carry study attributes", func(t *testing.T) {
		t.Parallel()
		objs := s.search(t, "/series?Modality=PT")
		if len(objs) != 1 || objs[0].String(tag.PatientID) != "P2" || objs[0].String(tag.StudyInstanceUID) != s.petBody.StudyInstanceUID {
			t.Errorf("all-series result lacks the study attributes: %+v", objs)
		}
	})
}

func TestQIDO_SearchForInstances(t *testing.T) {
	t.Parallel()
	s := newQIDOStudies(t)
	st, se := s.ctHead.StudyInstanceUID, s.ctHead.Series[0]
	inst := []string{se.Instances[0].SOPInstanceUID, se.Instances[1].SOPInstanceUID}
	mrClass := s.mrPelvis.Instances()[0].SOPClassUID
	tests := []struct {
		name, path string
		want       []string
	}{
		{"instances of a series", "/studies/" + st + "/series/" + se.SeriesInstanceUID + "/instances", inst},
		{"instances of a study", "/studies/" + s.mrPelvis.StudyInstanceUID + "/instances",
			[]string{s.mrPelvis.Instances()[0].SOPInstanceUID, s.mrPelvisOT.Instances()[0].SOPInstanceUID}},
		{"instances by SOPInstanceUID", "/studies/" + st + "/series/" + se.SeriesInstanceUID + "/instances?SOPInstanceUID=" + inst[1], inst[1:]},
		{"all instances by SOPClassUID", "/instances?SOPClassUID=" + mrClass, []string{s.mrPelvis.Instances()[0].SOPInstanceUID}},
		{"all instances by Modality and PatientID", "/instances?Modality=PT&PatientID=P2", []string{s.petBody.Instances()[0].SOPInstanceUID}},
		{"instances of a series of another study", "/studies/" + s.petBody.StudyInstanceUID + "/series/" + se.SeriesInstanceUID + "/instances", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := uidsOf(s.search(t, tt.path), tag.SOPInstanceUID)
			slices.Sort(got)
			if diff := cmp.Diff(slices.Sorted(slices.Values(tt.want)), got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", tt.path, diff)
			}
		})
	}

	t.Run("return attributes", func(t *testing.T) {
		t.Parallel()
		objs := s.search(t, "/studies/"+st+"/series/"+se.SeriesInstanceUID+"/instances")
		if len(objs) != 2 {
			t.Fatalf("%d instances, want 2", len(objs))
		}
		o := objs[0]
		for _, tt := range []struct {
			t    tag.Tag
			want []string
		}{
			{tag.SOPClassUID, []string{se.Instances[0].SOPClassUID}},
			{tag.SOPInstanceUID, inst[:1]},
			{tag.InstanceNumber, []string{"1"}},
			{tag.Rows, []string{"512"}},
			{tag.Columns, []string{"512"}},
			{tag.NumberOfFrames, []string{"2"}},
			{tag.Tag{Group: 0x0008, Element: 0x1190}, []string{s.URL + "/studies/" + st + "/series/" + se.SeriesInstanceUID + "/instances/" + inst[0]}},
		} {
			if diff := cmp.Diff(tt.want, o.Strings(tt.t)); diff != "" {
				t.Errorf("%v (-want +got):\n%s", tt.t, diff)
			}
		}
		if _, ok := o.Attribute(tag.Modality); ok {
			t.Errorf("instances of one series carry series attribute Modality")
		}
	})
	t.Run("instances of a study carry series attributes", func(t *testing.T) {
		t.Parallel()
		objs := s.search(t, "/studies/"+s.mrPelvis.StudyInstanceUID+"/instances")
		mods := uidsOf(objs, tag.Modality)
		slices.Sort(mods)
		if diff := cmp.Diff([]string{"MR", "OT"}, mods); diff != "" {
			t.Errorf("Modality (-want +got):\n%s", diff)
		}
		if _, ok := objs[0].Attribute(tag.PatientID); ok {
			t.Errorf("instances of one study carry study attribute PatientID")
		}
	})
}

func TestQIDO_IncludeField(t *testing.T) {
	t.Parallel()
	s := newQIDOStudies(t)
	pet := s.petBody
	petSeries := pet.Series[0].SeriesInstanceUID
	sop := pet.Instances()[0].SOPInstanceUID
	// The stored metadata is the reference for attributes outside the index.
	_, body := s.get(t, "/studies/"+pet.StudyInstanceUID+"/series/"+petSeries+"/instances/"+sop+"/metadata")
	md, err := dicomjson.Unmarshal(body)
	if err != nil || len(md) != 1 {
		t.Fatalf("metadata: %v", err)
	}
	model := md[0].String(tag.ManufacturerModelName)
	if model == "" {
		t.Fatal("test object has no ManufacturerModelName")
	}

	t.Run("study level by keyword", func(t *testing.T) {
		t.Parallel()
		objs := s.search(t, "/studies?PatientID=P2&includefield=ManufacturerModelName")
		if len(objs) != 1 || objs[0].String(tag.ManufacturerModelName) != model {
			t.Errorf("ManufacturerModelName = %q, want %q", objs[0].String(tag.ManufacturerModelName), model)
		}
	})
	t.Run("series level by tag and comma list", func(t *testing.T) {
		t.Parallel()
		objs := s.search(t, "/studies/"+pet.StudyInstanceUID+"/series?includefield=00081090,Laterality&includefield=SeriesDate")
		o := objs[0]
		if o.String(tag.ManufacturerModelName) != model || o.String(tag.SeriesDate) != "20201231" {
			t.Errorf("ManufacturerModelName %q SeriesDate %q", o.String(tag.ManufacturerModelName), o.String(tag.SeriesDate))
		}
		if _, ok := o.Attribute(tag.Laterality); !ok {
			t.Errorf("Laterality not included")
		}
	})
	t.Run("not asked not returned", func(t *testing.T) {
		t.Parallel()
		objs := s.search(t, "/studies?PatientID=P2")
		if _, ok := objs[0].Attribute(tag.ManufacturerModelName); ok {
			t.Errorf("ManufacturerModelName returned without includefield")
		}
	})
	t.Run("instance level all", func(t *testing.T) {
		t.Parallel()
		objs := s.search(t, "/studies/"+pet.StudyInstanceUID+"/series/"+petSeries+"/instances?includefield=all")
		if len(objs) != 1 {
			t.Fatalf("%d instances", len(objs))
		}
		o := objs[0]
		for k := range md[0] {
			if _, ok := o[k]; !ok {
				t.Errorf("includefield=all lacks stored attribute %s", k)
			}
		}
		icon := o.Sequence(tag.IconImageSequence)
		if len(icon) != 1 {
			t.Fatalf("IconImageSequence has %d items", len(icon))
		}
		px, _ := icon[0].Attribute(tag.PixelData)
		want := s.URL + "/studies/" + pet.StudyInstanceUID + "/series/" + petSeries + "/instances/" + sop + "/bulkdata/00880200/0/7FE00010"
		if px.BulkDataURI != want {
			t.Errorf("icon BulkDataURI = %q, want %q", px.BulkDataURI, want)
		}
		if o.String(tag.Rows) != "168" {
			t.Errorf("Rows = %q, want 168", o.String(tag.Rows))
		}
	})
	t.Run("instance level default attributes", func(t *testing.T) {
		t.Parallel()
		// Rows and Columns are required return attributes (PS3.18 Table
		// 6.7.1-2b), served from the index, not from the stored metadata.
		objs := s.search(t, "/studies/"+pet.StudyInstanceUID+"/series/"+petSeries+"/instances")
		if len(objs) != 1 {
			t.Fatalf("%d instances", len(objs))
		}
		if r, c := objs[0].String(tag.Rows), objs[0].String(tag.Columns); r != "168" || c != "168" {
			t.Errorf("Rows, Columns = %q, %q; want 168, 168", r, c)
		}
	})
}

func TestQIDO_LimitAndOffset(t *testing.T) {
	t.Parallel()
	s := newQIDOStudies(t)
	mr, ct := s.mrPelvis.StudyInstanceUID, s.ctHead.StudyInstanceUID
	tests := []struct {
		query       string
		want        []string
		wantWarning bool
	}{
		{"PatientID=P1", []string{mr, ct}, false},
		{"PatientID=P1&limit=1", []string{mr}, true},
		{"PatientID=P1&limit=1&offset=1", []string{ct}, false},
		{"PatientID=P1&offset=1", []string{ct}, false},
		{"PatientID=P1&limit=2", []string{mr, ct}, false},
		{"PatientID=P1&offset=2", nil, false},
		{"PatientID=P1&limit=0", []string{mr, ct}, false},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			t.Parallel()
			resp, _ := s.get(t, "/studies?"+tt.query)
			got := uidsOf(s.search(t, "/studies?"+tt.query), tag.StudyInstanceUID)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if w := resp.Header.Get("Warning"); (w != "") != tt.wantWarning {
				t.Errorf("Warning %q, want one: %v", w, tt.wantWarning)
			}
		})
	}
	t.Run("instances page", func(t *testing.T) {
		t.Parallel()
		all := uidsOf(s.search(t, "/studies/"+ct+"/instances"), tag.SOPInstanceUID)
		var paged []string
		for off := 0; off < 4; off++ {
			paged = append(paged, uidsOf(s.search(t, "/studies/"+ct+"/instances?limit=1&offset="+string(rune('0'+off))), tag.SOPInstanceUID)...)
		}
		if len(all) != 4 || !slices.Equal(all, paged) {
			t.Errorf("paged %v, want %v", paged, all)
		}
	})
}

func TestQIDO_EmptyResultIs204(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	for _, p := range []string{"/studies", "/series", "/instances", "/studies?PatientID=none"} {
		resp, body := s.get(t, p)
		if resp.StatusCode != http.StatusNoContent || len(body) != 0 {
			t.Errorf("GET %s: %s %q, want 204 without a body (PS3.18 8.3.4.4.1)", p, resp.Status, body)
		}
	}
}

func TestQIDO_BadRequests(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	tests := []struct {
		name, path string
		accept     string
		status     int
		reason     string // a part of the reason given
	}{
		{"unknown parameter", "/studies?Foo=1", "", 400, `"Foo" is neither a DICOM keyword nor a tag`},
		{"unsupported attribute", "/studies?PatientAge=030Y", "", 400, "PatientAge is not a supported match key"},
		{"unsupported attribute by tag", "/studies?00101010=030Y", "", 400, "PatientAge is not a supported match key"},
		{"series key at study level", "/studies?Modality=CT", "", 400, "Modality is a series-level attribute"},
		{"instance key at series level", "/series?SOPClassUID=1.2", "", 400, "SOPClassUID is a instance-level attribute"},
		{"bad date", "/studies?StudyDate=2020-01-01", "", 400, "StudyDate"},
		{"reversed range", "/studies?StudyDate=20201231-20200101", "", 400, "ends before it starts"},
		{"bad time", "/studies?StudyTime=25", "", 400, "StudyTime"},
		{"bad UID in list", "/studies?StudyInstanceUID=1.2,abc", "", 400, `"abc" is not a valid UID`},
		{"bad limit", "/studies?limit=-1", "", 400, "limit"},
		{"bad offset", "/studies?offset=x", "", 400, "offset"},
		{"bad fuzzymatching", "/studies?fuzzymatching=maybe", "", 400, "fuzzymatching"},
		{"bad includefield", "/studies?includefield=NoSuchThing", "", 400, "includefield"},
		{"PatientID in Latin-1", "/studies?PatientID=%C4B1%FC", "", 400, "PatientID value is not UTF-8"},
		{"AccessionNumber not UTF-8", "/studies?AccessionNumber=%FF", "", 400, "AccessionNumber value is not UTF-8"},
		{"NUL in PatientID", "/studies?PatientID=A%00", "", 400, "PatientID value holds a NUL"},
		{"PatientName in Latin-1", "/studies?PatientName=M%FCller*", "", 400, "PatientName value is not UTF-8"},
		{"PatientID twice", "/studies?PatientID=A&PatientID=B", "", 400, "more than once"},
		{"sequence matching", "/studies?00081110.00081150=1.2", "", 400, "sequence"},
		{"path UID with dots and slashes", "/studies/..%2F..%2Fetc/series", "", 400, "not a valid DICOM UID"},
		{"path UID not numeric", "/studies/1.2/series/abc/instances", "", 400, "not a valid DICOM UID"},
		{"XML is not served", "/studies", `multipart/related; type="application/dicom+xml"`, 406, "application/dicom+json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var accept []string
			if tt.accept != "" {
				accept = append(accept, tt.accept)
			}
			resp, body := s.get(t, tt.path, accept...)
			if resp.StatusCode != tt.status {
				t.Fatalf("GET %s: %s %s, want %d", tt.path, resp.Status, body, tt.status)
			}
			var e struct{ Reason string }
			if err := json.Unmarshal(body, &e); err != nil || !strings.Contains(e.Reason, tt.reason) {
				t.Errorf("reason %q, want it to contain %q", e.Reason, tt.reason)
			}
		})
	}
}
