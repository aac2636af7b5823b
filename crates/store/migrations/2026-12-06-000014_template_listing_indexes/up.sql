-- A company's template listing reads two index ranges, each newest first:
-- the public templates, and its own private ones. The one index over every
-- live template made a listing walk (and filter out) every other
-- company's newer private templates: one tenant creating many made every
-- other tenant's first page slower. (On a large live table, build these
-- by hand with CREATE INDEX CONCURRENTLY before deploying.)
CREATE INDEX IF NOT EXISTS templates_public_page
    ON templates (created_at DESC, id DESC)
    WHERE deleted_at IS NULL AND visibility = 'public';
CREATE INDEX IF NOT EXISTS templates_owner_page
    ON templates (owner_company_id, created_at DESC, id DESC)
    WHERE deleted_at IS NULL;
