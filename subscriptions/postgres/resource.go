package postgres

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/priorflow/priorflow/fhir"
	fhirpg "github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/subscriptions"
)

// ResourceStatus writes a subscription's status (and error) into its
// Subscription resource, so that a client reading the resource sees what
// $status reports (FHIR R4: the server sets status and error).
type ResourceStatus struct {
	fs *fhirpg.Store
}

// NewResourceStatus returns a writer over the FHIR store.
func NewResourceStatus(fs *fhirpg.Store) *ResourceStatus { return &ResourceStatus{fs: fs} }

// Set updates the resource unless a client changed it since the read
// (If-Match): the write hook then keeps the delivery state, and the
// resource catches up at the next status change.
func (r *ResourceStatus) Set(ctx context.Context, id string, status subscriptions.Status, reason string) error {
	err := r.fs.InTx(ctx, func(tx *fhirpg.Tx) error {
		cur, err := tx.Read(ctx, "Subscription", id)
		if err != nil {
			return err
		}
		var m map[string]any
		if err := json.Unmarshal(cur.Body, &m); err != nil {
			return err
		}
		if m["status"] == string(status) && (reason == "" || m["error"] == reason) {
			return nil
		}
		m["status"] = string(status)
		delete(m, "error")
		if status == subscriptions.StatusError && reason != "" {
			m["error"] = reason
		}
		delete(m, "meta")
		body, err := json.Marshal(m)
		if err != nil {
			return err
		}
		res, _, err := r.fs.Codec().Parse(body)
		if err != nil {
			return err
		}
		_, _, err = tx.Put(ctx, res, cur.Version)
		return err
	})
	if err != nil && !fhir.IsKind(err, fhir.KindPrecondition) && !fhir.IsKind(err, fhir.KindNotFound) && !fhir.IsKind(err, fhir.KindGone) {
		return fmt.Errorf("set status of Subscription/%s: %w", id, err)
	}
	return nil
}
