-- Issue 15: the ready items of all templates (`prewarm_pool_ready_items_total`)
-- kept as a running total instead of a count over every pooled item per
-- pass. Each worker's depth pass records, for the templates it checked, how
-- many ready items each has (any version), and moves the total by the
-- difference -- a cost per pass proportional to the templates checked.

-- Templates with ready items, as the depth passes last saw them.
CREATE TABLE IF NOT EXISTS pool_depths (
    template_id UUID PRIMARY KEY,
    ready       BIGINT NOT NULL CHECK (ready > 0)
);

-- One row: the sum of pool_depths.ready.
CREATE TABLE IF NOT EXISTS pool_depth_total (
    id    BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    ready BIGINT NOT NULL
);

-- Seeded once, exactly, from the ledger as it is now; what changes later is
-- found by the passes (the change stream, and the rolling sweep for the rest).
INSERT INTO pool_depths (template_id, ready)
SELECT template_id, count(*) FROM pool_items WHERE state = 'ready' GROUP BY template_id
ON CONFLICT DO NOTHING;
INSERT INTO pool_depth_total (id, ready)
SELECT TRUE, coalesce(sum(ready), 0) FROM pool_depths
ON CONFLICT DO NOTHING;
