-- Issue 21: an endpoint's delivery settings (rate limit, later ordering and batching) as one
-- JSON document; NULL means the defaults.
ALTER TABLE endpoints ADD COLUMN shaping TEXT;
