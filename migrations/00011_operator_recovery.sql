-- +goose Up

-- When and from where each operator last signed in (console or Control,
-- with a password): shown on the Operators tab and the Account page, so
-- that an administrator can tell an unused account from a busy one and an
-- operator can spot a sign-in that was not theirs. The address is the one
-- the throttle uses (IPv4, or an IPv6 /64).
ALTER TABLE operators
    ADD COLUMN last_signin_at timestamptz,
    ADD COLUMN last_signin_address text NOT NULL DEFAULT '';

-- One-time recovery codes that stand in for a TOTP code when the phone is
-- lost. Only an argon2id hash of each code is kept (PHC string, see
-- internal/auth/password.HashCode); used_at marks a code spent, so each
-- works once, on every node. Enrolling or removing an authenticator app
-- deletes them; a new set replaces the old one.
CREATE TABLE operator_recovery_codes (
    id          bigserial   PRIMARY KEY,
    operator_id bigint      NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    code_hash   text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    used_at     timestamptz
);
CREATE INDEX operator_recovery_codes_operator_idx ON operator_recovery_codes (operator_id);

-- +goose Down
DROP TABLE operator_recovery_codes;
ALTER TABLE operators DROP COLUMN last_signin_at, DROP COLUMN last_signin_address;
