package rules

import (
	"slices"
	"strings"

	"github.com/priorflow/priorflow/triggers"
)

// modalities are the DICOM Modality (0008,0060) defined terms of PS3.3
// C.7.3.1.1.1 that a rule may name (retired terms left out).
var modalities = func() map[string]bool {
	set := map[string]bool{}
	for _, m := range strings.Fields(`AR ASMT AU BDUS BI BMD CR CT CTPROTOCOL DG DOC DX ECG EPS ES FID GM HC HD IO IOL
		IVOCT IVUS KER KO LEN LS M3D MG MR NM OAM OCT OP OPM OPT OPTBSV OPTENF OPV OSS OT PLAN POS PR PT PX REG RESP RF
		RG RTDOSE RTIMAGE RTINTENT RTPLAN RTRAD RTRECORD RTSEGANN RTSTRUCT RWV SEG SM SMR SR SRF STAIN TEXTUREMAP TG US VA XA XC`) {
		set[m] = true
	}
	return set
}()

// IsModality reports whether m is a DICOM modality defined term.
func IsModality(m string) bool { return modalities[m] }

// modalityGroups are modalities whose studies stand in for one another as
// priors: computed and digital radiography are the same projection images
// (CR≈DX); PET studies carry the CT of a PET-CT (PT≈CT). A modality in no
// group (MR, US, MG …) only matches itself.
var modalityGroups = [][]string{
	{"CR", "DX"},
	{"CT", "PT"},
}

// ExpandModalities returns ms with every group member added, sorted.
func ExpandModalities(ms ...string) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m)
		for _, g := range modalityGroups {
			if slices.Contains(g, m) {
				out = append(out, g...)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Body regions a prior is matched on. A region is coarse on purpose: a
// chest CT is a relevant prior for a chest X-ray.
const (
	RegionHead      = "head"
	RegionNeck      = "neck"
	RegionChest     = "chest"
	RegionBreast    = "breast"
	RegionAbdomen   = "abdomen"
	RegionPelvis    = "pelvis"
	RegionSpine     = "spine"
	RegionUpperLimb = "upper-limb"
	RegionLowerLimb = "lower-limb"
	RegionWholeBody = "whole-body"
	RegionCardiac   = "heart"
)

// Regions lists every region.
var Regions = []string{RegionHead, RegionNeck, RegionChest, RegionBreast, RegionCardiac, RegionAbdomen, RegionPelvis,
	RegionSpine, RegionUpperLimb, RegionLowerLimb, RegionWholeBody}

// snomedRegions maps SNOMED CT body structure concepts (the codes FHIR
// bodySite and HL7 v2 OBR-15/SPM-8 carry) to a region. Unknown codes give no
// region, so the rule falls back to any region rather than miss a prior.
var snomedRegions = map[string]string{
	"69536005":  RegionHead,    // Head structure
	"12738006":  RegionHead,    // Brain structure
	"89546000":  RegionHead,    // Bone structure of cranium
	"45048000":  RegionNeck,    // Neck structure
	"51185008":  RegionChest,   // Thoracic structure
	"39607008":  RegionChest,   // Lung structure
	"80891009":  RegionCardiac, // Heart structure
	"76752008":  RegionBreast,  // Breast structure
	"113345001": RegionAbdomen, // Abdominal structure
	"10200004":  RegionAbdomen, // Liver structure
	"64033007":  RegionAbdomen, // Kidney structure
	"12921003":  RegionPelvis,  // Pelvis structure
	"421060004": RegionSpine,   // Vertebral column structure
	"122494005": RegionSpine,   // Cervical spine structure
	"122495006": RegionSpine,   // Thoracic spine structure
	"122496007": RegionSpine,   // Lumbar spine structure
	"53120007":  RegionUpperLimb,
	"16982005":  RegionUpperLimb, // Shoulder region structure
	"61685007":  RegionLowerLimb, // Lower limb structure
	"72696002":  RegionLowerLimb, // Knee region structure
	"29836001":  RegionLowerLimb, // Hip region structure
	"38266002":  RegionWholeBody, // Entire body as a whole
}

// wordRegions maps words of DICOM Body Part Examined (0018,0015) defined
// terms (PS3.16 Annex L) and of common procedure names ("CT HEAD W/O",
// "MR L-SPINE", "XR CHEST 2 VIEWS") to a region.
var wordRegions = map[string]string{
	"HEAD": RegionHead, "BRAIN": RegionHead, "SKULL": RegionHead, "ORBIT": RegionHead, "SINUS": RegionHead, "FACE": RegionHead,
	"IAC": RegionHead, "TMJ": RegionHead, "NECK": RegionNeck, "THYROID": RegionNeck, "LARYNX": RegionNeck,
	"CHEST": RegionChest, "THORAX": RegionChest, "LUNG": RegionChest, "LUNGS": RegionChest, "RIBS": RegionChest, "CXR": RegionChest,
	"HEART": RegionCardiac, "CARDIAC": RegionCardiac, "CORONARY": RegionCardiac,
	"BREAST": RegionBreast, "MAMMO": RegionBreast, "MAMMOGRAM": RegionBreast, "MAMMOGRAPHY": RegionBreast,
	"ABDOMEN": RegionAbdomen, "ABD": RegionAbdomen, "LIVER": RegionAbdomen, "KIDNEY": RegionAbdomen, "RENAL": RegionAbdomen,
	"PANCREAS": RegionAbdomen, "ABDOMENPELVIS": RegionAbdomen,
	"PELVIS": RegionPelvis, "PELVIC": RegionPelvis, "HIP": RegionLowerLimb, "PROSTATE": RegionPelvis, "BLADDER": RegionPelvis,
	"SPINE": RegionSpine, "CSPINE": RegionSpine, "TSPINE": RegionSpine, "LSPINE": RegionSpine, "SSPINE": RegionSpine,
	"SHOULDER": RegionUpperLimb, "ARM": RegionUpperLimb, "ELBOW": RegionUpperLimb, "WRIST": RegionUpperLimb, "HAND": RegionUpperLimb,
	"HUMERUS": RegionUpperLimb, "FOREARM": RegionUpperLimb, "FINGER": RegionUpperLimb,
	"KNEE": RegionLowerLimb, "LEG": RegionLowerLimb, "ANKLE": RegionLowerLimb, "FOOT": RegionLowerLimb, "FEMUR": RegionLowerLimb,
	"TIBIA": RegionLowerLimb, "TOE": RegionLowerLimb,
	"WHOLEBODY": RegionWholeBody,
}

// BodyRegions derives the regions of an event from its body sites and
// procedures: SNOMED codes by table, everything else by the words of the
// code and display. Nil means unknown.
func BodyRegions(ev *triggers.CareEvent) []string {
	var out []string
	add := func(c triggers.Code) {
		if r, ok := snomedRegions[c.Code]; ok {
			out = append(out, r)
			return
		}
		for _, text := range []string{c.Code, c.Display} {
			for _, w := range strings.FieldsFunc(strings.ToUpper(text), func(r rune) bool {
				return !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-')
			}) {
				w = strings.ReplaceAll(w, "-", "") // L-SPINE, WHOLE-BODY
				if r, ok := wordRegions[w]; ok {
					out = append(out, r)
				}
			}
		}
	}
	for _, c := range ev.BodySites {
		add(c)
	}
	for _, c := range ev.Procedures {
		add(c)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
