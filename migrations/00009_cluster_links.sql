-- +goose Up

-- Node-to-node links. fingerprint is the SHA-256 of the node's TLS
-- certificate ('' without TLS), renewed with its lease, so that another
-- node (and a Client sent there) can pin a self-signed certificate.
ALTER TABLE nodes ADD COLUMN fingerprint text NOT NULL DEFAULT '';

-- The installation's secret for node-to-node links: made once by the
-- first node that needs it, read by every node. It never leaves the
-- database and the nodes' memory.
CREATE TABLE cluster_secret (
    id     integer PRIMARY KEY CHECK (id = 1),
    secret bytea NOT NULL CHECK (length(secret) = 32)
);

-- +goose Down
DROP TABLE cluster_secret;
ALTER TABLE nodes DROP COLUMN fingerprint;
