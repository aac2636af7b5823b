DROP TABLE pool_targets;
DROP INDEX designs_recent;
