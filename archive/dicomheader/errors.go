package dicomheader

import (
	"errors"
	"fmt"

	"github.com/suyashkumar/dicom/pkg/tag"
)

// Sentinel errors returned (wrapped) by Parse. Test for them with errors.Is.
var (
	// ErrNotPart10 means the stream does not start with the 128-byte
	// preamble followed by "DICM" (PS3.10 7.1).
	ErrNotPart10 = errors.New("not a DICOM Part 10 stream: missing preamble or DICM prefix")
	// ErrTruncated means the stream ended before the data set did.
	ErrTruncated = errors.New("truncated DICOM stream")
	// ErrMalformed means the data set could not be decoded (PS3.5 7).
	ErrMalformed = errors.New("malformed DICOM data set")
	// ErrMissingAttribute means a required attribute is absent or empty.
	ErrMissingAttribute = errors.New("required attribute missing")
	// ErrInvalidUID means a UID does not follow PS3.5 9.1.
	ErrInvalidUID = errors.New("invalid UID")
	// ErrNotText means a text value is neither UTF-8 nor text in the
	// Parser's DefaultCharset (none when it is ISO_IR 6 or ISO_IR 192).
	ErrNotText = errors.New("a text value is not valid in the data set's character set")
)

// AttributeError reports a problem with one attribute of the data set. Its
// Err is ErrMissingAttribute or ErrInvalidUID.
type AttributeError struct {
	Keyword string  // DICOM keyword, e.g. "SOPInstanceUID"
	Tag     tag.Tag // the attribute's tag
	Value   string  // the offending value, empty when missing
	Err     error
}

func (e *AttributeError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("%s %v: %v", e.Keyword, e.Tag, e.Err)
	}
	return fmt.Sprintf("%s %v %q: %v", e.Keyword, e.Tag, e.Value, e.Err)
}

func (e *AttributeError) Unwrap() error { return e.Err }
