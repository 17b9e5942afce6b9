package dimse

import (
	"context"
	"errors"

	"github.com/suyashkumar/dicom"
)

// Client is a Query/Retrieve SCU of one peer. Each operation runs on an
// association of its own, released when it succeeds and aborted when it
// fails: the peers of a hospital (PACS, archives) serve many short
// associations well, and no association outlives the operation that
// needed it.
type Client struct {
	// Addr is the peer's host:port.
	Addr   string
	Config Config
}

// Echo verifies the peer answers (C-ECHO).
func (c *Client) Echo(ctx context.Context) error {
	pcs := []PresentationContext{{ID: 1, AbstractSyntax: Verification, TransferSyntaxes: uncompressedSyntaxes}}
	return c.run(ctx, pcs, func(a *Association) error { return a.Echo() })
}

// Find runs a C-FIND of the information model (StudyRootFind); see
// Association.Find.
func (c *Client) Find(ctx context.Context, model string, q Identifier, each func(dicom.Dataset) error) error {
	return c.WithFind(ctx, model, func(a *Association) error { return a.Find(model, q, each) })
}

// WithFind runs op on one association that can C-FIND in model: for the
// several queries of one search (studies, then their series).
func (c *Client) WithFind(ctx context.Context, model string, op func(*Association) error) error {
	pcs := []PresentationContext{{ID: 1, AbstractSyntax: model, TransferSyntaxes: uncompressedSyntaxes}}
	return c.run(ctx, pcs, op)
}

// Get runs a C-GET of the information model (StudyRootGet), proposing every
// class of StorageSOPClasses for the objects; see Association.Get.
func (c *Client) Get(ctx context.Context, model string, q Identifier, store StoreFunc) (*RetrieveResult, error) {
	var res *RetrieveResult
	err := c.run(ctx, getContexts(model), func(a *Association) error {
		var err error
		res, err = a.Get(model, q, store)
		return err
	})
	return res, err
}

// Move runs a C-MOVE of the information model (StudyRootMove) to dest;
// see Association.Move.
func (c *Client) Move(ctx context.Context, model string, q Identifier, dest string, id uint16, busy func() bool) (*RetrieveResult, error) {
	var res *RetrieveResult
	pcs := []PresentationContext{{ID: 1, AbstractSyntax: model, TransferSyntaxes: uncompressedSyntaxes}}
	err := c.run(ctx, pcs, func(a *Association) error {
		var err error
		res, err = a.Move(model, q, dest, id, busy)
		return err
	})
	return res, err
}

func (c *Client) run(ctx context.Context, pcs []PresentationContext, op func(*Association) error) error {
	a, err := Associate(ctx, c.Addr, c.Config, pcs)
	if err != nil {
		return err
	}
	err = op(a)
	var se *StatusError
	if err != nil && !errors.As(err, &se) && !errors.Is(err, ErrCanceled) {
		// The association's state is unknown after a broken operation.
		a.Abort()
		return err
	}
	// The operation's outcome stands whatever the release does: some
	// peers close the connection without answering A-RELEASE-RQ.
	_ = a.Release()
	return err
}
