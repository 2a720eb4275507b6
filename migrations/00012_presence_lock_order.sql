-- +goose Up

-- The lost node's rows go in (name, key_id) order, the order every other
-- writer of presence locks rows in (db/presence.go, "Lock order"), so the
-- removal never deadlocks with a node taking one of those Clients over.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION presence_drop_lost_node() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM presence p USING (
        SELECT name, key_id FROM presence WHERE node = NEW.name ORDER BY name, key_id FOR UPDATE
    ) mine
    WHERE p.name = mine.name AND p.key_id = mine.key_id AND p.node = NEW.name;
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION presence_drop_lost_node() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM presence WHERE node = NEW.name;
    RETURN NULL;
END;
$$;
-- +goose StatementEnd
