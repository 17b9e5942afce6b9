package bench

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"
)

// Code systems of the synthetic data.
const (
	// SystemMRN is the issuer of the synthetic medical record numbers.
	SystemMRN = "urn:oid:1.2.3.4.5"
	// SystemDICOMUID is the identifier system of a StudyInstanceUID in
	// ImagingStudy.identifier (FHIR R4 ImagingStudy notes: "urn:dicom:uid").
	SystemDICOMUID = "urn:dicom:uid"
	// SystemDCM is the DICOM controlled terminology (PS3.16) that holds the
	// modality codes of ImagingStudy.series.modality.
	SystemDCM = "http://dicom.nema.org/resources/ontology/DCM"

	systemAccession = "urn:oid:1.2.3.4.5.6"
	systemV2_0203   = "http://terminology.hl7.org/CodeSystem/v2-0203"
	systemSNOMED    = "http://snomed.info/sct"
	systemRFC3986   = "urn:ietf:rfc:3986"
)

// Studies per patient are drawn from 1..maxStudiesPerPatient (mean 5, so
// 1,000,000 studies belong to about 200,000 patients).
const maxStudiesPerPatient = 9

// modality is one acquisition modality with the shape of its studies.
type modality struct {
	code, display string
	sopClass      string // Storage SOP Class UID (DICOM PS3.4 B.5)
	weight        int    // relative frequency
	maxSeries     int
	maxInstances  int // per series, at most 20: see docs/performance.md
}

// Radiography dominates a real archive; CT and MR have more series and
// (here, capped) more instances.
var modalities = []modality{
	{"CR", "Computed Radiography", "1.2.840.10008.5.1.4.1.1.1", 25, 2, 3},
	{"DX", "Digital Radiography", "1.2.840.10008.5.1.4.1.1.1.1", 20, 2, 3},
	{"CT", "Computed Tomography", "1.2.840.10008.5.1.4.1.1.2", 20, 5, 20},
	{"MR", "Magnetic Resonance", "1.2.840.10008.5.1.4.1.1.4", 15, 5, 20},
	{"US", "Ultrasound", "1.2.840.10008.5.1.4.1.1.6.1", 15, 3, 10},
	{"PT", "Positron emission tomography", "1.2.840.10008.5.1.4.1.1.128", 5, 4, 20},
}

var bodySites = []struct{ code, display string }{
	{"51185008", "Thoracic structure"},
	{"69536005", "Head structure"},
	{"818983003", "Abdomen"},
	{"816092008", "Pelvis"},
	{"421060004", "Spinal cord structure"},
	{"72696002", "Knee region structure"},
	{"76752008", "Breast structure"},
}

var (
	families = []string{"Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
		"Rodriguez", "Martinez", "Müller", "Schmidt", "Nguyen", "Kowalski", "Rossi", "Dubois"}
	givens = []string{"James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda",
		"David", "Elizabeth", "José", "Anna", "Wei", "Fatima", "Lars", "Chloé"}
)

// Generator makes a deterministic synthetic archive: the same seed and study
// count always give the same patients and studies, so a loaded database can
// be reused and results compared across runs.
type Generator struct {
	seed    uint64
	studies int // total
}

// NewGenerator returns a generator of studies ImagingStudy resources.
func NewGenerator(seed uint64, studies int) *Generator {
	return &Generator{seed: seed, studies: studies}
}

// PatientData is one synthetic patient with its studies, as Bundle entries.
type PatientData struct {
	Index   int
	MRN     string
	Patient json.RawMessage
	Studies []json.RawMessage
}

// Walk calls fn for each patient in order until the study count is reached
// or fn returns false.
func (g *Generator) Walk(fn func(*PatientData) bool) {
	study := 0
	for p := 0; study < g.studies; p++ {
		rng := rand.New(rand.NewPCG(g.seed, uint64(p)))
		n := min(1+rng.IntN(maxStudiesPerPatient), g.studies-study)
		pd := &PatientData{Index: p, MRN: MRN(p)}
		pd.Patient = mustJSON(g.patient(rng, p))
		for i := 0; i < n; i++ {
			pd.Studies = append(pd.Studies, mustJSON(g.study(rng, p, study)))
			study++
		}
		if !fn(pd) {
			return
		}
	}
}

// MRN is the medical record number of patient p.
func MRN(p int) string { return fmt.Sprintf("MRN%08d", p) }

// PatientURN is the fullUrl of patient p inside the Bundle that creates it.
func (g *Generator) PatientURN(p int) string {
	return fmt.Sprintf("urn:uuid:%08x-0000-4000-8000-%012x", uint32(g.seed), p)
}

func (g *Generator) studyURN(n int) string {
	return fmt.Sprintf("urn:uuid:%08x-0001-4000-8000-%012x", uint32(g.seed), n)
}

// StudyInstanceUID is the UID of study n: a 2.25 UID (DICOM PS3.5 B.2,
// derived from a UUID-sized integer) made unique by its last digits.
func (g *Generator) StudyInstanceUID(n int) string {
	h := rand.New(rand.NewPCG(g.seed^0x9e3779b97f4a7c15, uint64(n))).Uint64()
	return fmt.Sprintf("2.25.%d%010d", h>>4, n)
}

type coding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

type codeableConcept struct {
	Coding []coding `json:"coding"`
}

type identifier struct {
	Type   *codeableConcept `json:"type,omitempty"`
	System string           `json:"system"`
	Value  string           `json:"value"`
}

type reference struct {
	Reference string `json:"reference"`
}

type patient struct {
	ResourceType string       `json:"resourceType"`
	Identifier   []identifier `json:"identifier"`
	Active       bool         `json:"active"`
	Name         []struct {
		Family string   `json:"family"`
		Given  []string `json:"given"`
	} `json:"name"`
	Gender    string `json:"gender"`
	BirthDate string `json:"birthDate"`
}

func (g *Generator) patient(rng *rand.Rand, p int) *patient {
	pt := &patient{ResourceType: "Patient", Active: true,
		Identifier: []identifier{{System: SystemMRN, Value: MRN(p)}},
		Gender:     []string{"female", "male"}[rng.IntN(2)],
		BirthDate:  time.Date(1930, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, rng.IntN(90*365)).Format(time.DateOnly),
	}
	pt.Name = append(pt.Name, struct {
		Family string   `json:"family"`
		Given  []string `json:"given"`
	}{families[rng.IntN(len(families))], []string{givens[rng.IntN(len(givens))]}})
	return pt
}

type instance struct {
	UID      string `json:"uid"`
	SOPClass coding `json:"sopClass"`
	Number   int    `json:"number"`
}

type series struct {
	UID               string     `json:"uid"`
	Number            int        `json:"number"`
	Modality          coding     `json:"modality"`
	NumberOfInstances int        `json:"numberOfInstances"`
	BodySite          coding     `json:"bodySite"`
	Instance          []instance `json:"instance"`
}

type imagingStudy struct {
	ResourceType      string       `json:"resourceType"`
	Identifier        []identifier `json:"identifier"`
	Status            string       `json:"status"`
	Modality          []coding     `json:"modality"`
	Subject           reference    `json:"subject"`
	Started           string       `json:"started"`
	NumberOfSeries    int          `json:"numberOfSeries"`
	NumberOfInstances int          `json:"numberOfInstances"`
	Description       string       `json:"description,omitempty"`
	Series            []series     `json:"series"`
}

var (
	startedFrom = time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC)
	startedSpan = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Sub(startedFrom)
)

func pickModality(rng *rand.Rand) modality {
	total := 0
	for _, m := range modalities {
		total += m.weight
	}
	w := rng.IntN(total)
	for _, m := range modalities {
		if w < m.weight {
			return m
		}
		w -= m.weight
	}
	return modalities[0]
}

func modalityByCode(code string) modality {
	for _, m := range modalities {
		if m.code == code {
			return m
		}
	}
	panic("unknown modality " + code)
}

// study makes study n of patient p.
func (g *Generator) study(rng *rand.Rand, p, n int) *imagingStudy {
	uid := g.StudyInstanceUID(n)
	m := pickModality(rng)
	site := bodySites[rng.IntN(len(bodySites))]
	started := startedFrom.Add(time.Duration(rng.Int64N(int64(startedSpan))) / time.Second * time.Second)
	st := &imagingStudy{
		ResourceType: "ImagingStudy",
		Identifier: []identifier{
			{System: SystemDICOMUID, Value: "urn:oid:" + uid},
			{Type: &codeableConcept{Coding: []coding{{System: systemV2_0203, Code: "ACSN"}}},
				System: systemAccession, Value: fmt.Sprintf("ACC%010d", n)},
		},
		Status:      "available",
		Subject:     reference{Reference: g.PatientURN(p)},
		Started:     started.Format(time.RFC3339),
		Description: m.display + " " + site.display,
	}
	nseries := 1 + rng.IntN(m.maxSeries)
	seen := map[string]bool{}
	for s := 1; s <= nseries; s++ {
		sm := m
		if m.code == "PT" && s == 1 {
			sm = modalityByCode("CT") // PET/CT: the attenuation-correction CT
		}
		se := series{UID: fmt.Sprintf("%s.%d", uid, s), Number: s,
			Modality: coding{System: SystemDCM, Code: sm.code},
			BodySite: coding{System: systemSNOMED, Code: site.code, Display: site.display}}
		ninst := 1 + rng.IntN(sm.maxInstances)
		for i := 1; i <= ninst; i++ {
			se.Instance = append(se.Instance, instance{UID: fmt.Sprintf("%s.%d", se.UID, i),
				SOPClass: coding{System: systemRFC3986, Code: "urn:oid:" + sm.sopClass}, Number: i})
		}
		se.NumberOfInstances = ninst
		st.NumberOfInstances += ninst
		st.Series = append(st.Series, se)
		if !seen[sm.code] {
			seen[sm.code] = true
			st.Modality = append(st.Modality, coding{System: SystemDCM, Code: sm.code})
		}
	}
	st.NumberOfSeries = nseries
	return st
}

// Bundle builds a transaction Bundle (FHIR R4 3.1.0.11.2) that creates the
// given patients, each conditionally on its MRN (request.ifNoneExist), and
// their studies, which reference their patient by its urn:uuid fullUrl.
func (g *Generator) Bundle(pds []*PatientData) []byte {
	type request struct {
		Method      string `json:"method"`
		URL         string `json:"url"`
		IfNoneExist string `json:"ifNoneExist,omitempty"`
	}
	type entry struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
		Request  request         `json:"request"`
	}
	b := struct {
		ResourceType string  `json:"resourceType"`
		Type         string  `json:"type"`
		Entry        []entry `json:"entry"`
	}{ResourceType: "Bundle", Type: "transaction"}
	for _, pd := range pds {
		b.Entry = append(b.Entry, entry{FullURL: g.PatientURN(pd.Index), Resource: pd.Patient,
			Request: request{Method: "POST", URL: "Patient", IfNoneExist: "identifier=" + SystemMRN + "|" + pd.MRN}})
		for _, st := range pd.Studies {
			b.Entry = append(b.Entry, entry{FullURL: g.studyURN(len(b.Entry)), Resource: st,
				Request: request{Method: "POST", URL: "ImagingStudy"}})
		}
	}
	return mustJSON(b)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own types are marshalled
	}
	return b
}
