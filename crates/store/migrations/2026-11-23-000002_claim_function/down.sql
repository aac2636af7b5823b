DROP FUNCTION prewarm_claim_pool_item(uuid, uuid, int, uuid, uuid, jsonb, timestamptz);
