// Package auth decides who may reach patient data: the SMART on FHIR scopes
// and the authenticated caller (Principal) that every HTTP entry point —
// FHIR, DICOMweb, subscriptions — checks before it answers.
//
// It stands at the top level because authorization cuts across the FHIR
// server, the DICOM archive and the subscription endpoints alike: none of
// fhir/, archive/ or subscriptions/ owns it, and each of them asks it.
// Its subpackages are the resource server that validates access tokens
// (jwtauth), the built-in SMART Backend Services token endpoint
// (tokenserver), and the audit trail of who did what (audit).
package auth
