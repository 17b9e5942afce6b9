-- Prefetch jobs planned by triggers/planner from care events and the rules
-- of triggers/rules. Each job is also a FHIR Task (task_id, same id), written
-- in the same transaction. The row is the source of truth; the message on
-- the PREFETCH_JOBS stream only wakes the worker, which re-reads the row.

CREATE TABLE prefetch_job (
    id              text PRIMARY KEY,           -- also the Task id and the Nats-Msg-Id prefix
    -- rule + patient key + trigger (placer, else origin reference): a
    -- redelivered event, or a reschedule of the same booking, finds its job.
    idempotency_key text NOT NULL UNIQUE,
    rule            text NOT NULL,
    patient_key     text NOT NULL,              -- "<system or authority>|<value>" of the MR identifier
    patient         jsonb NOT NULL,             -- every identifier of the event's patient
    trigger         text NOT NULL,              -- "placer:…", "origin:…" or "event:…"
    placer          text NOT NULL DEFAULT '',
    origin_ref      text NOT NULL DEFAULT '',   -- FHIR reference or hl7v2:<id>
    event_id        text NOT NULL,              -- the care event that last changed the job
    event_at        timestamptz NOT NULL,       -- its occurredAt: older events never undo newer ones
    criteria        jsonb NOT NULL,             -- rules.Criteria for the network search
    lane            text NOT NULL CHECK (lane IN ('stat', 'routine')),
    priority        text NOT NULL,
    lead_time       text NOT NULL DEFAULT '0',  -- rules.Duration, to move due_at on reschedule
    need_by         timestamptz,                -- the scheduled start
    due_at          timestamptz NOT NULL,
    state           text NOT NULL DEFAULT 'requested'
                    CHECK (state IN ('requested', 'in-progress', 'completed', 'failed', 'cancelled')),
    task_id         text NOT NULL,
    revision        integer NOT NULL DEFAULT 1,     -- bumped when due_at or state change
    published       boolean NOT NULL DEFAULT false, -- this revision is on PREFETCH_JOBS
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);

-- The worker: next due jobs of a lane.
CREATE INDEX prefetch_job_worker ON prefetch_job (state, lane, due_at);
-- Reschedules and cancellations: pending jobs of a trigger.
CREATE INDEX prefetch_job_trigger ON prefetch_job (trigger, patient_key);
-- Cooldown: the latest job of a rule for a patient.
CREATE INDEX prefetch_job_patient_rule ON prefetch_job (patient_key, rule, created_at DESC);
-- Lookups by any patient identifier: patient @> '[{"value": "…"}]'.
CREATE INDEX prefetch_job_patient_ids ON prefetch_job USING gin (patient jsonb_path_ops);
-- The sweeper: jobs committed but not yet published.
CREATE INDEX prefetch_job_unpublished ON prefetch_job (updated_at) WHERE NOT published;
