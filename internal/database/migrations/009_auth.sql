-- Client assertion ids seen by the built-in SMART Backend Services token
-- endpoint (auth/tokenserver). RFC 7523 §3 and SMART Backend Services
-- require that a client assertion be used only once: its jti is kept here
-- until the assertion expires, after which the assertion's own exp refuses
-- it and the row may go. The table lives in PostgreSQL rather than in
-- memory so that an assertion replayed to another api replica is refused
-- too. jti values are unique per client only (the spec asks no more of a
-- client), hence the key on both.
CREATE TABLE oauth_assertion_jti (
    client_id  text        NOT NULL,
    jti        text        NOT NULL,
    expires_at timestamptz NOT NULL,  -- the assertion's exp plus clock skew
    PRIMARY KEY (client_id, jti)
);

-- The token endpoint deletes expired rows now and then.
CREATE INDEX oauth_assertion_jti_expires ON oauth_assertion_jti (expires_at);
