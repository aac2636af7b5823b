ALTER TABLE pool_targets DROP COLUMN IF EXISTS forecast;
DROP TABLE IF EXISTS demand_profile;
DROP TABLE IF EXISTS pool_policy_version;
DROP TABLE IF EXISTS company_pool_policies;
DROP TABLE IF EXISTS template_pool_policies;
