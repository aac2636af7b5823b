ALTER TABLE pool_live RENAME COLUMN objects TO live;
ALTER TABLE pool_live_total RENAME COLUMN objects TO live;
