-- One replica at a time runs each background pass (reconciler, GC, sizer).
-- A lease row, not a session advisory lock: it needs no session state, so it
-- works behind a transaction-pooling proxy, and a holder that dies frees it
-- when `expires_at` passes. The holder renews it while its pass runs.
-- (`run_migrations` creates it first if missing: it serializes migrations too.)
CREATE TABLE IF NOT EXISTS singleton_leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
