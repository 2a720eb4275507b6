-- +goose Up

-- Operators: the named people who administer the console (role admin) or
-- run Controls (role operator). Passwords are argon2id hashes in PHC form.
CREATE TABLE operators (
    id            bigserial   PRIMARY KEY,
    name          text        NOT NULL UNIQUE,
    password_hash text        NOT NULL,
    role          text        NOT NULL CHECK (role IN ('admin', 'operator')),
    disabled      boolean     NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Console sessions, in the layout alexedwards/scs/pgxstore expects.
CREATE TABLE sessions (
    token  text        PRIMARY KEY,
    data   bytea       NOT NULL,
    expiry timestamptz NOT NULL
);
CREATE INDEX sessions_expiry_idx ON sessions (expiry);

-- +goose Down
DROP TABLE sessions;
DROP TABLE operators;
