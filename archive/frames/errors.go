package frames

import (
	"errors"

	"github.com/priorflow/priorflow/archive/dicomheader"
)

// Errors returned (wrapped) by this package. Test for them with errors.Is.
var (
	// ErrMalformed means the data set or its pixel data cannot be decoded
	// (PS3.5 7, A.4). It is dicomheader.ErrMalformed, so one test covers
	// both the header and the pixel data.
	ErrMalformed = dicomheader.ErrMalformed
	// ErrTruncated means the stream ends before the pixel data does. It is
	// dicomheader.ErrTruncated.
	ErrTruncated = dicomheader.ErrTruncated
	// ErrNoPixelData means the object has no top-level Pixel Data
	// (7FE0,0010), like a structured report or a presentation state.
	ErrNoPixelData = errors.New("no Pixel Data in the object")
	// ErrNoSuchFrame means a frame number outside 1..NumberOfFrames.
	ErrNoSuchFrame = errors.New("no such frame")
	// ErrUnsupported means pixel data valid in DICOM that this package cannot
	// split into frames, such as 1-bit frames that do not start on a byte.
	ErrUnsupported = errors.New("unsupported pixel data")
)
