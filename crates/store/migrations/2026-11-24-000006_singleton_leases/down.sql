DROP TABLE singleton_leases;
