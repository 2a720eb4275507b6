-- +goose Up

-- Second factors and sign-in throttling. factor is what an operator proves
-- after the password: '' (nothing), 'totp' or 'duo'. require_2fa asks for
-- that factor when the operator starts a remote connection from a Control.
-- totp_last_step is the last TOTP time step accepted, so each code works
-- once. failed_signins counts sign-in attempts that have not succeeded,
-- the ones in progress included, so that parallel guesses cannot outrun
-- the lockout; last_attempt_at lets old failures be forgotten.
ALTER TABLE operators
    ADD COLUMN factor         text        NOT NULL DEFAULT '' CHECK (factor IN ('', 'totp', 'duo')),
    ADD COLUMN require_2fa    boolean     NOT NULL DEFAULT false,
    ADD COLUMN totp_secret    text        NOT NULL DEFAULT '',
    ADD COLUMN totp_last_step bigint      NOT NULL DEFAULT 0,
    ADD COLUMN failed_signins integer     NOT NULL DEFAULT 0,
    ADD COLUMN locked_until    timestamptz,
    ADD COLUMN last_attempt_at timestamptz;

-- Control sign-in tokens: a Control that signed in keeps one for a short
-- while so that browsing again does not prompt. Only a hash is stored.
CREATE TABLE control_tokens (
    id           bigserial   PRIMARY KEY,
    token_hash   bytea       NOT NULL UNIQUE,
    operator_id  bigint      NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    control      text        NOT NULL,
    public_ip    text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    last_used_at timestamptz NOT NULL DEFAULT now(),
    -- second_factor records whether the sign-in proved the second factor,
    -- so that a token stops admitting once 2FA becomes required.
    second_factor boolean    NOT NULL DEFAULT false
);
CREATE INDEX control_tokens_expires_idx ON control_tokens (expires_at);

-- +goose Down
DROP TABLE control_tokens;
ALTER TABLE operators
    DROP COLUMN factor, DROP COLUMN require_2fa, DROP COLUMN totp_secret,
    DROP COLUMN totp_last_step, DROP COLUMN failed_signins, DROP COLUMN locked_until, DROP COLUMN last_attempt_at;
