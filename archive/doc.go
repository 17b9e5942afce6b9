// Package archive is the root of Priorflow's local DICOM archive: the place
// where DICOM objects received from modalities and remote archives are kept so
// that priors can be served to viewers over DICOMweb (PS3.18).
//
// The archive keeps the original DICOM Part 10 bytes (PS3.10) unchanged in blob
// storage, indexes them in PostgreSQL at the patient, study, series and instance
// levels (the attributes QIDO-RS searches on, PS3.18 10.6), and serves them
// through STOW-RS, QIDO-RS and WADO-RS.
//
// It stands at the top level of the module, beside the domain packages (fhir,
// triggers, search, retrieve, subscriptions), because none of them is the home
// of storing DICOM objects: triggers decides when a prior is needed, search and
// retrieve find and fetch it from elsewhere, and the archive is where the
// fetched objects land and whence they are served. Its sub-packages are the
// DICOM building blocks the rest of the service calls:
//
//   - dicomheader reads the attributes the archive indexes from a Part 10
//     stream and validates the UIDs it uses as keys.
//   - dicomjson encodes and decodes the DICOM JSON Model (PS3.18 Annex F.2).
//   - multipart reads and writes multipart/related bodies (PS3.18 8.6, RFC 2387).
//   - dicomtest builds test studies from real TCIA files.
//   - frames extracts frames (native or encapsulated) without reading whole
//     objects; render decodes and renders them for /rendered and /thumbnail.
//   - dicomweb serves STOW-RS, QIDO-RS and WADO-RS over this package.
//   - cdimport reads CDs (DICOMDIR), folders and zips for `priorflow import`.
//   - bulkdata reads one element of a stored object for WADO-RS /bulkdata.
//   - archivetest wires an archive on a test database.
package archive
