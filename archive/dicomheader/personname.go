package dicomheader

import "strings"

// PersonName is a value of VR PN split per PS3.5 6.2: up to three component
// groups separated by "=" (alphabetic, ideographic, phonetic), each with up to
// five components separated by "^" (family name, given name, middle name,
// prefix, suffix). The components are taken from the alphabetic group.
type PersonName struct {
	Raw         string // the value as stored, padding removed
	Family      string
	Given       string
	Middle      string
	Prefix      string
	Suffix      string
	Ideographic string // the ideographic component group, unsplit
	Phonetic    string // the phonetic component group, unsplit
}

// ParsePersonName splits one PN value (PS3.5 6.2). Surrounding spaces of the
// value and of each component are removed.
func ParsePersonName(raw string) PersonName {
	raw = strings.TrimRight(strings.TrimLeft(raw, " "), " \x00")
	pn := PersonName{Raw: raw}
	if raw == "" {
		return pn
	}
	groups := strings.SplitN(raw, "=", 3)
	comps := strings.SplitN(groups[0], "^", 5)
	fields := []*string{&pn.Family, &pn.Given, &pn.Middle, &pn.Prefix, &pn.Suffix}
	for i, c := range comps {
		*fields[i] = strings.TrimSpace(c)
	}
	if len(groups) > 1 {
		pn.Ideographic = groups[1]
	}
	if len(groups) > 2 {
		pn.Phonetic = groups[2]
	}
	return pn
}

// IsEmpty reports whether the name has no components at all, as in "" or
// "^^^^" (PS3.5 6.2).
func (pn PersonName) IsEmpty() bool {
	return strings.Trim(pn.Raw, "^= ") == ""
}
