-- +goose Up

-- What kind of remote control each of a Client's services offers the
-- browser console (service name → "vnc" or "ssh"), as its registration
-- reported it or its name implies: the Clients page shows a Desktop or a
-- Terminal button for each.
ALTER TABLE presence ADD COLUMN service_kinds jsonb NOT NULL DEFAULT '{}'::jsonb;

-- Which Clients an operator who is not an admin may reach from the
-- browser: entries "client:NAME" or "key:KEY-ID" (every Client holding
-- that key). Admins reach every Client; an empty list reaches none.
ALTER TABLE operators ADD COLUMN remote_access text[] NOT NULL DEFAULT '{}';

-- SSH host keys pinned on first use, per Client (name and key, as Clients
-- are named within their key) and service: the gateway is the SSH client
-- of browser terminals, and a changed key is refused until an admin clears
-- the pin on the Client's page.
CREATE TABLE ssh_host_keys (
    client      text        NOT NULL,
    key_id      text        NOT NULL,
    service     text        NOT NULL,
    host_key    bytea       NOT NULL,
    fingerprint text        NOT NULL,
    pinned_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client, key_id, service)
);

-- Browser sessions: who reached which Client's desktop or terminal, when
-- and for how long, on every node. A terminal's asciicast v2 recording
-- (output only, gzip) is kept in the row so that any node's console can
-- replay it; desktop sessions record who, when and how long only.
CREATE TABLE recordings (
    id         bigserial   PRIMARY KEY,
    kind       text        NOT NULL CHECK (kind IN ('desktop', 'terminal')),
    operator   text        NOT NULL,
    client     text        NOT NULL,
    service    text        NOT NULL,
    node       text        NOT NULL DEFAULT '',
    ssh_user   text        NOT NULL DEFAULT '',
    started_at timestamptz NOT NULL,
    ended_at   timestamptz,
    cast_gz    bytea,
    cast_bytes bigint      NOT NULL DEFAULT 0
);
CREATE INDEX recordings_started_idx ON recordings (started_at DESC);

-- +goose Down
DROP TABLE recordings;
DROP TABLE ssh_host_keys;
ALTER TABLE operators DROP COLUMN remote_access;
ALTER TABLE presence DROP COLUMN service_kinds;
