CREATE OR REPLACE FUNCTION prewarm_claim_pool_item(
    p_item uuid, p_template uuid, p_version int, p_company uuid,
    p_design uuid, p_layout jsonb, p_now timestamptz)
RETURNS TABLE (image_position int, image_key text)
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE pool_items SET state = 'used', finished_at = p_now
     WHERE id = p_item AND state = 'ready'
       AND template_id = p_template AND template_version = p_version;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'prewarm:item_unavailable';
    END IF;
    UPDATE companies SET design_count = design_count + 1
     WHERE id = p_company AND design_count < design_limit;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'prewarm:design_limit';
    END IF;
    INSERT INTO designs (id, company_id, template_id, template_version, layout, served_from, pool_item_id, created_at)
    VALUES (p_design, p_company, p_template, p_version, p_layout, 'pool', p_item, p_now);
    RETURN QUERY
        INSERT INTO design_images (design_id, position, object_key)
        SELECT p_design, i.position, i.object_key FROM pool_item_images i WHERE i.item_id = p_item
        RETURNING design_images.position, design_images.object_key;
END
$$;
ALTER TABLE templates DROP COLUMN deleted_at;
