// Package priorflow gets a patient's prior images to the people who need
// them before they ask. This file walks the architecture from a care event
// to a loaded prior; each step names the package that owns it.
//
//  1. A care event arrives. Schedulers and interface engines send HL7 v2
//     over MLLP (triggers/mllp frames it, triggers/hl7v2 parses it and maps
//     SIU/ADT/ORM/OMI to a triggers.CareEvent), or EHR apps write FHIR
//     Appointment, Encounter and ServiceRequest resources (fhir/rest stores
//     them through fhir/postgres; triggers/fhirintake derives events from
//     each new version and writes them to an outbox in the same commit).
//  2. The event is published on NATS JetStream (triggers/jetstream) before
//     the sender is acknowledged: an HL7 AA means the event is durable, and
//     the event id deduplicates resends.
//  3. The planner (triggers/rules) matches the event against the prefetch
//     rules and writes prefetch jobs, each visible as a FHIR Task, with a due
//     time and a priority lane.
//  4. The prefetcher (cmd/prefetcher) takes due jobs, searches the network of
//     remote sources for the patient's studies (search: QIDO-RS, FHIR search,
//     or C-FIND to a PACS that speaks only DIMSE), selects the relevant
//     priors missing locally, and pulls them over WADO-RS, C-GET or C-MOVE
//     (retrieve, with the DICOM network protocol dimse, whose Storage SCP
//     takes a C-MOVE's objects) into the local archive.
//  5. The archive (archive) keeps the original DICOM bytes in blob storage,
//     indexes every instance into its FHIR ImagingStudy in the same
//     transaction, and serves DICOMweb (archive/dicomweb) to viewers.
//  6. Subscriptions (subscriptions) tell EHR apps and viewers that the priors
//     have arrived.
//
// The programs only wire these packages together: cmd/api serves HTTP (FHIR,
// DICOMweb) and MLLP, cmd/prefetcher runs the JetStream workers, and
// cmd/priorflow is the command line for integration engineers. State lives
// in PostgreSQL (internal/database holds the migrations), NATS JetStream and
// blob storage, so every program can run as several stateless replicas.
package priorflow
