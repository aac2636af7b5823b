DROP INDEX pool_items_copying_lease;
DROP TABLE pending_copies;
