-- +goose Up

-- Sign-in throttling per (operator, address) instead of per account: the
-- account lock of 00003 let anyone keep an operator out with five wrong
-- passwords. address is the source IP address, IPv6 by its /64. attempts
-- counts the attempts that have not succeeded, the ones in progress
-- included, so that parallel guesses cannot outrun the lock; they are
-- forgotten once last_attempt_at is older than the window. Summed over an
-- operator's pairs, they drive the operator-wide progressive delay.
CREATE TABLE signin_throttle (
    operator_id     bigint      NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    address         text        NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    last_attempt_at timestamptz NOT NULL DEFAULT now(),
    locked_until    timestamptz,
    PRIMARY KEY (operator_id, address)
);
CREATE INDEX signin_throttle_last_attempt_idx ON signin_throttle (last_attempt_at);

-- Addresses an operator signed in from: exempt from the operator-wide delay
-- for a while (30 days), so that an attacker elsewhere cannot slow down the
-- operator's usual place.
CREATE TABLE signin_addresses (
    operator_id    bigint      NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    address        text        NOT NULL,
    last_signin_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (operator_id, address)
);

-- Until when attempts from addresses not known for the operator are
-- refused: the operator-wide delay, reserved as each attempt begins.
-- (failed_signins, locked_until and last_attempt_at of 00003 are no longer
-- used; they stay for nodes of the version before during an upgrade.)
ALTER TABLE operators ADD COLUMN signin_delay_until timestamptz;

-- +goose Down
ALTER TABLE operators DROP COLUMN signin_delay_until;
DROP TABLE signin_addresses;
DROP TABLE signin_throttle;
