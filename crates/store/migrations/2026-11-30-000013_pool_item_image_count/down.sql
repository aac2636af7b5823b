-- Items that store only their count get their positions back in their row
-- (the function of migration 10 would otherwise read their image rows),
-- then migration 10's function again.
DROP FUNCTION IF EXISTS prewarm_claim_item(uuid, uuid, int, uuid, uuid, timestamptz);
UPDATE pool_items
   SET image_positions = array(SELECT generate_series(0, image_count - 1))
 WHERE image_count IS NOT NULL AND image_positions IS NULL AND image_keys IS NULL;
CREATE OR REPLACE FUNCTION prewarm_claim_warm(
    p_item uuid, p_template uuid, p_version int, p_company uuid,
    p_design uuid, p_now timestamptz,
    OUT layout jsonb, OUT positions int[], OUT object_keys text[])
LANGUAGE plpgsql AS $$
DECLARE
    v_version int;
    v_visible boolean;
BEGIN
    SELECT t.layout, t.version, (t.visibility = 'public' OR t.owner_company_id = p_company)
      INTO layout, v_version, v_visible
      FROM templates t
     WHERE t.id = p_template AND t.deleted_at IS NULL
       FOR KEY SHARE;
    IF NOT FOUND OR v_version <> p_version THEN
        RAISE EXCEPTION 'prewarm:template_changed';
    END IF;
    IF NOT v_visible THEN
        RAISE EXCEPTION 'prewarm:template_hidden';
    END IF;
    UPDATE pool_items SET state = 'used', finished_at = p_now
     WHERE id = p_item AND state = 'ready'
       AND template_id = p_template AND template_version = p_version
    RETURNING image_positions, image_keys INTO positions, object_keys;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'prewarm:item_unavailable';
    END IF;
    UPDATE companies SET design_count = design_count + 1
     WHERE id = p_company AND design_count < design_limit;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'prewarm:design_limit';
    END IF;
    INSERT INTO designs (id, company_id, template_id, template_version, layout, served_from, pool_item_id, created_at)
    VALUES (p_design, p_company, p_template, p_version, layout, 'pool', p_item, p_now);
    IF positions IS NULL THEN
        -- An item reserved before migration 8: its keys from its image rows.
        SELECT coalesce(array_agg(i.position ORDER BY i.position), '{}'),
               coalesce(array_agg(i.object_key ORDER BY i.position), '{}')
          INTO positions, object_keys
          FROM pool_item_images i WHERE i.item_id = p_item;
    END IF;
    -- Positions without keys: the keys follow the key scheme (the caller
    -- derives them from the template, the item and each position).
END
$$;
ALTER TABLE pool_items DROP COLUMN IF EXISTS image_count;
