-- +goose Up

-- Presence: which Client is connected to which gateway node. One row per
-- Client per key space (a Client is named within its key): the newest
-- connection wins, so a Client that reconnects to another node moves its
-- row there, and the node that still holds the stale connection learns it
-- on its next presence poll and drops it. conn_id is random per
-- connection: a node removes a row only while it still holds that very
-- connection, so the old node's late "unregistered" never deletes the new
-- one. connected_at is the connecting node's clock (nodes differ by at
-- most 5 s, see MaxClockSkew); last_heartbeat is the database's, renewed
-- for all of a node's rows at once with its node lease.
CREATE TABLE presence (
    name           text NOT NULL,
    key_id         text NOT NULL,
    node           text NOT NULL,
    real_ip        text NOT NULL DEFAULT '',
    public_ip      text NOT NULL DEFAULT '',
    os             text NOT NULL DEFAULT '',
    version        text NOT NULL DEFAULT '',
    services       text[] NOT NULL DEFAULT '{}',
    connected_at   timestamptz NOT NULL,
    last_heartbeat timestamptz NOT NULL DEFAULT now(),
    conn_id        text NOT NULL,
    PRIMARY KEY (name, key_id)
);
CREATE INDEX presence_node ON presence (node);
CREATE INDEX presence_connected_at ON presence (connected_at);

-- The node that marks another one lost (nodes.lost_at set) removes the
-- lost node's presence rows in the same transaction: its Clients are gone
-- with it, and they reconnect elsewhere.
-- +goose StatementBegin
CREATE FUNCTION presence_drop_lost_node() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM presence WHERE node = NEW.name;
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER presence_drop_lost_node AFTER UPDATE OF lost_at ON nodes
    FOR EACH ROW WHEN (OLD.lost_at IS NULL AND NEW.lost_at IS NOT NULL)
    EXECUTE FUNCTION presence_drop_lost_node();

-- +goose Down
DROP TRIGGER presence_drop_lost_node ON nodes;
DROP FUNCTION presence_drop_lost_node();
DROP TABLE presence;
