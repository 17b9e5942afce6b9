package subscriptions

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Subjects of the events subscriptions match, on the stream
// subscriptions/jetstream.StreamName.
const (
	// SubjectStudyAvailable carries StudyAvailable, published by the
	// prefetcher once a prior is in the archive.
	SubjectStudyAvailable = "priorflow.imaging.study.available"
	// SubjectChangedPrefix + resource type carries ResourceChanged.
	SubjectChangedPrefix = "priorflow.fhir.changed."
)

// StudyAvailable is the JSON of imaging.study.available (schemaVersion 1):
// an ImagingStudy is available in Priorflow's archive for a patient.
type StudyAvailable struct {
	SchemaVersion int `json:"schemaVersion"`
	// EventID is unique per event; JetStream deduplicates on it.
	EventID string `json:"eventId"`
	// Study is the ImagingStudy reference, "ImagingStudy/<id>".
	Study string `json:"study"`
	// Patient is the Patient reference, "Patient/<id>".
	Patient string `json:"patient"`
	// ModalitiesInStudy lists the DICOM modality codes (PS3.3 C.7.3.1.1.1).
	ModalitiesInStudy []string `json:"modalitiesInStudy,omitempty"`
	// TriggerEventID is the care event that led to the prefetch.
	TriggerEventID string    `json:"triggerEventId,omitempty"`
	OccurredAt     time.Time `json:"occurredAt"`
}

// Validate reports what is missing.
func (e *StudyAvailable) Validate() error {
	var errs []error
	if e.EventID == "" {
		errs = append(errs, errors.New("eventId is required"))
	}
	if !strings.HasPrefix(e.Study, "ImagingStudy/") {
		errs = append(errs, fmt.Errorf("study %q is not an ImagingStudy reference", e.Study))
	}
	if !strings.HasPrefix(e.Patient, "Patient/") {
		errs = append(errs, fmt.Errorf("patient %q is not a Patient reference", e.Patient))
	}
	return errors.Join(errs...)
}

// Event returns e as an Event to match.
func (e *StudyAvailable) Event() *Event {
	return &Event{ID: e.EventID, Kind: KindStudyAvailable, Focus: e.Study, FocusType: "ImagingStudy",
		Patient: e.Patient, Modalities: e.ModalitiesInStudy, Time: e.OccurredAt}
}

// ResourceChanged is the JSON of a resource change (schemaVersion 1),
// enqueued in the writing transaction by subscriptions/postgres.
type ResourceChanged struct {
	SchemaVersion int    `json:"schemaVersion"`
	EventID       string `json:"eventId"` // Type/id/_history/version
	Type          string `json:"type"`
	ID            string `json:"id"`
	Version       int    `json:"version"`
	Method        string `json:"method"`
	// Resource is the new version's JSON; absent on delete.
	Resource   json.RawMessage `json:"resource,omitempty"`
	OccurredAt time.Time       `json:"occurredAt"`
}

// Subject is the subject ResourceChanged is published on.
func (e *ResourceChanged) Subject() string { return SubjectChangedPrefix + e.Type }

// Event returns e as an Event to match.
func (e *ResourceChanged) Event() *Event {
	return &Event{ID: e.EventID, Kind: KindResourceChanged, Focus: e.Type + "/" + e.ID, FocusType: e.Type,
		Method: e.Method, Resource: e.Resource, Time: e.OccurredAt}
}

// DecodeEvent decodes a message of one of the subjects above.
func DecodeEvent(subject string, data []byte) (*Event, error) {
	switch {
	case subject == SubjectStudyAvailable:
		var e StudyAvailable
		if err := json.Unmarshal(data, &e); err != nil {
			return nil, fmt.Errorf("decode %s: %w", subject, err)
		}
		if err := e.Validate(); err != nil {
			return nil, fmt.Errorf("decode %s: %w", subject, err)
		}
		return e.Event(), nil
	case strings.HasPrefix(subject, SubjectChangedPrefix):
		var e ResourceChanged
		if err := json.Unmarshal(data, &e); err != nil {
			return nil, fmt.Errorf("decode %s: %w", subject, err)
		}
		if e.EventID == "" || e.Type == "" || e.ID == "" {
			return nil, fmt.Errorf("decode %s: eventId, type and id are required", subject)
		}
		return e.Event(), nil
	}
	return nil, fmt.Errorf("decode: unknown subject %s", subject)
}
