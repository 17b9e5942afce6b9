// Package dicomtest builds DICOM test studies from the real TCIA files that
// ship in the testdata folder of github.com/suyashkumar/dicom: each generated
// instance is a copy of one of those files, re-encoded as DICOM Part 10
// (PS3.10) with the original transfer syntax and pixel data, and with new
// UIDs, patient, accession number, dates and numbering.
//
//	study := dicomtest.NewStudy(t,
//		dicomtest.WithPatient("P123", "HOSP-A", "DOE^JANE"),
//		dicomtest.WithModality("CT"),
//		dicomtest.WithSeries(2),
//		dicomtest.WithInstancesPerSeries(3))
//
// It also makes deliberately broken inputs for negative tests.
package dicomtest

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// The library's testdata files (see data_details.md there).
const (
	FilePET1       = "1.dcm" // PT, explicit VR little endian, nested sequences, icon image
	FilePET2       = "2.dcm" // PT, like 1.dcm
	FileMR         = "3.dcm" // MR, explicit VR little endian
	FileCR         = "4.dcm" // CR, implicit VR little endian, 7.5 MB
	FileCTMulti    = "5.dcm" // CT, two frames, explicit VR little endian
	FileOTDeflated = "6.dcm" // OT, deflated explicit VR little endian
)

// Files lists every testdata file of the library.
var Files = []string{FilePET1, FilePET2, FileMR, FileCR, FileCTMulti, FileOTDeflated}

// templateFor is the testdata file used for a modality unless WithTemplate
// says otherwise.
var templateFor = map[string]string{
	"PT": FilePET1,
	"MR": FileMR,
	"CR": FileCR,
	"DX": FileCR,
	"CT": FileCTMulti,
	"OT": FileOTDeflated,
}

// TestdataDir returns the testdata folder of github.com/suyashkumar/dicom,
// found with "go list -m" once per test binary, or taken from the
// DICOM_TESTDATA environment variable when set.
func TestdataDir(tb testing.TB) string {
	tb.Helper()
	dir, err := testdataDir()
	if err != nil {
		tb.Fatalf("dicomtest: %v", err)
	}
	return dir
}

// TestdataPath returns the path of one testdata file, such as FileMR.
func TestdataPath(tb testing.TB, name string) string {
	tb.Helper()
	return filepath.Join(TestdataDir(tb), name)
}

var testdataDir = sync.OnceValues(func() (string, error) {
	if dir := os.Getenv("DICOM_TESTDATA"); dir != "" {
		return dir, nil
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/suyashkumar/dicom").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		return "", fmt.Errorf("locating github.com/suyashkumar/dicom: %w", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "testdata")
	if _, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("locating github.com/suyashkumar/dicom testdata: %w", err)
	}
	return dir, nil
})

// NewUID returns a new UID under the 2.25 root, made of a random UUID written
// as a decimal integer (PS3.5 B.2).
func NewUID() string {
	u := uuid.New()
	return "2.25." + new(big.Int).SetBytes(u[:]).String()
}

// Study is a generated study.
type Study struct {
	StudyInstanceUID  string
	PatientID         string
	IssuerOfPatientID string
	PatientName       string
	AccessionNumber   string
	StudyDate         time.Time
	Modality          string
	Series            []*Series
}

// Series is a generated series.
type Series struct {
	SeriesInstanceUID string
	SeriesNumber      int
	Instances         []*Instance
}

// Instance is a generated SOP Instance.
type Instance struct {
	SOPClassUID       string
	SOPInstanceUID    string
	StudyInstanceUID  string
	SeriesInstanceUID string
	InstanceNumber    int
	TransferSyntaxUID string
	Bytes             []byte // the DICOM Part 10 file
}

// Instance returns the study's instance of SOP Instance UID sop, nil when
// it has none.
func (s *Study) Instance(sop string) *Instance {
	for _, in := range s.Instances() {
		if in.SOPInstanceUID == sop {
			return in
		}
	}
	return nil
}

// Instances returns every instance of the study, series by series.
func (s *Study) Instances() []*Instance {
	var out []*Instance
	for _, se := range s.Series {
		out = append(out, se.Instances...)
	}
	return out
}

// WriteFiles writes every instance to its own file in a new tb.TempDir and
// returns the paths in the order of Instances.
func (s *Study) WriteFiles(tb testing.TB) []string {
	tb.Helper()
	dir := tb.TempDir()
	var paths []string
	for _, in := range s.Instances() {
		p := filepath.Join(dir, in.SOPInstanceUID+".dcm")
		if err := os.WriteFile(p, in.Bytes, 0o644); err != nil {
			tb.Fatalf("dicomtest: %v", err)
		}
		paths = append(paths, p)
	}
	return paths
}

// Option configures a generated study.
type Option func(*config)

type config struct {
	patientID, issuer, patientName string
	accession                      string
	studyDate                      time.Time
	modality                       string
	template                       string
	series, instances              int
	studyUID                       string
	sopClass                       string
	studyDescription               string
	extra                          []Edition
}

// WithPatient sets Patient ID, Issuer of Patient ID and Patient's Name (a PN
// value such as "DOE^JANE").
func WithPatient(id, issuer, name string) Option {
	return func(c *config) { c.patientID, c.issuer, c.patientName = id, issuer, name }
}

// WithStudyDate sets Study, Series, Content and Acquisition Date and Time, and
// Timezone Offset From UTC from t's zone.
func WithStudyDate(t time.Time) Option { return func(c *config) { c.studyDate = t } }

// WithModality sets Modality and, unless WithTemplate is given, picks the
// testdata file of that modality (MR for modalities without one).
func WithModality(m string) Option { return func(c *config) { c.modality = m } }

// WithTemplate picks the testdata file to copy, such as FileCTMulti.
func WithTemplate(name string) Option { return func(c *config) { c.template = name } }

// WithSeries sets the number of series (default 1).
func WithSeries(n int) Option { return func(c *config) { c.series = n } }

// WithInstancesPerSeries sets the number of instances in each series
// (default 1).
func WithInstancesPerSeries(n int) Option { return func(c *config) { c.instances = n } }

// WithAccession sets Accession Number.
func WithAccession(a string) Option { return func(c *config) { c.accession = a } }

// WithStudyInstanceUID reuses a Study Instance UID, to add series to a study
// generated before.
func WithStudyInstanceUID(uid string) Option { return func(c *config) { c.studyUID = uid } }

// WithStudyDescription sets Study Description.
func WithStudyDescription(d string) Option { return func(c *config) { c.studyDescription = d } }

// PrivateSOPClassUID is a SOP class no part of the standard defines, as a
// vendor's private objects have: no storage SOP class a peer proposes.
const PrivateSOPClassUID = "1.2.826.0.1.3680043.9.7147.1.1"

// WithSOPClass gives every instance another SOP Class UID (and Media
// Storage SOP Class UID), the template's data kept.
func WithSOPClass(uid string) Option { return func(c *config) { c.sopClass = uid } }

// WithEdits applies further editions to every instance, after the
// generated attributes: PatientBirthDate, PatientSex, BodyPartExamined …
func WithEdits(eds ...Edition) Option { return func(c *config) { c.extra = append(c.extra, eds...) } }

// NewStudy generates a study, failing the test on error.
func NewStudy(tb testing.TB, opts ...Option) *Study {
	tb.Helper()
	s, err := NewGenerator(tb).Study(opts...)
	if err != nil {
		tb.Fatalf("dicomtest.NewStudy: %v", err)
	}
	return s
}

// Generator generates studies, parsing each testdata file once. Use one
// Generator to make many instances fast, as in benchmarks. It is safe for
// concurrent use.
type Generator struct {
	dir string

	mu        sync.Mutex
	templates map[string]dicom.Dataset
}

// NewGenerator returns a Generator reading the library's testdata files.
func NewGenerator(tb testing.TB) *Generator {
	tb.Helper()
	return &Generator{dir: TestdataDir(tb), templates: map[string]dicom.Dataset{}}
}

// template returns the parsed testdata file. Its elements are shared and must
// not be modified.
func (g *Generator) template(name string) (dicom.Dataset, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if ds, ok := g.templates[name]; ok {
		return ds, nil
	}
	ds, err := dicom.ParseFile(filepath.Join(g.dir, name), nil, dicom.SkipProcessingPixelDataValue())
	if err != nil {
		return dicom.Dataset{}, fmt.Errorf("parsing %s: %w", name, err)
	}
	g.templates[name] = ds
	return ds, nil
}

// Study generates a study.
func (g *Generator) Study(opts ...Option) (*Study, error) {
	c := config{
		patientID:   "PF-" + strconv.FormatUint(uint64(uuid.New().ID()), 10),
		issuer:      "PRIORFLOW-TEST",
		patientName: "TEST^PATIENT",
		studyDate:   time.Date(2024, 3, 15, 10, 30, 0, 0, time.UTC),
		series:      1,
		instances:   1,
	}
	for _, o := range opts {
		o(&c)
	}
	if c.template == "" {
		c.template = FileMR
		if f, ok := templateFor[c.modality]; ok {
			c.template = f
		}
	}
	tmpl, err := g.template(c.template)
	if err != nil {
		return nil, fmt.Errorf("dicomtest: %w", err)
	}
	if c.modality == "" {
		c.modality = stringValue(tmpl, tag.Modality)
	}
	if c.studyUID == "" {
		c.studyUID = NewUID()
	}
	if c.accession == "" {
		c.accession = "ACC" + strconv.FormatUint(uint64(uuid.New().ID()), 10)
	}
	st := &Study{
		StudyInstanceUID:  c.studyUID,
		PatientID:         c.patientID,
		IssuerOfPatientID: c.issuer,
		PatientName:       c.patientName,
		AccessionNumber:   c.accession,
		StudyDate:         c.studyDate,
		Modality:          c.modality,
	}
	for s := 1; s <= c.series; s++ {
		se := &Series{SeriesInstanceUID: NewUID(), SeriesNumber: s}
		frameOfReference := NewUID()
		for i := 1; i <= c.instances; i++ {
			in := &Instance{
				SOPClassUID:       cmp.Or(c.sopClass, stringValue(tmpl, tag.SOPClassUID)),
				SOPInstanceUID:    NewUID(),
				StudyInstanceUID:  st.StudyInstanceUID,
				SeriesInstanceUID: se.SeriesInstanceUID,
				InstanceNumber:    i,
				TransferSyntaxUID: stringValue(tmpl, tag.TransferSyntaxUID),
			}
			ds := Edit(tmpl, studyEdits(c, se, in, frameOfReference)...)
			if in.Bytes, err = Encode(ds); err != nil {
				return nil, fmt.Errorf("dicomtest: encoding %s: %w", c.template, err)
			}
			se.Instances = append(se.Instances, in)
		}
		st.Series = append(st.Series, se)
	}
	return st, nil
}

// studyEdits lists the attributes set on one generated instance.
func studyEdits(c config, se *Series, in *Instance, frameOfReference string) []Edition {
	d, t := c.studyDate.Format("20060102"), c.studyDate.Format("150405.000000")
	eds := []Edition{
		Set(tag.MediaStorageSOPClassUID, in.SOPClassUID),
		Set(tag.SOPClassUID, in.SOPClassUID),
		Set(tag.MediaStorageSOPInstanceUID, in.SOPInstanceUID),
		Set(tag.SOPInstanceUID, in.SOPInstanceUID),
		Set(tag.StudyInstanceUID, in.StudyInstanceUID),
		Set(tag.SeriesInstanceUID, in.SeriesInstanceUID),
		Set(tag.PatientID, c.patientID),
		Set(tag.IssuerOfPatientID, c.issuer),
		Set(tag.PatientName, c.patientName),
		Set(tag.AccessionNumber, c.accession),
		Set(tag.Modality, c.modality),
		Set(tag.StudyDate, d),
		Set(tag.StudyTime, t),
		Set(tag.SeriesDate, d),
		Set(tag.SeriesTime, t),
		Set(tag.TimezoneOffsetFromUTC, c.studyDate.Format("-0700")),
		Set(tag.SeriesNumber, strconv.Itoa(se.SeriesNumber)),
		Set(tag.InstanceNumber, strconv.Itoa(in.InstanceNumber)),
		Set(tag.StudyID, "1"),
		SetIfPresent(tag.ContentDate, d),
		SetIfPresent(tag.ContentTime, t),
		SetIfPresent(tag.AcquisitionDate, d),
		SetIfPresent(tag.AcquisitionTime, t),
		SetIfPresent(tag.FrameOfReferenceUID, frameOfReference),
	}
	if c.studyDescription != "" {
		eds = append(eds, Set(tag.StudyDescription, c.studyDescription))
	}
	eds = append(eds, c.extra...)
	if !ascii(c.patientID + c.issuer + c.patientName + c.accession + c.studyDescription) {
		// The writer stores Go strings as UTF-8 (PS3.5 6.1.2.3, ISO_IR 192).
		eds = append(eds, Set(tag.SpecificCharacterSet, "ISO_IR 192"))
	}
	return eds
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// Edition changes the top-level elements of a data set; see Edit.
type Edition func([]*dicom.Element) []*dicom.Element

// Set sets a string-valued attribute (VR from the dictionary, PS3.6), adding
// it in tag order when absent.
func Set(t tag.Tag, values ...string) Edition {
	return func(elems []*dicom.Element) []*dicom.Element {
		e, err := dicom.NewElement(t, values)
		if err != nil {
			panic(fmt.Sprintf("dicomtest.Set(%v): %v", t, err))
		}
		i, found := slices.BinarySearchFunc(elems, t, func(e *dicom.Element, t tag.Tag) int { return e.Tag.Compare(t) })
		if found {
			elems[i] = e
			return elems
		}
		return slices.Insert(elems, i, e)
	}
}

// SetUN sets an attribute with VR UN holding value, which is encoded as
// implicit VR little endian encodes it (PS3.5 6.2.2): what a gateway that
// did not know the attribute writes into an explicit VR data set. An odd
// length is padded with a space.
func SetUN(t tag.Tag, value []byte) Edition {
	return func(elems []*dicom.Element) []*dicom.Element {
		if len(value)%2 == 1 {
			value = append(slices.Clip(value), ' ')
		}
		v, err := dicom.NewValue(value)
		if err != nil {
			panic(fmt.Sprintf("dicomtest.SetUN(%v): %v", t, err))
		}
		e := &dicom.Element{Tag: t, ValueRepresentation: tag.VRBytes, RawValueRepresentation: "UN", ValueLength: uint32(len(value)), Value: v}
		i, found := slices.BinarySearchFunc(elems, t, func(e *dicom.Element, t tag.Tag) int { return e.Tag.Compare(t) })
		if found {
			elems[i] = e
			return elems
		}
		return slices.Insert(elems, i, e)
	}
}

// SetIfPresent is Set for an attribute that is only replaced, never added.
func SetIfPresent(t tag.Tag, values ...string) Edition {
	return func(elems []*dicom.Element) []*dicom.Element {
		if !slices.ContainsFunc(elems, func(e *dicom.Element) bool { return e.Tag == t }) {
			return elems
		}
		return Set(t, values...)(elems)
	}
}

// Remove removes an attribute.
func Remove(t tag.Tag) Edition {
	return func(elems []*dicom.Element) []*dicom.Element {
		return slices.DeleteFunc(elems, func(e *dicom.Element) bool { return e.Tag == t })
	}
}

// Edit returns a copy of ds with the editions applied. The elements of ds are
// not modified; unchanged ones (pixel data included) are shared.
func Edit(ds dicom.Dataset, eds ...Edition) dicom.Dataset {
	elems := slices.Clone(ds.Elements)
	slices.SortStableFunc(elems, func(a, b *dicom.Element) int { return a.Tag.Compare(b.Tag) })
	for _, ed := range eds {
		elems = ed(elems)
	}
	return dicom.Dataset{Elements: elems}
}

// stringValue returns the first value of a string attribute of ds, or "".
func stringValue(ds dicom.Dataset, t tag.Tag) string {
	e, err := ds.FindElementByTag(t)
	if err != nil || e.Value.ValueType() != dicom.Strings {
		return ""
	}
	vs := dicom.MustGetStrings(e.Value)
	if len(vs) == 0 {
		return ""
	}
	return strings.Trim(vs[0], " \x00")
}

// Encode writes ds as a DICOM Part 10 file in the transfer syntax of its
// File Meta Information. The library cannot write the deflated transfer
// syntax, so Encode writes such a data set as explicit VR little endian and
// deflates it itself (PS3.5 A.5).
func Encode(ds dicom.Dataset) ([]byte, error) {
	opts := []dicom.WriteOption{dicom.SkipVRVerification(), dicom.SkipValueTypeVerification()}
	if stringValue(ds, tag.TransferSyntaxUID) == deflatedTS {
		return encodeDeflated(ds, opts)
	}
	var buf bytes.Buffer
	if err := dicom.Write(&buf, ds, opts...); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// PixelData returns the raw value of the Pixel Data of a Part 10 object,
// its fragments joined when encapsulated; nil when it has none. Two
// objects whose pixel data are the same give the same bytes whatever else
// differs in their encoding.
func PixelData(tb testing.TB, b []byte) []byte {
	tb.Helper()
	ds, err := dicom.Parse(bytes.NewReader(b), int64(len(b)), nil, dicom.SkipProcessingPixelDataValue())
	if err != nil {
		tb.Fatalf("dicomtest.PixelData: %v", err)
	}
	e, err := ds.FindElementByTag(tag.PixelData)
	if err != nil {
		return nil
	}
	pi, ok := e.Value.GetValue().(dicom.PixelDataInfo)
	if !ok {
		tb.Fatalf("dicomtest.PixelData: a value of type %T", e.Value.GetValue())
	}
	if !pi.IsEncapsulated {
		return pi.UnprocessedValueData
	}
	var out []byte
	for _, f := range pi.Frames {
		out = append(out, f.EncapsulatedData.Data...)
	}
	return out
}
