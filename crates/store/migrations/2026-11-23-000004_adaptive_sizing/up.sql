-- Adaptive pool sizing: demand is read from the designs themselves (an
-- exponentially decayed rate over recent designs), and the sizer's plan is
-- kept here, so every worker replica refills to the same targets and the API
-- can show them.
CREATE INDEX designs_recent ON designs (created_at, template_id);

CREATE TABLE pool_targets (
    template_id    UUID PRIMARY KEY REFERENCES templates (id) ON DELETE CASCADE,
    target         INT              NOT NULL CHECK (target >= 0),
    -- Designs per second, decayed over the fast and the slow time constant.
    demand_fast    DOUBLE PRECISION NOT NULL,
    demand_slow    DOUBLE PRECISION NOT NULL,
    -- Estimated seconds to make one pool item ready.
    refill_secs    DOUBLE PRECISION NOT NULL,
    computed_at    TIMESTAMPTZ      NOT NULL
);
