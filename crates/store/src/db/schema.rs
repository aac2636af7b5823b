//! Diesel table definitions, kept in step with `migrations/` by hand (and
//! checked by every query the tests run against a migrated database).

diesel::table! {
    companies (id) {
        id -> Uuid,
        name -> Text,
        design_limit -> Int4,
        design_count -> Int4,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Uuid,
        company_id -> Uuid,
        key_hash -> Bytea,
        created_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        hint -> Text,
        expires_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    templates (id) {
        id -> Uuid,
        owner_company_id -> Uuid,
        visibility -> Text,
        name -> Text,
        category -> Text,
        layout -> Jsonb,
        version -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
        layout_bytes -> Nullable<Int4>,
    }
}

diesel::table! {
    template_images (template_id, version, position) {
        template_id -> Uuid,
        version -> Int4,
        position -> Int4,
        object_key -> Text,
        content_type -> Text,
        size_bytes -> Int8,
    }
}

diesel::table! {
    designs (id) {
        id -> Uuid,
        company_id -> Uuid,
        template_id -> Uuid,
        template_version -> Int4,
        layout -> Jsonb,
        served_from -> Text,
        pool_item_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    design_images (design_id, position) {
        design_id -> Uuid,
        position -> Int4,
        object_key -> Text,
    }
}

diesel::table! {
    pool_items (id) {
        id -> Uuid,
        template_id -> Uuid,
        template_version -> Int4,
        state -> Text,
        created_at -> Timestamptz,
        lease_until -> Nullable<Timestamptz>,
        ready_at -> Nullable<Timestamptz>,
        finished_at -> Nullable<Timestamptz>,
        image_count -> Int4,
    }
}

diesel::joinable!(api_keys -> companies (company_id));
diesel::joinable!(template_images -> templates (template_id));
diesel::joinable!(designs -> templates (template_id));
diesel::joinable!(design_images -> designs (design_id));
diesel::joinable!(pool_items -> templates (template_id));

diesel::allow_tables_to_appear_in_same_query!(
    companies,
    api_keys,
    templates,
    template_images,
    designs,
    design_images,
    pool_items,
);

diesel::table! {
    pool_targets (template_id) {
        template_id -> Uuid,
        target -> Int4,
        demand_fast -> Float8,
        demand_slow -> Float8,
        refill_secs -> Float8,
        computed_at -> Timestamptz,
        last_design_at -> Nullable<Timestamptz>,
        forecast -> Float8,
        hold -> Nullable<Int4>,
    }
}

diesel::table! {
    background_cursors (name) {
        name -> Text,
        position -> Text,
        updated_at -> Timestamptz,
    }
}
