-- +goose Up

-- Why a Client or session ended, where the event's text (kept as the design
-- words it, for log parsers) does not say: "gateway stopped abnormally", ...
ALTER TABLE events ADD COLUMN reason text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE events DROP COLUMN reason;
