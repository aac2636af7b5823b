-- Issue 15: a warm claim's cost flat in the image count. An item's
-- positions are its template version's, 0 to n-1 in practice (an upload
-- numbers its images in order and an edit copies them), so an item
-- reserved from now on stores only their number in its row
-- (`image_count`; `image_positions` and `image_keys` stay NULL). The claim
-- flips the item's row, and Postgres writes the whole new row to the
-- write-ahead log: with 200 positions in it that was 3,894 bytes of WAL
-- per warm design against 1,296 with 30 (rows of ~950 bytes also fill a
-- page with 8 rows, so more pages are first written after a checkpoint).
-- The claim (`prewarm_claim_item`) answers the count, not 200 positions
-- (built, sent and decoded on every claim, they cost Postgres 0.04 ms more
-- per design than one); `prewarm_claim_warm`, which a replica on the old
-- code calls, answers the positions as before, built from the count. Items
-- whose positions are not 0 to n-1 keep storing them; the older forms keep
-- being answered.
ALTER TABLE pool_items ADD COLUMN IF NOT EXISTS image_count INT CHECK (image_count >= 0);

CREATE FUNCTION prewarm_claim_item(
    p_item uuid, p_template uuid, p_version int, p_company uuid,
    p_design uuid, p_now timestamptz,
    OUT layout jsonb, OUT image_count int, OUT positions int[], OUT object_keys text[])
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
    UPDATE pool_items p SET state = 'used', finished_at = p_now
     WHERE p.id = p_item AND p.state = 'ready'
       AND p.template_id = p_template AND p.template_version = p_version
    RETURNING p.image_count, p.image_positions, p.image_keys INTO image_count, positions, object_keys;
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
    IF image_count IS NULL AND positions IS NULL THEN
        -- An item reserved before migration 8: its keys from its image rows.
        SELECT coalesce(array_agg(i.position ORDER BY i.position), '{}'),
               coalesce(array_agg(i.object_key ORDER BY i.position), '{}')
          INTO positions, object_keys
          FROM pool_item_images i WHERE i.item_id = p_item;
    END IF;
    -- A count: positions 0 to n-1. Positions without keys: the keys follow
    -- the key scheme (the caller derives them from the template, the item
    -- and each position).
END
$$;

-- The claim of migration 10, for replicas on the old code: the same, with
-- a count answered as its positions.
CREATE OR REPLACE FUNCTION prewarm_claim_warm(
    p_item uuid, p_template uuid, p_version int, p_company uuid,
    p_design uuid, p_now timestamptz,
    OUT layout jsonb, OUT positions int[], OUT object_keys text[])
LANGUAGE plpgsql AS $$
DECLARE
    v_count int;
BEGIN
    SELECT c.layout, c.image_count, c.positions, c.object_keys
      INTO layout, v_count, positions, object_keys
      FROM prewarm_claim_item(p_item, p_template, p_version, p_company, p_design, p_now) c;
    IF positions IS NULL THEN
        positions := array(SELECT generate_series(0, v_count - 1));
    END IF;
END
$$;
