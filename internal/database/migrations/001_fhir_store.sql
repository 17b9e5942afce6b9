-- FHIR resource store: current versions, superseded versions, and the
-- extracted search index (current versions only).

CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- One row per logical resource. body is the current version's JSON exactly as
-- served (meta included), so reads and searches return it without re-encoding.
CREATE TABLE resource (
    rid          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type         text        NOT NULL,
    id           text        NOT NULL,
    version      integer     NOT NULL,
    last_updated timestamptz NOT NULL,
    deleted      boolean     NOT NULL DEFAULT false,
    method       text        NOT NULL,  -- POST, PUT or DELETE that made this version
    body         text        NOT NULL,  -- '' when deleted
    UNIQUE (type, id)
);
-- _lastUpdated searches and sorts, and the paged scan in keyset order.
CREATE INDEX resource_type_updated ON resource (type, last_updated, rid);

-- Superseded versions and delete markers; the current version lives only in
-- resource, which halves the write volume of every update.
CREATE TABLE resource_history (
    rid          bigint      NOT NULL REFERENCES resource (rid),
    version      integer     NOT NULL,
    type         text        NOT NULL,
    last_updated timestamptz NOT NULL,
    method       text        NOT NULL,  -- POST, PUT or DELETE (of this version)
    body         text,                  -- NULL for a delete marker
    PRIMARY KEY (rid, version)
);
CREATE INDEX resource_history_type_updated ON resource_history (type, last_updated);

-- Token index: Identifier, Coding, CodeableConcept, code, boolean.
CREATE TABLE idx_token (
    rid    bigint NOT NULL,
    type   text   NOT NULL,
    param  text   NOT NULL,
    system text   NOT NULL,
    code   text   NOT NULL
);
CREATE INDEX idx_token_lookup ON idx_token (type, param, code, system) INCLUDE (rid);
CREATE INDEX idx_token_system ON idx_token (type, param, system) INCLUDE (rid);
CREATE INDEX idx_token_rid ON idx_token (rid);

-- String index: norm is lower-cased and stripped of accents (default and
-- :contains matching), exact is the value as given (:exact).
CREATE TABLE idx_string (
    rid   bigint NOT NULL,
    type  text   NOT NULL,
    param text   NOT NULL,
    norm  text   NOT NULL,
    exact text   NOT NULL
);
CREATE INDEX idx_string_prefix ON idx_string (type, param, norm text_pattern_ops) INCLUDE (rid);
CREATE INDEX idx_string_trgm ON idx_string USING gin (norm gin_trgm_ops);
CREATE INDEX idx_string_rid ON idx_string (rid);

-- Date index: every value is the range [lo, hi) it implies at its precision.
CREATE TABLE idx_date (
    rid   bigint      NOT NULL,
    type  text        NOT NULL,
    param text        NOT NULL,
    lo    timestamptz NOT NULL,
    hi    timestamptz NOT NULL
);
CREATE INDEX idx_date_lo ON idx_date (type, param, lo) INCLUDE (rid, hi);
CREATE INDEX idx_date_hi ON idx_date (type, param, hi) INCLUDE (rid, lo);
CREATE INDEX idx_date_rid ON idx_date (rid, param) INCLUDE (lo);

-- Reference index. target_type/target_id for relative references (and
-- absolute ones into this server), url for the rest.
CREATE TABLE idx_ref (
    rid         bigint NOT NULL,
    type        text   NOT NULL,
    param       text   NOT NULL,
    target_type text   NOT NULL,
    target_id   text   NOT NULL,
    url         text   NOT NULL
);
CREATE INDEX idx_ref_lookup ON idx_ref (type, param, target_id, target_type) INCLUDE (rid);
CREATE INDEX idx_ref_target ON idx_ref (target_type, target_id);
CREATE INDEX idx_ref_rid ON idx_ref (rid);

-- Number index (integer, decimal, positiveInt ...).
CREATE TABLE idx_number (
    rid   bigint  NOT NULL,
    type  text    NOT NULL,
    param text    NOT NULL,
    value numeric NOT NULL
);
CREATE INDEX idx_number_lookup ON idx_number (type, param, value) INCLUDE (rid);
CREATE INDEX idx_number_rid ON idx_number (rid);

-- Default search order is insertion order within a type (keyset on rid).
CREATE INDEX resource_type_rid ON resource (type, rid);
