-- The pool budget counts objects (`pool.budget_objects`), not items: an item
-- of a 200-image template costs 200 times the storage of a 1-image one. The
-- recorded live counts become objects; recounted here from the ledger (a
-- worker started with a budget recounts them again).
ALTER TABLE pool_live RENAME COLUMN live TO objects;
ALTER TABLE pool_live_total RENAME COLUMN live TO objects;

DELETE FROM pool_live;
INSERT INTO pool_live (template_id, objects)
SELECT template_id,
       sum(coalesce(image_count, cardinality(image_positions), cardinality(image_keys), 0))
  FROM pool_items WHERE state IN ('copying', 'ready') GROUP BY template_id
HAVING sum(coalesce(image_count, cardinality(image_positions), cardinality(image_keys), 0)) > 0;
UPDATE pool_live_total SET objects = (SELECT coalesce(sum(objects), 0) FROM pool_live);
