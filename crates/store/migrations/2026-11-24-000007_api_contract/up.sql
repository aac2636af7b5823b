-- Idempotency keys of `POST /designs` and `POST /templates`. A request that
-- owns a key (`owner`, until `locked_until`) makes the resource and, in the
-- same transaction, stores its answer here: a retry after a crash or a lost
-- reply replays that answer instead of making a second resource.
CREATE TABLE idempotency_keys (
    company_id      UUID NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    route           TEXT NOT NULL,
    key             TEXT NOT NULL,
    -- SHA-256 of the request (route, body): the same key with another body is refused.
    request_hash    BYTEA NOT NULL,
    -- The request working on it; NULL once answered.
    owner           UUID,
    locked_until    TIMESTAMPTZ,
    response_status INT,
    response_body   JSONB,
    created_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (company_id, route, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

-- Key listing and rotation: a short, non-secret hint of each key, and the
-- time a rotated key stops working.
ALTER TABLE api_keys ADD COLUMN hint TEXT NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN expires_at TIMESTAMPTZ;
CREATE INDEX api_keys_by_company ON api_keys (company_id, created_at);

-- Keyset pagination: (created_at, id) per company, newest first.
-- These build inside the migration's transaction and block writes to the
-- table meanwhile; on a large table create them first, without blocking
-- (docs/operations.md, "Upgrades"):
--   CREATE INDEX CONCURRENTLY IF NOT EXISTS designs_page ON designs (company_id, created_at DESC, id DESC);
--   CREATE INDEX CONCURRENTLY IF NOT EXISTS templates_page ON templates (created_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS designs_page ON designs (company_id, created_at DESC, id DESC);
DROP INDEX IF EXISTS designs_by_company;
CREATE INDEX IF NOT EXISTS templates_page ON templates (created_at DESC, id DESC) WHERE deleted_at IS NULL;
