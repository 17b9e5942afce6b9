-- FHIR Subscriptions (package subscriptions). subscription_state is the
-- delivery state of each Subscription resource, written by the store's write
-- hook in the same transaction as the resource; subscription_notification
-- queues each matching event per subscription under its event number; and
-- resource_change_outbox holds resource changes until they are relayed to
-- JetStream, where the dispatcher matches them.
CREATE TABLE subscription_state (
    id                 text PRIMARY KEY,          -- Subscription.id
    definition         jsonb NOT NULL,            -- subscriptions.Subscription
    status             text NOT NULL,             -- requested | active | error | off
    events_since_start bigint NOT NULL DEFAULT 0,
    delivered_through  bigint NOT NULL DEFAULT 0,
    attempts           integer NOT NULL DEFAULT 0,
    first_failure      timestamptz,
    next_attempt       timestamptz NOT NULL DEFAULT now(),
    last_sent          timestamptz NOT NULL DEFAULT now(),
    heartbeat_seconds  integer NOT NULL DEFAULT 0,
    last_error         text,
    lease_owner        text,
    lease_until        timestamptz NOT NULL DEFAULT '-infinity',
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- The deliverer looks for due work among subscriptions that are not off.
CREATE INDEX subscription_state_due ON subscription_state (next_attempt) WHERE status <> 'off';

-- Bumped by every change of a subscription, so the dispatcher reloads its
-- in-memory set only when something changed.
CREATE TABLE subscription_generation (
    one        boolean PRIMARY KEY DEFAULT true CHECK (one),
    generation bigint NOT NULL
);
INSERT INTO subscription_generation VALUES (true, 0);

CREATE TABLE subscription_notification (
    subscription_id text NOT NULL REFERENCES subscription_state (id) ON DELETE CASCADE,
    event_number    bigint NOT NULL,
    event_id        text NOT NULL,
    focus           text NOT NULL,
    method          text NOT NULL DEFAULT '',
    resource        jsonb,
    occurred_at     timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    abandoned       boolean NOT NULL DEFAULT false,
    PRIMARY KEY (subscription_id, event_number),
    -- A redelivered event is stored once per subscription.
    UNIQUE (subscription_id, event_id)
);

CREATE TABLE resource_change_outbox (
    seq      bigserial PRIMARY KEY,
    event_id text NOT NULL UNIQUE,
    subject  text NOT NULL,
    payload  jsonb NOT NULL
);
