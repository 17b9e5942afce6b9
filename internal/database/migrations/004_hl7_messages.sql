-- Raw HL7 v2 messages as received over MLLP, one row per care event
-- (triggers/hl7v2 intake, triggers/postgres RawStore). The id is the care
-- event id, derived from MSH-3, MSH-4 and MSH-10, so a resent message finds
-- its row (INSERT ... ON CONFLICT DO NOTHING) instead of adding one. Rows
-- are read by id only; the primary key serves that.
CREATE TABLE hl7_message (
    id                  text        PRIMARY KEY,
    received_at         timestamptz NOT NULL,
    remote_addr         text        NOT NULL DEFAULT '',
    sending_application text        NOT NULL DEFAULT '',
    sending_facility    text        NOT NULL DEFAULT '',
    message_type        text        NOT NULL DEFAULT '',
    control_id          text        NOT NULL,
    raw                 bytea       NOT NULL
);
