-- +goose Up

-- Gateway-wide settings (listen ports, licence limit, the per-installation
-- salt, ...), as text: the code that owns a setting parses it.
CREATE TABLE settings (
    name       text        PRIMARY KEY,
    value      text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Gateway keys. Only a verifier of the secret is stored, never the secret.
CREATE TABLE gateway_keys (
    id         bigserial   PRIMARY KEY,
    key_id     text        NOT NULL UNIQUE,
    label      text        NOT NULL DEFAULT '',
    verifier   bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The audit log. Empty strings, not NULL, for facts an event does not carry,
-- so that filters stay simple equality tests.
CREATE TABLE events (
    id        bigserial   PRIMARY KEY,
    time      timestamptz NOT NULL,
    kind      text        NOT NULL,
    message   text        NOT NULL,
    client    text        NOT NULL DEFAULT '',
    control   text        NOT NULL DEFAULT '',
    operator  text        NOT NULL DEFAULT '',
    real_ip   text        NOT NULL DEFAULT '',
    public_ip text        NOT NULL DEFAULT '',
    node      text        NOT NULL DEFAULT ''
);

CREATE INDEX events_time_idx ON events (time);
CREATE INDEX events_kind_time_idx ON events (kind, time);
CREATE INDEX events_client_time_idx ON events (client, time);
CREATE INDEX events_control_time_idx ON events (control, time);

-- +goose Down
DROP TABLE events;
DROP TABLE gateway_keys;
DROP TABLE settings;
