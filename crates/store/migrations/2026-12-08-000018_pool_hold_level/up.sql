-- A pool's retire level beside its refill level (`target`): refills fill a
-- pool up to `target`, and only items above `hold` are retired, so the
-- surplus of a burst that ended is used up by the designs that follow
-- instead of being retired and copied again. NULL (rows of a writer that
-- knew only `target`): the same as `target`.
ALTER TABLE pool_targets ADD COLUMN IF NOT EXISTS hold INTEGER;
