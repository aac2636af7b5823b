-- Prewarm's schema. Postgres is the source of truth for everything; Redis only
-- indexes ready pool items and can be rebuilt from `pool_items`.

CREATE TABLE companies (
    id           UUID PRIMARY KEY,
    name         TEXT NOT NULL,
    design_limit INT  NOT NULL CHECK (design_limit >= 0),
    -- Maintained in the same transaction as designs, so the plan limit is
    -- enforced by one conditional UPDATE instead of a racy COUNT(*).
    design_count INT  NOT NULL DEFAULT 0 CHECK (design_count >= 0),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id         UUID PRIMARY KEY,
    company_id UUID NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    -- SHA-256 of the bearer token; the token itself is never stored.
    key_hash   BYTEA NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at TIMESTAMPTZ
);

CREATE TABLE templates (
    id               UUID PRIMARY KEY,
    owner_company_id UUID NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    visibility       TEXT NOT NULL CHECK (visibility IN ('private', 'public')),
    name             TEXT NOT NULL,
    category         TEXT NOT NULL,
    layout           JSONB NOT NULL,
    version          INT  NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX templates_visible ON templates (visibility, owner_company_id);

-- Images per template *version*: an edit writes a new set of rows, so items
-- and designs of an older version still know what they were copied from.
CREATE TABLE template_images (
    template_id  UUID NOT NULL REFERENCES templates (id) ON DELETE CASCADE,
    version      INT  NOT NULL,
    position     INT  NOT NULL,
    object_key   TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes   BIGINT NOT NULL,
    PRIMARY KEY (template_id, version, position)
);

CREATE TABLE designs (
    id               UUID PRIMARY KEY,
    company_id       UUID NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    template_id      UUID NOT NULL REFERENCES templates (id),
    template_version INT  NOT NULL,
    layout           JSONB NOT NULL,
    served_from      TEXT NOT NULL CHECK (served_from IN ('pool', 'copy')),
    -- I2: a pool item becomes at most one design.
    pool_item_id     UUID UNIQUE,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX designs_by_company ON designs (company_id, created_at DESC);

CREATE TABLE design_images (
    design_id  UUID NOT NULL REFERENCES designs (id) ON DELETE CASCADE,
    position   INT  NOT NULL,
    -- I2: no S3 object is ever part of two designs.
    object_key TEXT NOT NULL UNIQUE,
    PRIMARY KEY (design_id, position)
);

-- The pool ledger. A slot is reserved as 'copying' *before* any object is
-- copied (so the keys are known to the GC, and concurrent refills count it),
-- turns 'ready' when every copy landed, then 'used' or 'discarded'.
CREATE TABLE pool_items (
    id               UUID PRIMARY KEY,
    template_id      UUID NOT NULL REFERENCES templates (id) ON DELETE CASCADE,
    template_version INT  NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('copying', 'ready', 'used', 'discarded')),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- While 'copying': when the reserving worker's claim expires.
    lease_until      TIMESTAMPTZ,
    ready_at         TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ
);
CREATE INDEX pool_items_live ON pool_items (template_id, template_version, state)
    WHERE state IN ('copying', 'ready');

CREATE TABLE pool_item_images (
    item_id    UUID NOT NULL REFERENCES pool_items (id) ON DELETE CASCADE,
    position   INT  NOT NULL,
    source_key TEXT NOT NULL,
    object_key TEXT NOT NULL UNIQUE,
    PRIMARY KEY (item_id, position)
);
