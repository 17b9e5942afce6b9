// Package dimse is the DICOM network protocol: the Upper Layer (PS3.8) and
// the DIMSE-C services (PS3.7) of a Query/Retrieve SCU — C-ECHO, C-FIND,
// C-GET with the C-STORE sub-operations that bring the objects back on
// the same association (PS3.4 C.4.3), and C-MOVE — and of a Storage SCP
// (Server), which takes the objects a C-MOVE sends on associations the
// PACS opens (PS3.4 C.4.2, B).
//
// Many PACS and archives that hold a patient's priors answer no DICOMweb,
// only DIMSE. The network search (search/dimsesource) asks them with
// C-FIND and the retrieval (retrieve) pulls studies from them with C-GET
// or C-MOVE; the protocol serves both and belongs to neither, so it has a
// top-level package of its own, as archive has for the local archive.
//
// Everything a peer sends is read with bounds: a PDU no longer than the
// maximum length this side announced, a command set of at most 64 KiB,
// an identifier of at most 1 MiB read through the archive's guarded
// header parser, and every wait bounded by an idle timeout. A peer that
// breaks the protocol gets an A-ABORT and the operation an ErrProtocol.
package dimse
