-- Transactional outbox for care events (triggers/postgres). A FHIR write that
-- means a care event inserts its event here in the same transaction as the
-- resource, so an event exists exactly when its resource version committed;
-- the relay publishes rows to JetStream in seq order and deletes each after
-- JetStream's ack. A crash between the ack and the delete only resends the
-- same event id, which JetStream's duplicate window drops.
CREATE TABLE event_outbox (
    seq            bigserial PRIMARY KEY,
    event_id       text NOT NULL UNIQUE,
    subject        text NOT NULL,
    payload        jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- A blocked row is not published: the event cannot be made valid as it
    -- stands (its patient cannot be resolved or has no identifier). It stays
    -- for an integration engineer to see.
    blocked_reason text,
    -- The Patient reference the event's patient was resolved from
    -- ("Patient/123"), so that a Patient written later in the same
    -- transaction (a transaction Bundle) can complete the event.
    patient_ref    text,
    -- The writing transaction, to find the rows of the current one.
    xact           xid8 NOT NULL DEFAULT pg_current_xact_id()
);

-- The relay reads publishable rows in seq order.
CREATE INDEX event_outbox_pending ON event_outbox (seq) WHERE blocked_reason IS NULL;

-- A Patient write looks up the rows of its own transaction for that patient.
CREATE INDEX event_outbox_xact ON event_outbox (xact, patient_ref);
