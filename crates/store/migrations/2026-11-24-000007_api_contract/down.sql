DROP INDEX templates_page;
CREATE INDEX designs_by_company ON designs (company_id, created_at DESC);
DROP INDEX designs_page;
DROP INDEX api_keys_by_company;
ALTER TABLE api_keys DROP COLUMN expires_at;
ALTER TABLE api_keys DROP COLUMN hint;
DROP TABLE idempotency_keys;
