package hl7v2

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The sample messages in testdata come from microsoft/FHIR-Converter
// (MIT license, testdata/LICENSE-microsoft-FHIR-Converter.txt). They end
// segments with LF and some start with a UTF-8 byte order mark.

var ghhIdentifiers = []CX{
	{
		ID:                 "PATID1234",
		CheckDigit:         "5",
		AssigningAuthority: HD{NamespaceID: "test1", UniversalID: "2.16.1", UniversalIDType: "HCD"},
		IdentifierTypeCode: "MR",
		AssigningFacility:  HD{NamespaceID: "GOOD HEALTH HOSPITAL"},
	},
	{
		ID:                 "123456789",
		AssigningAuthority: HD{NamespaceID: "USSSA"},
		IdentifierTypeCode: "SS",
	},
}

func TestParse_SampleFiles(t *testing.T) {
	tests := []struct {
		file        string
		msgType     MessageType
		controlID   string
		version     string
		timestamp   string // RFC 3339
		segments    int
		identifiers []CX
	}{
		{"ADT-A01-01.hl7", MessageType{"ADT", "A01", "ADT_A01"}, "MSG00001", "2.8", "1989-08-18T11:26:00+02:15", 24, ghhIdentifiers},
		{"ADT-A02-01.hl7", MessageType{"ADT", "A02", "ADT_A02"}, "MSG00001", "2.8", "1989-08-18T11:26:00+02:15", 14, ghhIdentifiers},
		{"ADT-A03-01.hl7", MessageType{"ADT", "A03", "ADT_A03"}, "MSG00001", "2.8", "1989-08-18T11:26:00+02:15", 24, ghhIdentifiers},
		{"ADT-A04-01.hl7", MessageType{"ADT", "A04", "ADT_A04"}, "MSG00001", "2.8", "1989-08-18T11:26:00+02:15", 24, ghhIdentifiers},
		{"ADT-A08-01.hl7", MessageType{"ADT", "A08", "ADT_A08"}, "MSG00001", "2.8", "1989-08-18T11:26:00+02:15", 24, ghhIdentifiers},
		{"ADT-A11-01.hl7", MessageType{"ADT", "A11", "ADT_A11"}, "MSG00001", "2.8", "1989-08-18T11:26:00+02:15", 9, ghhIdentifiers},
		{"ADT-A40-01.hl7", MessageType{"ADT", "A40", "ADT_A40"}, "8919-40", "2.8", "2019-04-23T15:01:37+02:15", 4,
			[]CX{{ID: "12345", AssigningAuthority: HD{NamespaceID: "BCBS"}, IdentifierTypeCode: "MR"}}},
		{"OMG-O19-01.hl7", MessageType{"OMG", "O19", "OMG_O19"}, "MSG00019", "2.8", "2021-10-20T11:26:00+02:15", 50, ghhIdentifiers},
		{"ORM-O01-01.hl7", MessageType{"ORM", "O01", "ORM_O01"}, "MSG00018", "2.6", "2021-10-20T11:26:00+02:15", 12, ghhIdentifiers},
		{"ORM-O01-02.hl7", MessageType{"ORM", "O01", "ORM_O01"}, "MSG00019", "2.6", "2021-10-20T11:26:00+02:15", 15, ghhIdentifiers},
		{"SIU-S12-01.hl7", MessageType{"SIU", "S12", "SIU_S12"}, "MSG00012", "2.8", "2021-09-14T11:20:00+02:15", 18, ghhIdentifiers},
		{"SIU-S12-02.hl7", MessageType{"SIU", "S12", "SIU_S12"}, "MSG00012", "2.8", "2021-08-10T11:30:00+02:15", 28, ghhIdentifiers},
		{"SIU-S13-01.hl7", MessageType{"SIU", "S13", "SIU_S13"}, "MSG00013", "2.8", "2021-09-20T11:26:00+02:15", 14, ghhIdentifiers},
		{"SIU-S14-01.hl7", MessageType{"SIU", "S14", "SIU_S14"}, "MSG00014", "2.8", "2021-09-20T11:26:00+02:15", 14, ghhIdentifiers},
		{"SIU-S15-01.hl7", MessageType{"SIU", "S15", "SIU_S15"}, "MSG00015", "2.8", "2021-09-23T11:26:00+02:15", 14, ghhIdentifiers},
		{"SIU-S26-01.hl7", MessageType{"SIU", "S26", "SIU_S26"}, "MSG00026", "2.8", "2021-09-24T10:00:00+02:15", 13, ghhIdentifiers},
	}
	files, err := filepath.Glob("testdata/*.hl7")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(files), len(tests); got != want {
		t.Fatalf("testdata has %d .hl7 files, table covers %d: add the new ones", got, want)
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			m := mustParse(t, data)
			if d := diff(tt.msgType, m.MessageType()); d != "" {
				t.Errorf("MessageType: %s", d)
			}
			if got, want := m.ControlID(), tt.controlID; got != want {
				t.Errorf("ControlID = %q, want %q", got, want)
			}
			if got, want := m.Version(), tt.version; got != want {
				t.Errorf("Version = %q, want %q", got, want)
			}
			if got, want := m.ProcessingID(), "P"; got != want {
				t.Errorf("ProcessingID = %q, want %q", got, want)
			}
			ts, err := m.Timestamp(time.UTC)
			if err != nil {
				t.Errorf("Timestamp: %v", err)
			} else if got, want := ts.Format(time.RFC3339), tt.timestamp; got != want {
				t.Errorf("Timestamp = %s, want %s", got, want)
			}
			if got, want := len(m.AllSegments()), tt.segments; got != want {
				t.Errorf("len(AllSegments) = %d, want %d", got, want)
			}
			if d := diff(tt.identifiers, m.PatientIdentifiers()); d != "" {
				t.Errorf("PatientIdentifiers: %s", d)
			}
			// Apart from terminators and the BOM, encoding gives back the input.
			want := bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
			want = bytes.ReplaceAll(bytes.TrimRight(want, "\n"), []byte("\n"), []byte("\r"))
			want = append(want, '\r')
			if got := m.Encode(); !bytes.Equal(got, want) {
				t.Errorf("Encode differs from input")
			}
		})
	}
}

func TestParse_SampleFiles_Header(t *testing.T) {
	m := mustParse(t, readSample(t, "ADT-A01-01.hl7"))
	tests := []struct {
		name string
		got  HD
		want HD
	}{
		{"SendingApplication", m.SendingApplication(), HD{NamespaceID: "ADTApp"}},
		{"SendingFacility", m.SendingFacility(), HD{"GHHSFacility", "2.16.840.1.122848.1.30", "ISO"}},
		{"ReceivingApplication", m.ReceivingApplication(), HD{"EHRApp", "1.Edu", "ISO"}},
		{"ReceivingFacility", m.ReceivingFacility(), HD{"GHHRFacility", "2.16.840.1.1122848.1.32", "ISO"}},
	}
	for _, tt := range tests {
		if d := diff(tt.want, tt.got); d != "" {
			t.Errorf("%s: %s", tt.name, d)
		}
	}
}

func TestParse_SampleFiles_Escapes(t *testing.T) {
	t.Run("T in PV1-14 is an ampersand", func(t *testing.T) {
		m := mustParse(t, readSample(t, "ADT-A01-01.hl7"))
		if got, want := mustGet(t, m, "PV1-14"), "NHS Provider-General (inc.A&E-this Hosp)"; got != want {
			t.Errorf("PV1-14 = %q, want %q", got, want)
		}
		if got, want := m.Segment("PV1").Raw(14), `NHS Provider-General (inc.A\T\E-this Hosp)`; got != want {
			t.Errorf("Raw(14) = %q, want %q", got, want)
		}
	})
	t.Run("T in a URL in OBX-5", func(t *testing.T) {
		m := mustParse(t, readSample(t, "OMG-O19-01.hl7"))
		want := "http://172.16.237.4/CaseCenter/index.php?ContainerType=CaseView&ContainerID=0&SlideID=40bcbe96bcbf8cda8b07403263b92cb4"
		found := false
		for _, obx := range m.Segments("OBX") {
			if obx.Field(2).String() == "RP" {
				found = true
				if got := obx.Field(5).Repetition(1).Component(1).String(); got != want {
					t.Errorf("OBX-5.1 = %q, want %q", got, want)
				}
				if got, want := obx.Field(5).Repetition(1).Component(3).String(), "IM"; got != want {
					t.Errorf("OBX-5.3 = %q, want %q", got, want)
				}
			}
		}
		if !found {
			t.Error("no OBX with value type RP")
		}
	})
}

func TestParse_SampleFiles_MergeIdentifiers(t *testing.T) {
	m := mustParse(t, readSample(t, "ADT-A40-01.hl7"))
	want := []CX{{ID: "56789", AssigningAuthority: HD{NamespaceID: "BCBS"}, IdentifierTypeCode: "MR"}}
	if d := diff(want, CXList(m.Segment("MRG").Field(1))); d != "" {
		t.Errorf("MRG-1: %s", d)
	}
}

func readSample(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}
