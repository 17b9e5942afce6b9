package search

import (
	"fmt"
	"slices"
	"strings"

	"github.com/priorflow/priorflow/triggers"
	"github.com/priorflow/priorflow/triggers/rules"
)

// Select applies a rule's criteria to the merged studies: lookback,
// excluded modalities, modality groups (already expanded in the criteria),
// body region, then the MaxPriors most recent. A study whose region cannot
// be told is kept rather than miss a prior; one without a date is kept
// only when there is no lookback and ranks last.
func Select(found []RemoteStudy, c rules.Criteria) (selected []RemoteStudy, skipped []Skipped) {
	skip := func(st RemoteStudy, r SkipReason, format string, args ...any) {
		skipped = append(skipped, Skipped{StudyInstanceUID: st.StudyInstanceUID, Source: st.Source, Reason: r, Detail: fmt.Sprintf(format, args...)})
	}
	var relevant []RemoteStudy
	for _, st := range found {
		if c.Since != nil && (st.Date.IsZero() || st.Date.Before(*c.Since)) {
			skip(st, SkipLookback, "study date %s is before %s", dateOf(st), c.Since.Format("2006-01-02"))
			continue
		}
		mods := slices.DeleteFunc(slices.Clone(st.ModalitiesInStudy), func(m string) bool { return slices.Contains(c.ExcludeModalities, m) })
		if len(st.ModalitiesInStudy) > 0 && len(mods) == 0 {
			skip(st, SkipExcluded, "only excluded modalities %s", strings.Join(st.ModalitiesInStudy, ","))
			continue
		}
		if len(c.Modalities) > 0 && len(mods) > 0 && !slices.ContainsFunc(mods, func(m string) bool { return slices.Contains(c.Modalities, m) }) {
			skip(st, SkipModality, "modalities %s, want %s", strings.Join(mods, ","), strings.Join(c.Modalities, ","))
			continue
		}
		if len(c.BodyRegions) > 0 {
			if regions := StudyRegions(st); len(regions) > 0 && !slices.ContainsFunc(regions, func(r string) bool { return slices.Contains(c.BodyRegions, r) }) {
				skip(st, SkipBodyRegion, "regions %s, want %s", strings.Join(regions, ","), strings.Join(c.BodyRegions, ","))
				continue
			}
		}
		relevant = append(relevant, st)
	}
	// Most recent first; undated last; StudyInstanceUID breaks ties so
	// that the choice is stable.
	slices.SortStableFunc(relevant, func(a, b RemoteStudy) int {
		switch {
		case a.Date.IsZero() != b.Date.IsZero():
			if a.Date.IsZero() {
				return 1
			}
			return -1
		case !a.Date.Equal(b.Date):
			return b.Date.Compare(a.Date)
		}
		return strings.Compare(a.StudyInstanceUID, b.StudyInstanceUID)
	})
	max := c.MaxPriors
	if max <= 0 {
		max = rules.DefaultMaxPriors
	}
	for i, st := range relevant {
		if i >= max {
			skip(st, SkipBeyondMax, "%d more recent relevant studies were selected", max)
			continue
		}
		selected = append(selected, st)
	}
	return selected, skipped
}

// StudyRegions derives a study's body regions from its series' Body Part
// Examined (PS3.16 Annex L) and its description, with the rules' tables.
func StudyRegions(st RemoteStudy) []string {
	ev := &triggers.CareEvent{}
	for _, p := range st.BodyParts {
		ev.BodySites = append(ev.BodySites, triggers.Code{Code: p})
	}
	for _, se := range st.Series {
		if se.BodyPartExamined != "" {
			ev.BodySites = append(ev.BodySites, triggers.Code{Code: se.BodyPartExamined})
		}
	}
	if st.Description != "" {
		ev.Procedures = append(ev.Procedures, triggers.Code{Display: st.Description})
	}
	return rules.BodyRegions(ev)
}

func dateOf(st RemoteStudy) string {
	if st.Date.IsZero() {
		return "(unknown)"
	}
	return st.Date.Format("2006-01-02")
}
