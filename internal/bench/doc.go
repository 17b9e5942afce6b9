// Package bench measures Priorflow's FHIR store at archive scale: it
// generates a deterministic synthetic archive of Patients and ImagingStudy,
// loads it through transaction Bundles, and times the searches a prior
// lookup makes, each beside the raw SQL that returns the same rows, so the
// cost of the FHIR layer is measured rather than guessed.
package bench
