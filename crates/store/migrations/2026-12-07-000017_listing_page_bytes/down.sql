ALTER TABLE templates DROP COLUMN IF EXISTS layout_bytes;
