-- A listing page is bounded in bytes as well as rows: public templates
-- appear in every company's listing, so without a byte bound one tenant's
-- hundred 256-KiB layouts would make every other tenant's first page
-- 25 MiB. The listing sums this column over the page before it reads a
-- single layout (templates.rs, `listing_sql`). Adding a stored generated
-- column rewrites the table under an exclusive lock (every layout is read
-- once): on a large live catalogue, add a plain column kept by a trigger and
-- backfill it in batches instead.
ALTER TABLE templates
    ADD COLUMN IF NOT EXISTS layout_bytes integer
    GENERATED ALWAYS AS (octet_length(layout::text)) STORED;
