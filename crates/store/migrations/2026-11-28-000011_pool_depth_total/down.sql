DROP TABLE pool_depth_total;
DROP TABLE pool_depths;
