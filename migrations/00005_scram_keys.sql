-- +goose Up

-- Handshake version 2 (docs/protocol.md, "Handshake and keys"). A key is
-- stored as stored_key = SHA-256(ClientKey), ClientKey being a slow KDF of
-- the key: it checks a peer's proof but cannot make one. The version 1
-- verifier (HMAC-SHA256(salt, key)) was itself the proving key, so whoever
-- read this table could connect as anyone.
--
-- SQL cannot run the KDF, so this only makes room: a row keeps its v1
-- verifier until the first upgraded gateway (or `switchboard keys`) to open
-- the database converts it (internal/gateway.UpgradeKeys: stored_key and the
-- new key_id set, v1_verifier set to NULL, one row at a time, idempotent).
-- Every row has one of the two.
--
-- The v1 column is renamed, not only made nullable, so that a gateway node
-- of version 1 still running during the upgrade can no longer read or
-- write this table: it would otherwise load a converted row as a key with
-- an empty verifier, which anyone knowing the (public) key ID can prove. It
-- keeps the keys it loaded before, warns that it cannot read them, and an
-- old `switchboard keys add` fails instead of writing a v1 row.
ALTER TABLE gateway_keys RENAME COLUMN verifier TO v1_verifier;
ALTER TABLE gateway_keys
    ADD COLUMN stored_key bytea,
    ALTER COLUMN v1_verifier DROP NOT NULL,
    ADD CONSTRAINT gateway_keys_v1_verifier_or_stored_key
        CHECK (stored_key IS NOT NULL OR v1_verifier IS NOT NULL);

-- +goose Down

-- A converted row has no v1 verifier any more and cannot be given one back
-- without the key, so going down is refused while there is one: remove
-- those keys (and add them again with the older switchboard) first.
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM gateway_keys WHERE v1_verifier IS NULL) THEN
        RAISE EXCEPTION 'gateway_keys holds keys converted to handshake version 2; remove them before migrating down';
    END IF;
END
$$;
-- +goose StatementEnd
ALTER TABLE gateway_keys
    DROP CONSTRAINT gateway_keys_v1_verifier_or_stored_key,
    DROP COLUMN stored_key,
    ALTER COLUMN v1_verifier SET NOT NULL;
ALTER TABLE gateway_keys RENAME COLUMN v1_verifier TO verifier;
