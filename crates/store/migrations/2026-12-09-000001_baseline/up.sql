-- Prewarm's schema. Postgres is the source of truth for everything; Redis
-- only indexes ready pool items and can be rebuilt from `pool_items`.

-- ---------------------------------------------------------------------------
-- Tenants and their keys
-- ---------------------------------------------------------------------------

CREATE TABLE companies (
    id           UUID PRIMARY KEY,
    name         TEXT NOT NULL,
    design_limit INT  NOT NULL CHECK (design_limit >= 0),
    -- Kept in the same transaction as designs, so the plan limit is one
    -- conditional UPDATE instead of a racy COUNT(*).
    design_count INT  NOT NULL DEFAULT 0 CHECK (design_count >= 0),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id         UUID PRIMARY KEY,
    company_id UUID NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    -- SHA-256 of the bearer token; the token itself is never stored.
    key_hash   BYTEA NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at TIMESTAMPTZ,
    -- A short, non-secret hint of the key, for the key listing.
    hint       TEXT NOT NULL DEFAULT '',
    -- When a rotated key stops working.
    expires_at TIMESTAMPTZ
);
CREATE INDEX api_keys_by_company ON api_keys (company_id, created_at);

-- Idempotency keys of `POST /designs` and `POST /templates`. A request that
-- owns a key (`owner`, until `locked_until`) makes the resource and, in the
-- same transaction, stores its answer here: a retry replays that answer
-- instead of making a second resource.
CREATE TABLE idempotency_keys (
    company_id      UUID NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    route           TEXT NOT NULL,
    key             TEXT NOT NULL,
    -- SHA-256 of the request (route, body): the same key with another body is refused.
    request_hash    BYTEA NOT NULL,
    -- The request working on it; NULL once answered.
    owner           UUID,
    locked_until    TIMESTAMPTZ,
    response_status INT,
    response_body   JSONB,
    created_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (company_id, route, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

-- ---------------------------------------------------------------------------
-- Templates
-- ---------------------------------------------------------------------------

-- A deleted template (`deleted_at`) is invisible and never refilled; designs
-- made from it keep their history. Every edit that changes what a design
-- copies bumps `version`.
CREATE TABLE templates (
    id               UUID PRIMARY KEY,
    owner_company_id UUID NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    visibility       TEXT NOT NULL CHECK (visibility IN ('private', 'public')),
    name             TEXT NOT NULL,
    category         TEXT NOT NULL,
    layout           JSONB NOT NULL,
    version          INT  NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at       TIMESTAMPTZ,
    -- The layout's size: a listing page is bounded in bytes, summed over
    -- this column before any layout is read.
    layout_bytes     INT GENERATED ALWAYS AS (octet_length(layout::text)) STORED
);
CREATE INDEX templates_visible ON templates (visibility, owner_company_id);
-- Keyset pages, newest first: all live templates; the public ones; one
-- company's own.
CREATE INDEX templates_page ON templates (created_at DESC, id DESC)
    WHERE deleted_at IS NULL;
CREATE INDEX templates_public_page ON templates (created_at DESC, id DESC)
    WHERE deleted_at IS NULL AND visibility = 'public';
CREATE INDEX templates_owner_page ON templates (owner_company_id, created_at DESC, id DESC)
    WHERE deleted_at IS NULL;
-- The reconciler walks templates changed since its watermark (time, id).
CREATE INDEX templates_changed ON templates (updated_at, id);

-- Images per template *version*, numbered 0 to n-1: an edit writes a new
-- set of rows, so items still copying from an older version know their
-- sources (older versions' rows are pruned once nothing copies from them).
CREATE TABLE template_images (
    template_id  UUID NOT NULL REFERENCES templates (id) ON DELETE CASCADE,
    version      INT  NOT NULL,
    position     INT  NOT NULL,
    object_key   TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes   BIGINT NOT NULL,
    PRIMARY KEY (template_id, version, position)
);
-- The GC asks, per listed key, whether a template image holds it.
CREATE INDEX template_images_by_key ON template_images (object_key);

-- ---------------------------------------------------------------------------
-- Designs
-- ---------------------------------------------------------------------------

-- A design is served from the pool (`pool_item_id` set: it owns that item's
-- objects, whose keys follow the key scheme from the item's template, id
-- and image count) or copied for it (`copy`: its objects are its
-- `design_images` rows).
CREATE TABLE designs (
    id               UUID PRIMARY KEY,
    company_id       UUID NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    template_id      UUID NOT NULL REFERENCES templates (id),
    template_version INT  NOT NULL,
    layout           JSONB NOT NULL,
    served_from      TEXT NOT NULL CHECK (served_from IN ('pool', 'copy')),
    -- A pool item becomes at most one design.
    pool_item_id     UUID UNIQUE,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- A company's keyset pages, newest first.
CREATE INDEX designs_page ON designs (company_id, created_at DESC, id DESC);
-- The sizer reads the designs made since its last pass.
CREATE INDEX designs_recent ON designs (created_at, template_id);

-- The objects copied for a cold (`copy`) design, by position.
CREATE TABLE design_images (
    design_id  UUID NOT NULL REFERENCES designs (id) ON DELETE CASCADE,
    position   INT  NOT NULL,
    -- No S3 object is ever part of two designs.
    object_key TEXT NOT NULL UNIQUE,
    PRIMARY KEY (design_id, position)
);

-- Objects about to be written for a row not committed yet: a cold design's
-- copies and a template upload's images (`design_id` is the owner's id).
-- The GC treats a pending key as referenced; the owner's transaction
-- deletes its rows, and must find all of them (rows past `expires_at` may
-- have been purged and their objects collected).
CREATE TABLE pending_copies (
    object_key TEXT PRIMARY KEY,
    design_id  UUID NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX pending_copies_by_design ON pending_copies (design_id);
CREATE INDEX pending_copies_by_expiry ON pending_copies (expires_at);

-- ---------------------------------------------------------------------------
-- The pool ledger
-- ---------------------------------------------------------------------------

-- A slot is reserved as 'copying' *before* any object is copied (so its
-- keys are known to the GC, and concurrent refills count it), turns 'ready'
-- when every copy landed, then 'used' (by a design) or 'discarded'. Its
-- objects are positions 0 to image_count - 1, each at the key scheme's
-- `pool/{template}/{hh}/{item}/{position}`.
CREATE TABLE pool_items (
    id               UUID PRIMARY KEY,
    template_id      UUID NOT NULL REFERENCES templates (id) ON DELETE CASCADE,
    template_version INT  NOT NULL,
    state            TEXT NOT NULL
        CHECK (state IN ('copying', 'ready', 'used', 'discarded')),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- While 'copying': when the reserving worker's claim expires.
    lease_until      TIMESTAMPTZ,
    ready_at         TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    image_count      INT NOT NULL CHECK (image_count >= 0)
);
-- Live items of a template version (counts, refills).
CREATE INDEX pool_items_live ON pool_items (template_id, template_version, state)
    WHERE state IN ('copying', 'ready');
-- Copying items whose lease lapsed, found without scanning every item.
CREATE INDEX pool_items_copying_lease ON pool_items (lease_until)
    WHERE state = 'copying';
-- The reconciler walks items finished since its watermark.
CREATE INDEX pool_items_finished ON pool_items (finished_at, template_id)
    WHERE finished_at IS NOT NULL;

-- Ready items per template (any version) as the depth passes last saw
-- them, and their sum in one row (`prewarm_pool_ready_items_total`).
CREATE TABLE pool_depths (
    template_id UUID PRIMARY KEY,
    ready       BIGINT NOT NULL CHECK (ready > 0)
);

CREATE TABLE pool_depth_total (
    id    BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    ready BIGINT NOT NULL
);
INSERT INTO pool_depth_total (id, ready) VALUES (TRUE, 0);

-- Objects of each template's live items as its last budgeted reserve
-- counted them, and their sum in one row (`pool.budget_objects`).
CREATE TABLE pool_live (
    template_id UUID PRIMARY KEY,
    objects     BIGINT NOT NULL CONSTRAINT pool_live_live_check CHECK (objects > 0)
);

CREATE TABLE pool_live_total (
    id      BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    objects BIGINT NOT NULL
);
INSERT INTO pool_live_total (id, objects) VALUES (TRUE, 0);

-- ---------------------------------------------------------------------------
-- Pool sizing
-- ---------------------------------------------------------------------------

-- The sizer's plan, so every worker replica refills to the same levels and
-- the API can show them.
CREATE TABLE pool_targets (
    template_id    UUID PRIMARY KEY REFERENCES templates (id) ON DELETE CASCADE,
    -- The refill level.
    target         INT              NOT NULL CHECK (target >= 0),
    -- Designs per second, decayed over the fast and the slow time constant,
    -- as of `computed_at`.
    demand_fast    DOUBLE PRECISION NOT NULL,
    demand_slow    DOUBLE PRECISION NOT NULL,
    -- Estimated seconds to make one pool item ready.
    refill_secs    DOUBLE PRECISION NOT NULL,
    computed_at    TIMESTAMPTZ      NOT NULL,
    -- The template's latest design seen by the sizer.
    last_design_at TIMESTAMPTZ,
    -- The forecast rate (designs/s) the template was planned with.
    forecast       DOUBLE PRECISION NOT NULL DEFAULT 0,
    -- The retire level: only items above it are retired. NULL: `target`.
    hold           INT
);

-- Each template's seasonal demand by 15-minute slot of the week (UTC; slot
-- 0 starts at the epoch's week boundary): `current` designs in the slot
-- during `week` (weeks since the epoch), and `level`, the exponentially
-- weighted mean of the finished weeks' counts as of `week`.
CREATE TABLE demand_profile (
    template_id UUID NOT NULL,
    slot        SMALLINT NOT NULL CHECK (slot >= 0 AND slot < 672),
    week        INTEGER NOT NULL,
    current     DOUBLE PRECISION NOT NULL,
    level       DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (template_id, slot)
);
-- Templates whose demand in a coming slot may be worth a larger pool.
CREATE INDEX demand_profile_due ON demand_profile (slot, (greatest(level, current)));

-- Pool policies set through the admin API (JSON, `shared_domain::pool_policy`):
-- one per template, and one per company (the default of its templates).
CREATE TABLE template_pool_policies (
    template_id UUID PRIMARY KEY REFERENCES templates (id) ON DELETE CASCADE,
    policy      JSONB NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE company_pool_policies (
    company_id UUID PRIMARY KEY REFERENCES companies (id) ON DELETE CASCADE,
    policy     JSONB NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row, bumped by every policy write: the sizer reloads the policies
-- only when it moved.
CREATE TABLE pool_policy_version (
    id      BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    version BIGINT NOT NULL
);
INSERT INTO pool_policy_version (id, version) VALUES (TRUE, 0);

-- ---------------------------------------------------------------------------
-- Background passes
-- ---------------------------------------------------------------------------

-- One replica at a time runs each background pass (and the migrations):
-- a lease row, renewed while the pass runs, freed when `expires_at` passes.
-- IF NOT EXISTS: `run_migrations` creates it before any migration runs.
CREATE TABLE IF NOT EXISTS singleton_leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

-- Where a paged background pass stopped (the GC's listing position, the
-- reconciler's watermark and sweep position), so a restart resumes there.
CREATE TABLE background_cursors (
    name       TEXT PRIMARY KEY,
    position   TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------------
-- The warm claim
-- ---------------------------------------------------------------------------

-- One statement, one round trip: checks the template (current version, not
-- deleted, visible to the company) under a KEY SHARE lock -- an edit, which
-- locks the row FOR UPDATE, either commits first and the claim fails, or
-- waits for it -- flips the item `ready` -> `used`, takes a plan slot and
-- inserts the design. A failed check raises, rolling the statement back;
-- the message tells which. Answers the template's layout and the item's
-- image count: the caller derives the keys (positions 0 to n-1) from the
-- key scheme.
CREATE FUNCTION prewarm_claim_item(
    p_item uuid, p_template uuid, p_version int, p_company uuid,
    p_design uuid, p_now timestamptz,
    OUT layout jsonb, OUT image_count int)
LANGUAGE plpgsql AS $$
DECLARE
    v_version int;
    v_visible boolean;
BEGIN
    SELECT t.layout, t.version, (t.visibility = 'public' OR t.owner_company_id = p_company)
      INTO layout, v_version, v_visible
      FROM templates t
     WHERE t.id = p_template AND t.deleted_at IS NULL
       FOR KEY SHARE;
    IF NOT FOUND OR v_version <> p_version THEN
        RAISE EXCEPTION 'prewarm:template_changed';
    END IF;
    IF NOT v_visible THEN
        RAISE EXCEPTION 'prewarm:template_hidden';
    END IF;
    UPDATE pool_items p SET state = 'used', finished_at = p_now
     WHERE p.id = p_item AND p.state = 'ready'
       AND p.template_id = p_template AND p.template_version = p_version
    RETURNING p.image_count INTO image_count;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'prewarm:item_unavailable';
    END IF;
    UPDATE companies SET design_count = design_count + 1
     WHERE id = p_company AND design_count < design_limit;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'prewarm:design_limit';
    END IF;
    INSERT INTO designs (id, company_id, template_id, template_version, layout, served_from, pool_item_id, created_at)
    VALUES (p_design, p_company, p_template, p_version, layout, 'pool', p_item, p_now);
END
$$;
