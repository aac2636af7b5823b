DROP TABLE IF EXISTS pool_live_total;
DROP TABLE IF EXISTS pool_live;
