DROP INDEX IF EXISTS templates_owner_page;
DROP INDEX IF EXISTS templates_public_page;
