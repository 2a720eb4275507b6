-- +goose Up

-- Known Clients: every Client seen recently, connected or not, so that the
-- console can tell "offline" from "never existed" (it lists those seen in
-- the last 30 days). One row per Client per key space, as in presence.
--
-- No node writes it: triggers on presence (00008) keep it, since presence
-- already records each connection, on whichever node, as it registers
-- and ends, in the same transaction, and a Client is known whichever node
-- it used.
--   - A connection written to presence (a new row, or a newer connection
--     replacing the row: conn_id changes) upserts the Client's row here
--     with its details; last_seen = now().
--   - A presence row deleted (the Client disconnected, its node stopped,
--     or its node was lost) sets last_seen: now() when the row's heartbeat
--     is fresh (within 10 s: a live node deleted it as the connection
--     ended; heartbeats are every 2 s), else the row's last_heartbeat (what
--     a lost node or a killed run left: its last sign of life).
--   - The presence heartbeat (UPDATE of last_heartbeat alone, every row of
--     a node every 2 s) fires neither trigger.
-- "Forget" in the console deletes a row; the Client is known again when it
-- next connects. Rows not seen for 30 days are deleted when the console
-- lists them.
CREATE TABLE known_clients (
    name         text NOT NULL,
    key_id       text NOT NULL,
    node         text NOT NULL DEFAULT '',
    real_ip      text NOT NULL DEFAULT '',
    public_ip    text NOT NULL DEFAULT '',
    os           text NOT NULL DEFAULT '',
    version      text NOT NULL DEFAULT '',
    services     text[] NOT NULL DEFAULT '{}',
    first_seen   timestamptz NOT NULL DEFAULT now(),
    connected_at timestamptz NOT NULL,
    last_seen    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, key_id)
);
CREATE INDEX known_clients_last_seen ON known_clients (last_seen);

-- +goose StatementBegin
CREATE FUNCTION known_clients_connected() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO known_clients (name, key_id, node, real_ip, public_ip, os, version, services, connected_at, last_seen)
    VALUES (NEW.name, NEW.key_id, NEW.node, NEW.real_ip, NEW.public_ip, NEW.os, NEW.version, NEW.services, NEW.connected_at, now())
    ON CONFLICT (name, key_id) DO UPDATE SET node = EXCLUDED.node, real_ip = EXCLUDED.real_ip,
        public_ip = EXCLUDED.public_ip, os = EXCLUDED.os, version = EXCLUDED.version, services = EXCLUDED.services,
        connected_at = EXCLUDED.connected_at, last_seen = now();
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION known_clients_disconnected() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE known_clients SET last_seen = CASE
            WHEN OLD.last_heartbeat > now() - interval '10 seconds' THEN now()
            ELSE OLD.last_heartbeat END
        WHERE name = OLD.name AND key_id = OLD.key_id;
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER known_clients_connected AFTER INSERT OR UPDATE OF conn_id ON presence
    FOR EACH ROW EXECUTE FUNCTION known_clients_connected();
CREATE TRIGGER known_clients_disconnected AFTER DELETE ON presence
    FOR EACH ROW EXECUTE FUNCTION known_clients_disconnected();

-- Clients over time, for the dashboard's trend of the last day: each
-- node's highest and latest count of Clients (and sessions) in each
-- quarter hour, kept two days. Nodes report their counts with their lease
-- every 2 s (nodes.clients, 00007); a trigger on that keeps this table,
-- writing only when a quarter's figures change. A node that is down or
-- lost reports nothing, and holds no Clients: a quarter without its row
-- counts it as 0. A Client moving between nodes within a quarter counts
-- on both in that quarter's peak.
CREATE TABLE client_samples (
    bucket        timestamptz NOT NULL,
    node          text NOT NULL,
    peak          integer NOT NULL,
    last          integer NOT NULL,
    peak_sessions integer NOT NULL,
    PRIMARY KEY (bucket, node)
);

-- +goose StatementBegin
CREATE FUNCTION client_samples_record() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    b timestamptz := date_bin('15 minutes', now(), timestamptz '2000-01-01 00:00:00+00');
    inserted boolean;
BEGIN
    INSERT INTO client_samples (bucket, node, peak, last, peak_sessions)
    VALUES (b, NEW.name, NEW.clients, NEW.clients, NEW.sessions)
    ON CONFLICT (bucket, node) DO UPDATE SET peak = greatest(client_samples.peak, EXCLUDED.peak),
        last = EXCLUDED.last, peak_sessions = greatest(client_samples.peak_sessions, EXCLUDED.peak_sessions)
    WHERE client_samples.last <> EXCLUDED.last OR client_samples.peak < EXCLUDED.peak
        OR client_samples.peak_sessions < EXCLUDED.peak_sessions
    RETURNING xmax = 0 INTO inserted;
    IF inserted THEN
        -- A new quarter: the time to let go of the old ones.
        DELETE FROM client_samples WHERE bucket < now() - interval '2 days';
    END IF;
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER client_samples_record AFTER INSERT OR UPDATE OF clients, sessions ON nodes
    FOR EACH ROW EXECUTE FUNCTION client_samples_record();

-- +goose Down
DROP TRIGGER client_samples_record ON nodes;
DROP FUNCTION client_samples_record();
DROP TABLE client_samples;
DROP TRIGGER known_clients_disconnected ON presence;
DROP TRIGGER known_clients_connected ON presence;
DROP FUNCTION known_clients_disconnected();
DROP FUNCTION known_clients_connected();
DROP TABLE known_clients;
