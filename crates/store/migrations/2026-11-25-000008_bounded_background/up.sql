-- Issue 15: background work proportional to what changed, and a warm path
-- whose writes do not grow with the image count.

-- The reconciler finds templates whose pool may have changed since its last
-- pass by walking these two indexes from a watermark (keyset on time, id).
CREATE INDEX IF NOT EXISTS pool_items_finished ON pool_items (finished_at, template_id)
    WHERE finished_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS templates_changed ON templates (updated_at, id);

-- The GC asks, for each listed key, whether a template image holds it: an
-- index, so a page of keys costs 1,000 lookups, not 1,000 scans of the
-- catalogue's images.
CREATE INDEX IF NOT EXISTS template_images_by_key ON template_images (object_key);

-- The sizer keeps demand incrementally: a row per template with recent
-- demand (decayed rates as of computed_at, and when it was last used), so a
-- pass reads only the designs made since the previous one.
ALTER TABLE pool_targets ADD COLUMN IF NOT EXISTS last_design_at TIMESTAMPTZ;

-- Where a paged background pass stopped (the GC's listing position, the
-- reconciler's watermark and sweep position), so a restart resumes there.
CREATE TABLE IF NOT EXISTS background_cursors (
    name       TEXT PRIMARY KEY,
    position   TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A warm design takes ownership of its pool item's objects: the item's rows
-- (`pool_item_images`) are the design's images, referenced through
-- `designs.pool_item_id`, instead of being copied into `design_images`.
-- Designs made this way before keep working: their copied rows are dropped
-- here (they hold the same keys as the item's rows).
DELETE FROM design_images di USING designs d
 WHERE d.id = di.design_id AND d.pool_item_id IS NOT NULL;

-- A pool item also holds its image keys in its own row (written by the
-- worker when it reserves the item, off the request path), so the warm claim
-- reads them back from the row it updates instead of one row per image.
-- Items reserved before this migration have NULL here and are read from
-- pool_item_images (which stays: the GC looks keys up there).
ALTER TABLE pool_items ADD COLUMN IF NOT EXISTS image_positions INT[];
ALTER TABLE pool_items ADD COLUMN IF NOT EXISTS image_keys TEXT[];

-- Every design's objects, whichever way it was made.
CREATE OR REPLACE VIEW design_objects AS
    SELECT design_id, position, object_key FROM design_images
    UNION ALL
    SELECT d.id, i.position, i.object_key
      FROM designs d JOIN pool_item_images i ON i.item_id = d.pool_item_id;

-- The warm claim: checks the template (current version, visible to the
-- company, not deleted) instead of the caller reading it first, flips the
-- item to `used` (returning the keys its row holds), takes a plan slot and
-- inserts one design row -- a fixed number of small writes and no read per
-- image, whatever the image count -- and returns the design's layout and
-- images.
CREATE OR REPLACE FUNCTION prewarm_claim_warm(
    p_item uuid, p_template uuid, p_version int, p_company uuid,
    p_design uuid, p_now timestamptz)
RETURNS TABLE (layout jsonb, positions int[], object_keys text[])
LANGUAGE plpgsql AS $$
DECLARE
    v_layout jsonb;
    v_version int;
    v_visible boolean;
    v_positions int[];
    v_keys text[];
BEGIN
    SELECT t.layout, t.version, (t.visibility = 'public' OR t.owner_company_id = p_company)
      INTO v_layout, v_version, v_visible
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
    RETURNING image_positions, image_keys INTO v_positions, v_keys;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'prewarm:item_unavailable';
    END IF;
    UPDATE companies SET design_count = design_count + 1
     WHERE id = p_company AND design_count < design_limit;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'prewarm:design_limit';
    END IF;
    INSERT INTO designs (id, company_id, template_id, template_version, layout, served_from, pool_item_id, created_at)
    VALUES (p_design, p_company, p_template, p_version, v_layout, 'pool', p_item, p_now);
    IF v_keys IS NULL THEN
        -- An item reserved before migration 8.
        SELECT coalesce(array_agg(i.position ORDER BY i.position), '{}'),
               coalesce(array_agg(i.object_key ORDER BY i.position), '{}')
          INTO v_positions, v_keys
          FROM pool_item_images i WHERE i.item_id = p_item;
    END IF;
    RETURN QUERY SELECT v_layout, v_positions, v_keys;
END
$$;
