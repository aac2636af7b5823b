-- Cold designs announce their copies before making them: the garbage
-- collector treats a pending key as referenced, so an object copied for a
-- design that is not committed yet is never mistaken for garbage. The
-- design's transaction deletes its rows (and must find all of them: rows
-- past `expires_at` may have been purged, and their objects collected).
CREATE TABLE pending_copies (
    object_key TEXT PRIMARY KEY,
    design_id  UUID NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX pending_copies_by_design ON pending_copies (design_id);
CREATE INDEX pending_copies_by_expiry ON pending_copies (expires_at);

-- Leases of copying items are renewed by the refill's heartbeat and
-- rescued when they lapse: find those without scanning every item.
CREATE INDEX pool_items_copying_lease ON pool_items (lease_until) WHERE state = 'copying';
