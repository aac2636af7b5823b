-- Pool policies an operator sets through the admin API: one per template,
-- and one per company (the default of its templates without their own).
-- The policy is JSON (`shared_domain::pool_policy`), validated by the API.
CREATE TABLE template_pool_policies (
    template_id UUID PRIMARY KEY REFERENCES templates (id) ON DELETE CASCADE,
    policy      JSONB NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE company_pool_policies (
    company_id UUID PRIMARY KEY REFERENCES companies (id) ON DELETE CASCADE,
    policy     JSONB NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Bumped in the transaction of every policy write: the sizer reads this one
-- row each pass and reloads the policies only when it moved.
CREATE TABLE pool_policy_version (
    id      BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    version BIGINT NOT NULL
);
INSERT INTO pool_policy_version (id, version) VALUES (TRUE, 0);

-- Each template's seasonal demand by 15-minute slot of the week (UTC; slot
-- 0 starts at the epoch's week boundary): `current` designs in the slot
-- during `week` (weeks since the epoch), and `level`, the exponentially
-- weighted mean of the finished weeks' counts as of `week`. Kept by the
-- sizer from the designs it reads; rebuilt once from the designs table.
CREATE TABLE demand_profile (
    template_id UUID NOT NULL,
    slot        SMALLINT NOT NULL CHECK (slot >= 0 AND slot < 672),
    week        INTEGER NOT NULL,
    current     DOUBLE PRECISION NOT NULL,
    level       DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (template_id, slot)
);
-- The templates whose demand in a coming slot may be worth a larger pool:
-- an index range, not the catalogue.
CREATE INDEX demand_profile_due ON demand_profile (slot, (greatest(level, current)));

-- The forecast rate (designs/s) the sizer planned each template with.
ALTER TABLE pool_targets ADD COLUMN forecast DOUBLE PRECISION NOT NULL DEFAULT 0;
