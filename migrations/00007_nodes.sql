-- +goose Up

-- The node registry: one row per gateway node (process) of the cluster,
-- all of them on this database. A node claims its name at start, renews
-- last_seen (the database's clock, never the node's) every couple of
-- seconds, and deletes its row on an orderly stop. nonce is random per
-- process run: only the run that holds the row can renew it, so a stale
-- writer never wins. A row whose last_seen is older than the lease (15 s)
-- belongs to a lost node; lost_at is set by the one node that noticed it
-- first, so the "Node ... lost" event is written once for the cluster.
CREATE TABLE nodes (
    name          text PRIMARY KEY,
    advertise_url text NOT NULL,
    role          text NOT NULL,
    version       text NOT NULL DEFAULT '',
    started_at    timestamptz NOT NULL DEFAULT now(),
    last_seen     timestamptz NOT NULL DEFAULT now(),
    nonce         text NOT NULL,
    clients       integer NOT NULL DEFAULT 0,
    sessions      integer NOT NULL DEFAULT 0,
    lost_at       timestamptz
);

-- +goose Down
DROP TABLE nodes;
