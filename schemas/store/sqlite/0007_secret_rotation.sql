-- Secret rotation: the secret an endpoint had before its last rotation, which also signs until
-- it expires.
ALTER TABLE endpoints ADD COLUMN previous_secret TEXT;
ALTER TABLE endpoints ADD COLUMN previous_secret_expires_at INTEGER;
