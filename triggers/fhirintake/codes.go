package fhirintake

import (
	"strings"

	"github.com/priorflow/priorflow/triggers"
)

// DICOMSystem is the DICOM Controlled Terminology code system (PS3.16); a
// code in it on an order or appointment is the modality (PS3.16 CID 29
// "Acquisition Modality": CT, MR, US ...).
const DICOMSystem = "http://dicom.nema.org/resources/ontology/DCM"

// modalityWords maps the leading word of a local procedure code ("CT0012",
// "MR-BRAIN") or a word of a display ("CT Head w/o contrast", "Chest CT")
// to a DICOM modality. It is a heuristic for sites whose order codes do not
// carry a DCM coding; a DCM coding always wins.
var modalityWords = map[string]string{
	"CT": "CT", "MR": "MR", "MRI": "MR", "US": "US", "ULTRASOUND": "US", "NM": "NM", "PET": "PT", "PT": "PT",
	"XR": "DX", "X-RAY": "DX", "XRAY": "DX", "DX": "DX", "CR": "CR", "MG": "MG", "MAMMO": "MG", "MAMMOGRAM": "MG",
	"MAMMOGRAPHY": "MG", "RF": "RF", "FLUORO": "RF", "XA": "XA", "ANGIO": "XA",
}

// ambiguousInText are modality words too common in prose to trust inside a
// display ("US" is also the country, "PT" physiotherapy); they count only
// as the start of a code.
var ambiguousInText = map[string]bool{"US": true, "PT": true, "CR": true, "RF": true, "DX": true, "MG": true}

// modalityOf returns the DICOM modality the concepts name, or "".
func modalityOf(ccs ...*codeableConcept) string {
	for _, cc := range ccs {
		if cc == nil {
			continue
		}
		for _, c := range cc.Coding {
			if c.System == DICOMSystem && c.Code != "" {
				return c.Code
			}
		}
	}
	for _, cc := range ccs {
		if cc == nil {
			continue
		}
		for _, c := range cc.Coding {
			if m := modalityWords[leadingWord(c.Code)]; m != "" {
				return m
			}
		}
		texts := []string{cc.Text}
		for _, c := range cc.Coding {
			texts = append(texts, c.Display)
		}
		for _, t := range texts {
			for _, w := range strings.FieldsFunc(strings.ToUpper(t), func(r rune) bool { return r == ' ' || r == ',' || r == '/' || r == '(' || r == ')' }) {
				if m := modalityWords[w]; m != "" && !ambiguousInText[w] {
					return m
				}
			}
		}
	}
	return ""
}

// leadingWord is the upper-cased run of letters a code starts with
// ("CT0012" → CT, "MR-BRAIN" → MR, "CTHEAD" → CTHEAD, which names nothing).
func leadingWord(code string) string {
	code = strings.ToUpper(code)
	if strings.HasPrefix(code, "X-RAY") {
		return "X-RAY"
	}
	i := 0
	for i < len(code) && code[i] >= 'A' && code[i] <= 'Z' {
		i++
	}
	return code[:i]
}

// codes turns concepts into event codes: one per coding, or the text alone
// when a concept has no coding.
func codes(ccs ...*codeableConcept) []triggers.Code {
	var out []triggers.Code
	for _, cc := range ccs {
		if cc == nil {
			continue
		}
		for _, c := range cc.Coding {
			if c.Code != "" {
				out = append(out, triggers.Code{System: c.System, Code: c.Code, Display: c.Display})
			}
		}
		if len(cc.Coding) == 0 && cc.Text != "" {
			out = append(out, triggers.Code{Display: cc.Text})
		}
	}
	return out
}

func ptrs(ccs []codeableConcept) []*codeableConcept {
	out := make([]*codeableConcept, len(ccs))
	for i := range ccs {
		out[i] = &ccs[i]
	}
	return out
}

// requestPriority maps ServiceRequest.priority (FHIR R4 request-priority:
// routine | urgent | asap | stat); anything else is routine.
func requestPriority(code string) triggers.Priority {
	switch p := triggers.Priority(code); p {
	case triggers.PriorityStat, triggers.PriorityASAP, triggers.PriorityUrgent:
		return p
	}
	return triggers.PriorityRoutine
}

// appointmentPriority maps Appointment.priority, an unsignedInt on the
// iCalendar scale (FHIR R4 Appointment.priority; RFC 5545 3.8.1.9): 0 is
// undefined, 1 the highest, 9 the lowest, and 1-4 count as high. We read
// 1-2 as stat, 3-4 as urgent, and 0, absent or 5 and above as routine.
func appointmentPriority(p *int64) triggers.Priority {
	switch {
	case p == nil || *p <= 0:
		return triggers.PriorityRoutine
	case *p <= 2:
		return triggers.PriorityStat
	case *p <= 4:
		return triggers.PriorityUrgent
	}
	return triggers.PriorityRoutine
}

// ActPrioritySystem is HL7 v3 ActPriority, the code system of
// Encounter.priority (FHIR R4 value set v3-ActPriority).
const ActPrioritySystem = "http://terminology.hl7.org/CodeSystem/v3-ActPriority"

// encounterPriority maps Encounter.priority (v3 ActPriority): S stat and EM
// emergency → stat; A asap and T timing critical → asap; UR urgent and RR
// rush reporting → urgent; the rest routine.
func encounterPriority(cc *codeableConcept) triggers.Priority {
	if cc == nil {
		return triggers.PriorityRoutine
	}
	for _, c := range cc.Coding {
		if c.System != "" && c.System != ActPrioritySystem {
			continue
		}
		switch c.Code {
		case "S", "EM":
			return triggers.PriorityStat
		case "A", "T":
			return triggers.PriorityASAP
		case "UR", "RR":
			return triggers.PriorityUrgent
		}
	}
	return triggers.PriorityRoutine
}
