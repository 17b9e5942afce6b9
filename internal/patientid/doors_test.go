package patientid_test

import (
	"bytes"
	"slices"
	"testing"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
	"gocloud.dev/blob/memblob"

	"github.com/priorflow/priorflow/archive"
	"github.com/priorflow/priorflow/archive/archivetest"
	"github.com/priorflow/priorflow/archive/dicomtest"
	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/internal/database/dbtest"
	"github.com/priorflow/priorflow/search"
	"github.com/priorflow/priorflow/triggers/hl7v2"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

func newStore(t *testing.T) *postgres.Store {
	t.Helper()
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	store, err := postgres.New(dbtest.NewPool(t), archivetest.Registry(t), codec, dbtest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	return store
}

// newArchive is an archive over store whose authority table is table.
func newArchive(t *testing.T, store *postgres.Store, table map[string]string) *archive.Archive {
	t.Helper()
	bucket := memblob.OpenBucket(nil)
	t.Cleanup(func() { bucket.Close() })
	arch, err := archive.New(store, bucket, dbtest.Logger(), archive.Config{DICOMwebURL: "http://pf.test/dicomweb", SpoolDir: t.TempDir(),
		IssuerSystems: table})
	if err != nil {
		t.Fatal(err)
	}
	return arch
}

// One assigning authority must name one identifier system whichever door
// its patient IDs come through, or the Patient the archive makes from a
// DICOM object is not the one a care event names: HL7 v2 named CX-4.1
// HOSP-B urn:priorflow:authority:HOSP-B while the archive named
// IssuerOfPatientID HOSP-B urn:priorflow:issuer:HOSP-B.
func TestSameSystemThroughEveryDoor(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	authorities := []string{"HOSP-B", "A B/C", "1.2.840.10008", "urn:x:y", "https://id.example/mrn", "USSSA", "NPI"}
	for _, table := range []map[string]string{nil, {"HOSP-B": "urn:oid:1.2.840.99999.2", "USSSA": "urn:example:ssn"}} {
		arch := newArchive(t, store, table)
		for _, a := range authorities {
			dicom := arch.PatientSystem(a, "", "")
			msg, err := hl7v2.Parse([]byte("MSH|^~\\&|RIS|FAC|PF|PF|20260301120000||ADT^A08|C1|P|2.5\rPID|1||123^^^" + a + "^MR\r"))
			if err != nil {
				t.Fatal(err)
			}
			ev, err := hl7v2.ToCareEvent(msg, hl7v2.MapOptions{AuthoritySystems: table})
			if err != nil {
				t.Fatalf("%s: %v", a, err)
			}
			hl7 := ev.Patient.Identifiers[0].System
			if dicom != hl7 {
				t.Errorf("table %v, authority %q: DICOM names %q, HL7 v2 %q", table, a, dicom, hl7)
			}
			if !search.IssuerMatches(a, dicom, "", table) {
				t.Errorf("table %v: a source with issuer %q does not take the system %q as its domain", table, a, dicom)
			}
		}
	}
}

// An authority given with its universal ID, in CX-4.2/4.3 as in the Issuer
// of Patient ID Qualifiers Sequence of a DICOM object, is named by it on
// both doors; the archive read only IssuerOfPatientID.
func TestSameSystemWithQualifiers(t *testing.T) {
	t.Parallel()
	arch := newArchive(t, newStore(t), nil)
	for _, c := range []struct{ id, typ, want string }{
		{"1.2.840.99999.1", "ISO", "urn:oid:1.2.840.99999.1"},
		{"https://id.hosp-a.example/mrn", "URI", "https://id.hosp-a.example/mrn"},
		{"hosp-a.example", "DNS", "urn:priorflow:issuer:HOSP-A"}, // a type without a system of its own: the name
	} {
		qualifiers := func(elems []*dicom.Element) []*dicom.Element {
			id, err := dicom.NewElement(tag.UniversalEntityID, []string{c.id})
			if err != nil {
				t.Fatal(err)
			}
			typ, err := dicom.NewElement(tag.UniversalEntityIDType, []string{c.typ})
			if err != nil {
				t.Fatal(err)
			}
			sq, err := dicom.NewElement(tag.IssuerOfPatientIDQualifiersSequence, [][]*dicom.Element{{id, typ}})
			if err != nil {
				t.Fatal(err)
			}
			// In tag order: the header is read up to the pixel data.
			i, _ := slices.BinarySearchFunc(elems, sq.Tag, func(e *dicom.Element, t tag.Tag) int { return e.Tag.Compare(t) })
			return slices.Insert(elems, i, sq)
		}
		st := dicomtest.NewStudy(t, dicomtest.WithPatient("123", "HOSP-A", "DOE^JANE"), dicomtest.WithEdits(qualifiers))
		o, err := arch.Spool(bytes.NewReader(st.Instances()[0].Bytes))
		if err != nil {
			t.Fatal(err)
		}
		h := o.Header
		dicomSys := arch.PatientSystem(h.IssuerOfPatientID, h.IssuerUniversalID, h.IssuerUniversalIDType)
		o.Remove()

		msg, err := hl7v2.Parse([]byte("MSH|^~\\&|RIS|FAC|PF|PF|20260301120000||ADT^A08|C1|P|2.5\rPID|1||123^^^HOSP-A&" + c.id + "&" + c.typ + "^MR\r"))
		if err != nil {
			t.Fatal(err)
		}
		ev, err := hl7v2.ToCareEvent(msg, hl7v2.MapOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if hl7 := ev.Patient.Identifiers[0].System; dicomSys != c.want || hl7 != c.want {
			t.Errorf("%s %s: DICOM names %q, HL7 v2 %q; want %q", c.typ, c.id, dicomSys, hl7, c.want)
		}
	}
}
