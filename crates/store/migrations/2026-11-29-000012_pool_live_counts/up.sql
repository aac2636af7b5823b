-- Issue 15: the pool budget (`pool.budget_items`) without counting every
-- live item of every template per reserve. Each template's live items as
-- its last budgeted reserve counted them, and their sum (see
-- `prewarm_store::db::pool_live`). Seeded from the ledger; a worker started
-- with a budget recounts them.
CREATE TABLE IF NOT EXISTS pool_live (
    template_id UUID PRIMARY KEY,
    live        BIGINT NOT NULL CHECK (live > 0)
);

CREATE TABLE IF NOT EXISTS pool_live_total (
    id   BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    live BIGINT NOT NULL
);

INSERT INTO pool_live (template_id, live)
SELECT template_id, count(*) FROM pool_items WHERE state IN ('copying', 'ready') GROUP BY template_id
ON CONFLICT DO NOTHING;
INSERT INTO pool_live_total (id, live)
SELECT TRUE, coalesce(sum(live), 0) FROM pool_live
ON CONFLICT DO NOTHING;
