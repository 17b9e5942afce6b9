// Package pullbench measures the prefetch pull beside Orthanc's own
// DICOMweb retrieve (docs/performance.md, "Prefetch pull beside Orthanc
// /retrieve"): a source Orthanc holds generated studies; the real
// bin/prefetcher pulls them, started by care events through the planner,
// the network search and WADO-RS, while a second Orthanc pulls the same
// studies from the same source with POST /dicom-web/servers/{name}/retrieve.
// It reports the pull throughput of both, the event-to-loaded overhead
// beyond the transfer on small studies, and the prefetcher's peak resident
// memory during a large pull. With Options.Protocol c-move both pull over
// DIMSE instead: the prefetcher by C-MOVE to its Storage SCP, the
// reference Orthanc by C-MOVE to itself. cmd/pullbench wires it into a
// program.
package pullbench
