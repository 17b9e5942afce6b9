package dicomheader

// MaxUnknownVR is maxUnknownVR, for the tests.
const MaxUnknownVR = maxUnknownVR
