DROP FUNCTION prewarm_claim_item(uuid, uuid, int, uuid, uuid, timestamptz);

DROP TABLE background_cursors;
-- Recreated by `run_migrations` before it applies anything.
DROP TABLE singleton_leases;

DROP TABLE pool_policy_version;
DROP TABLE company_pool_policies;
DROP TABLE template_pool_policies;
DROP TABLE demand_profile;
DROP TABLE pool_targets;

DROP TABLE pool_live_total;
DROP TABLE pool_live;
DROP TABLE pool_depth_total;
DROP TABLE pool_depths;
DROP TABLE pool_items;

DROP TABLE pending_copies;
DROP TABLE design_images;
DROP TABLE designs;

DROP TABLE template_images;
DROP TABLE templates;

DROP TABLE idempotency_keys;
DROP TABLE api_keys;
DROP TABLE companies;
