package fhir

// The search parameters below are the R4 definitions
// (http://hl7.org/fhir/R4/searchparameter-registry.html); the Path is the
// definition's expression where it is a plain path, and where it uses
// where(resolve() is X) the parameter lists X in Targets instead.

const sp = "http://hl7.org/fhir/SearchParameter/"

// ImagingStudy returns the ImagingStudy type with all 17 R4 parameters.
func ImagingStudy() *ResourceType {
	return &ResourceType{
		Name: "ImagingStudy",
		Params: []*SearchParam{
			{Name: "identifier", Type: ParamToken, Path: "ImagingStudy.identifier", Description: "Identifiers for the Study, such as DICOM Study Instance UID and Accession number", Definition: sp + "clinical-identifier"},
			{Name: "patient", Type: ParamReference, Path: "ImagingStudy.subject", Targets: []string{"Patient"}, Description: "Who the study is about", Definition: sp + "clinical-patient"},
			{Name: "subject", Type: ParamReference, Path: "ImagingStudy.subject", Targets: []string{"Patient", "Device", "Group"}, Description: "Who the study is about", Definition: sp + "ImagingStudy-subject"},
			{Name: "started", Type: ParamDate, Path: "ImagingStudy.started", Description: "When the study was started", Definition: sp + "ImagingStudy-started"},
			{Name: "modality", Type: ParamToken, Path: "ImagingStudy.series.modality", Description: "The modality of the series", Definition: sp + "ImagingStudy-modality"},
			{Name: "bodysite", Type: ParamToken, Path: "ImagingStudy.series.bodySite", Description: "The body site studied", Definition: sp + "ImagingStudy-bodysite"},
			{Name: "basedon", Type: ParamReference, Path: "ImagingStudy.basedOn", Targets: []string{"Appointment", "AppointmentResponse", "CarePlan", "ServiceRequest", "Task"}, Description: "The order for the image", Definition: sp + "ImagingStudy-basedon"},
			{Name: "series", Type: ParamToken, Path: "ImagingStudy.series.uid", Description: "DICOM Series Instance UID for a series", Definition: sp + "ImagingStudy-series"},
			{Name: "instance", Type: ParamToken, Path: "ImagingStudy.series.instance.uid", Description: "SOP Instance UID for an instance", Definition: sp + "ImagingStudy-instance"},
			{Name: "dicom-class", Type: ParamToken, Path: "ImagingStudy.series.instance.sopClass", Description: "The type of the instance", Definition: sp + "ImagingStudy-dicom-class"},
			{Name: "status", Type: ParamToken, Path: "ImagingStudy.status", Description: "The status of the study", Definition: sp + "ImagingStudy-status"},
			{Name: "endpoint", Type: ParamReference, Path: "ImagingStudy.endpoint | ImagingStudy.series.endpoint", Targets: []string{"Endpoint"}, Description: "The endpoint for the study or series", Definition: sp + "ImagingStudy-endpoint"},
			{Name: "encounter", Type: ParamReference, Path: "ImagingStudy.encounter", Targets: []string{"Encounter"}, Description: "The context of the study", Definition: sp + "clinical-encounter"},
			{Name: "interpreter", Type: ParamReference, Path: "ImagingStudy.interpreter", Targets: []string{"Practitioner", "PractitionerRole"}, Description: "Who interpreted the images", Definition: sp + "ImagingStudy-interpreter"},
			{Name: "performer", Type: ParamReference, Path: "ImagingStudy.series.performer.actor", Description: "The person who performed the study", Definition: sp + "ImagingStudy-performer"},
			{Name: "reason", Type: ParamToken, Path: "ImagingStudy.reasonCode", Description: "The reason for the study", Definition: sp + "ImagingStudy-reason"},
			{Name: "referrer", Type: ParamReference, Path: "ImagingStudy.referrer", Targets: []string{"Practitioner", "PractitionerRole"}, Description: "The referring physician", Definition: sp + "ImagingStudy-referrer"},
		},
		Sorts:    []string{"started", "identifier"},
		Includes: []string{"patient", "subject", "endpoint", "basedon", "encounter"},
	}
}

// Patient returns the Patient type.
func Patient() *ResourceType {
	return &ResourceType{
		Name: "Patient",
		Params: []*SearchParam{
			{Name: "identifier", Type: ParamToken, Path: "Patient.identifier", Description: "A patient identifier", Definition: sp + "Patient-identifier"},
			{Name: "name", Type: ParamString, Path: "Patient.name", Description: "A server defined search that may match any of the string fields in the HumanName", Definition: sp + "Patient-name"},
			{Name: "family", Type: ParamString, Path: "Patient.name.family", Description: "A portion of the family name of the patient", Definition: sp + "individual-family"},
			{Name: "given", Type: ParamString, Path: "Patient.name.given", Description: "A portion of the given name of the patient", Definition: sp + "individual-given"},
			{Name: "birthdate", Type: ParamDate, Path: "Patient.birthDate", Description: "The patient's date of birth", Definition: sp + "individual-birthdate"},
			{Name: "gender", Type: ParamToken, Path: "Patient.gender", Description: "Gender of the patient", Definition: sp + "individual-gender"},
			{Name: "link", Type: ParamReference, Path: "Patient.link.other", Targets: []string{"Patient", "RelatedPerson"}, Description: "All patients linked to the given patient", Definition: sp + "Patient-link"},
			{Name: "active", Type: ParamToken, Path: "Patient.active", Description: "Whether the patient record is active", Definition: sp + "Patient-active"},
		},
		Sorts:    []string{"birthdate", "family"},
		Includes: []string{"link"},
	}
}

// Endpoint returns the Endpoint type.
func Endpoint() *ResourceType {
	return &ResourceType{
		Name: "Endpoint",
		Params: []*SearchParam{
			{Name: "identifier", Type: ParamToken, Path: "Endpoint.identifier", Description: "Identifies this endpoint across multiple systems", Definition: sp + "Endpoint-identifier"},
			{Name: "status", Type: ParamToken, Path: "Endpoint.status", Description: "The current status of the Endpoint", Definition: sp + "Endpoint-status"},
			{Name: "connection-type", Type: ParamToken, Path: "Endpoint.connectionType", Description: "Protocol/Profile/Standard to be used with this endpoint connection", Definition: sp + "Endpoint-connection-type"},
			{Name: "name", Type: ParamString, Path: "Endpoint.name", Description: "A name that this endpoint can be identified by", Definition: sp + "Endpoint-name"},
			{Name: "organization", Type: ParamReference, Path: "Endpoint.managingOrganization", Targets: []string{"Organization"}, Description: "The organization that is managing the endpoint", Definition: sp + "Endpoint-organization"},
		},
	}
}
