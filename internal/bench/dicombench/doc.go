// Package dicombench measures a DICOMweb archive beside Orthanc on the same
// files and with the same client code: STOW-RS ingest rate, QIDO-RS
// studies?PatientID= latency and WADO-RS whole-study throughput, with a plain
// read of the same bytes from disk as the ceiling (docs/performance.md,
// "DICOM archive beside Orthanc"). cmd/dicombench starts the servers and
// wires these parts together.
package dicombench
