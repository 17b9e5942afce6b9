package render

import (
	"errors"
	"fmt"

	"github.com/priorflow/priorflow/archive/frames"
)

// Errors returned (wrapped) by this package. Test for them with errors.Is.
var (
	// ErrUnsupportedTransferSyntax means no decoder for the object's
	// Transfer Syntax is available: the HTTP layer answers 406 (PS3.18
	// 8.3.5.1), naming the syntax from the *TransferSyntaxError.
	ErrUnsupportedTransferSyntax = errors.New("unsupported transfer syntax")
	// ErrUnsupportedImage means a pixel layout (Photometric
	// Interpretation, bit depth) that cannot be rendered.
	ErrUnsupportedImage = errors.New("unsupported image pixel layout")
	// ErrUnsupportedMediaType means a rendered media type other than
	// image/jpeg and image/png (PS3.18 8.7.4).
	ErrUnsupportedMediaType = errors.New("unsupported rendered media type")
	// ErrInvalidParameter means a malformed rendering query parameter
	// (PS3.18 8.3.5.1): the HTTP layer answers 400.
	ErrInvalidParameter = errors.New("invalid rendering parameter")
	// ErrDecode means the pixel data could not be decoded: corrupt
	// compressed data, or an external decoder failing.
	ErrDecode = errors.New("cannot decode pixel data")
)

// TransferSyntaxError reports a Transfer Syntax that cannot be decoded. It
// wraps ErrUnsupportedTransferSyntax.
type TransferSyntaxError struct {
	UID    string // the Transfer Syntax UID
	Reason string // why, such as which decoder would be needed
}

func (e *TransferSyntaxError) Error() string {
	return fmt.Sprintf("cannot decode transfer syntax %s (%s): %s", frames.SyntaxName(e.UID), e.UID, e.Reason)
}

func (e *TransferSyntaxError) Unwrap() error { return ErrUnsupportedTransferSyntax }
