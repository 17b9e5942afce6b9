package archive

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	dpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	ispb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/imaging_study_go_proto"
	ppb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/patient_go_proto"

	"github.com/priorflow/priorflow/archive/dicomheader"
	"github.com/priorflow/priorflow/fhir"
)

// The archive builds the Patient and ImagingStudy it indexes as R4 protos
// rather than as JSON for the codec to parse: printing and parsing that JSON
// was a tenth of the API's CPU during a STOW-RS ingest. The protos are the
// messages the codec parses from the JSON the archive wrote before
// (TestImagingStudy_SameAsParsedJSON, TestPatient_SameAsParsedJSON,
// FuzzResources_SameAsParsedJSON), and they are checked with the codec's
// rules before they are stored, so that a value from a file that R4 does
// not take is refused as it was.

// imagingStudy builds the ImagingStudy of a study from the archive's record
// of it (st, series) over its current version (nil when there is none).
// Elements that do not come from DICOM (basedOn, encounter, reasonCode,
// notes, meta tags ...) are kept from the current version.
func (a *Archive) imagingStudy(study string, st *studyRow, series []*seriesRow, current []byte) (*ispb.ImagingStudy, error) {
	is := &ispb.ImagingStudy{}
	if current != nil {
		more, err := keepsOwnElements(current)
		if err != nil {
			return nil, fmt.Errorf("ImagingStudy of study %s: %w", study, err)
		}
		if more {
			msg, _, err := a.codec().Parse(current)
			if err != nil {
				return nil, fmt.Errorf("ImagingStudy of study %s: %w", study, err)
			}
			is = msg.(*ispb.ImagingStudy)
		}
	}
	loc := time.Local
	if l, err := dicomheader.ParseTimezoneOffset(st.tz); err == nil && l != nil {
		loc = l
	}
	subject, err := fhir.Reference("Patient", st.patientFHIR)
	if err != nil {
		return nil, err
	}
	endpoint, err := fhir.Reference("Endpoint", LocalEndpointID)
	if err != nil {
		return nil, err
	}
	is.Id = &dpb.Id{Value: st.isID}
	is.Identifier = []*dpb.Identifier{{
		Use:    &dpb.Identifier_UseCode{Value: cpb.IdentifierUseCode_OFFICIAL},
		System: &dpb.Uri{Value: SystemDICOMUID}, Value: &dpb.String{Value: "urn:oid:" + study},
	}}
	if st.acc != "" {
		is.Identifier = append(is.Identifier, &dpb.Identifier{
			Type:   &dpb.CodeableConcept{Coding: []*dpb.Coding{coding(SystemV20203, "ACSN", "")}},
			System: &dpb.Uri{Value: a.cfg.AccessionSystem}, Value: fhirString(st.acc),
		})
	}
	is.Status = &ispb.ImagingStudy_StatusCode{Value: cpb.ImagingStudyStatusCode_AVAILABLE}
	is.Subject = subject
	is.Endpoint = []*dpb.Reference{endpoint}
	is.Started = dateTime(st.date, st.tm, loc)
	is.Description = optString(st.desc)
	is.Referrer = nil
	if st.referrer != "" {
		is.Referrer = &dpb.Reference{Display: fhirString(dicomheader.ParsePersonName(st.referrer).Raw)}
	}
	is.Modality = nil
	seen := map[string]bool{}
	is.Series = make([]*ispb.ImagingStudy_Series, 0, len(series))
	total := 0
	for _, s := range series {
		mod := s.modality
		if mod == "" {
			mod = "OT"
		}
		if !seen[mod] {
			seen[mod] = true
			is.Modality = append(is.Modality, coding(SystemDCM, mod, ""))
		}
		fs := &ispb.ImagingStudy_Series{
			Uid:               &dpb.Id{Value: s.uid},
			Number:            unsignedInt(s.number),
			Modality:          coding(SystemDCM, mod, ""),
			Description:       optString(s.description),
			NumberOfInstances: &dpb.UnsignedInt{Value: uint32(len(s.instances))},
			BodySite:          bodySite(s.bodyPart),
			Laterality:        laterality(s.laterality),
			Started:           dateTime(s.date, s.time, loc),
			Instance:          make([]*ispb.ImagingStudy_Series_Instance, len(s.instances)),
		}
		for i, in := range s.instances {
			fs.Instance[i] = &ispb.ImagingStudy_Series_Instance{
				Uid:      &dpb.Id{Value: in.uid},
				SopClass: coding(SystemRFC3986, "urn:oid:"+in.sopClass, ""),
				Number:   unsignedInt(in.number),
			}
		}
		total += len(s.instances)
		is.Series = append(is.Series, fs)
	}
	is.NumberOfSeries = &dpb.UnsignedInt{Value: uint32(len(series))}
	is.NumberOfInstances = &dpb.UnsignedInt{Value: uint32(total)}
	if err := a.codec().Check(is); err != nil {
		return nil, fmt.Errorf("ImagingStudy of study %s: %w", study, err)
	}
	return is, nil
}

// rebuilt are the elements imagingStudy writes whatever the current version
// holds.
var rebuilt = map[string]bool{
	"resourceType": true, "id": true, "identifier": true, "status": true, "subject": true, "endpoint": true,
	"started": true, "description": true, "referrer": true, "modality": true, "numberOfSeries": true,
	"numberOfInstances": true, "series": true,
}

// keepsOwnElements reports whether the stored ImagingStudy holds anything
// that rebuilding it would not write again (meta beyond the version the
// store sets counts), so that it has to be parsed and kept. An ImagingStudy
// the archive wrote alone is rebuilt without parsing it: parsing grew with
// every request that added instances to a large study.
func keepsOwnElements(current []byte) (bool, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(current, &top); err != nil {
		return false, err
	}
	for k, v := range top {
		if rebuilt[k] {
			continue
		}
		if k != "meta" {
			return true, nil
		}
		var meta map[string]json.RawMessage
		if err := json.Unmarshal(v, &meta); err != nil {
			return false, err
		}
		for mk := range meta {
			if mk != "versionId" && mk != "lastUpdated" {
				return true, nil
			}
		}
	}
	return false, nil
}

// patient builds the Patient an object's PatientID and demographics
// describe, with identifier tok.
func (a *Archive) patient(h *dicomheader.Header, tok fhir.Token) (*ppb.Patient, error) {
	p := &ppb.Patient{Identifier: []*dpb.Identifier{{System: &dpb.Uri{Value: tok.System}, Value: fhirString(tok.Code)}}}
	p.Name = humanNames(h.PatientName)
	if t, prec, err := dicomheader.ParseDate(h.PatientBirthDate); err == nil && prec > 0 {
		// As the codec parses "2006-01-02": midnight in its zone, UTC.
		d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
		p.BirthDate = &dpb.Date{ValueUs: d.UnixMicro(), Timezone: "UTC", Precision: dpb.Date_DAY}
	}
	if g, ok := genders[strings.ToUpper(h.PatientSex)]; ok {
		p.Gender = &ppb.Patient_GenderCode{Value: g}
	}
	if err := a.codec().Check(p); err != nil {
		return nil, fmt.Errorf("patient: %w", err)
	}
	return p, nil
}

// humanNames returns the names of a DICOM Person Name. A name with
// ideographic or phonetic component groups (PS3.5 6.2.1.2: Japanese,
// Korean and Chinese names, "Yamada^Tarou=山田^太郎=やまだ^たろう") gives one
// HumanName per group, each marked with its fhir.ENRepresentation, so that a
// search by family name finds the patient by either writing; the text of
// each is its group as DICOM writes it. Other names give one HumanName,
// whose text is the whole value.
func humanNames(n dicomheader.PersonName) []*dpb.HumanName {
	if n.IsEmpty() {
		return nil
	}
	if n.Ideographic == "" && n.Phonetic == "" {
		return []*dpb.HumanName{humanName(n, "")}
	}
	var out []*dpb.HumanName
	alphabetic, _, _ := strings.Cut(n.Raw, "=")
	for _, g := range []struct{ raw, code string }{{alphabetic, "ABC"}, {n.Ideographic, "IDE"}, {n.Phonetic, "SYL"}} {
		if pn := dicomheader.ParsePersonName(g.raw); !pn.IsEmpty() {
			out = append(out, humanName(pn, g.code))
		}
	}
	return out
}

// humanName is the HumanName of n, marked with representation unless it is
// "".
func humanName(n dicomheader.PersonName, representation string) *dpb.HumanName {
	name := &dpb.HumanName{Text: fhirString(n.Raw)}
	if representation != "" {
		name.Extension = []*dpb.Extension{{Url: &dpb.Uri{Value: fhir.ENRepresentation},
			Value: &dpb.Extension_ValueX{Choice: &dpb.Extension_ValueX_Code{Code: &dpb.Code{Value: representation}}}}}
	}
	if n.Family != "" {
		name.Family = fhirString(n.Family)
	}
	for _, g := range strings.Fields(strings.TrimSpace(n.Given + " " + n.Middle)) {
		name.Given = append(name.Given, fhirString(g))
	}
	return name
}

var genders = map[string]cpb.AdministrativeGenderCode_Value{
	"M": cpb.AdministrativeGenderCode_MALE,
	"F": cpb.AdministrativeGenderCode_FEMALE,
	"O": cpb.AdministrativeGenderCode_OTHER,
}

// fhirString is s as a FHIR string, with invalid UTF-8 replaced as
// encoding/json replaces it in what the store prints.
func fhirString(s string) *dpb.String {
	return &dpb.String{Value: fhir.ValidUTF8(s)}
}

func optString(s string) *dpb.String {
	if s == "" {
		return nil
	}
	return fhirString(s)
}

func coding(system, code, display string) *dpb.Coding {
	c := &dpb.Coding{System: &dpb.Uri{Value: system}, Code: &dpb.Code{Value: fhir.ValidUTF8(code)}}
	if display != "" {
		c.Display = fhirString(display)
	}
	return c
}

// unsignedInt is n as an unsignedInt, or nil when absent or negative: a
// negative Series or Instance Number, which DICOM allows, has no place in
// R4's unsignedInt and must not cost the study its index.
func unsignedInt(n *int) *dpb.UnsignedInt {
	if n == nil || *n < 0 {
		return nil
	}
	return &dpb.UnsignedInt{Value: uint32(*n)}
}

// dateTime turns DICOM DA and TM into a FHIR dateTime at the precision
// present, as the codec parses what fhirDateTime prints: a date alone is a
// day in UTC, a time is to the second in the study's zone ("Z" at offset 0).
func dateTime(da, tm string, loc *time.Location) *dpb.DateTime {
	if da == "" {
		return nil
	}
	if tm != "" {
		if t, _, err := dicomheader.CombineDateTime(da, tm, loc); err == nil {
			t = t.Truncate(time.Second)
			return &dpb.DateTime{ValueUs: t.UnixMicro(), Timezone: zone(t), Precision: dpb.DateTime_SECOND}
		}
	}
	if t, _, err := dicomheader.ParseDate(da); err == nil {
		d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
		return &dpb.DateTime{ValueUs: d.UnixMicro(), Timezone: "UTC", Precision: dpb.DateTime_DAY}
	}
	return nil
}

func zone(t time.Time) string {
	_, off := t.Zone()
	if off == 0 {
		return "Z"
	}
	sign := "+"
	if off < 0 {
		sign, off = "-", -off
	}
	return fmt.Sprintf("%s%02d:%02d", sign, off/3600, off%3600/60)
}
