DROP FUNCTION IF EXISTS prewarm_claim_warm(uuid, uuid, int, uuid, uuid, timestamptz);
-- Warm designs get their copied image rows back.
INSERT INTO design_images (design_id, position, object_key)
SELECT d.id, i.position, i.object_key
  FROM designs d JOIN pool_item_images i ON i.item_id = d.pool_item_id
ON CONFLICT DO NOTHING;
DROP VIEW IF EXISTS design_objects;
ALTER TABLE pool_items DROP COLUMN IF EXISTS image_keys;
ALTER TABLE pool_items DROP COLUMN IF EXISTS image_positions;
DROP TABLE IF EXISTS background_cursors;
ALTER TABLE pool_targets DROP COLUMN IF EXISTS last_design_at;
DROP INDEX IF EXISTS template_images_by_key;
DROP INDEX IF EXISTS templates_changed;
DROP INDEX IF EXISTS pool_items_finished;
