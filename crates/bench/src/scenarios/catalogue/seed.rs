//! Seeding one strategy's fresh database, bucket and Redis prefix straight
//! (no API, no worker), as `scenarios::scale` does: the catalogue in its
//! idle steady state ([`catalogue`]: every template's pool at the
//! strategy's starting size, items ready 2 h ago, their objects copied in
//! S3, their ids listed in Redis) and the backdated designs the forecast
//! learns from ([`history`]).

use chrono::{DateTime, TimeDelta, Utc};
use diesel::sql_types::{Array, Int4, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use futures::stream::{self, StreamExt};
use prewarm_store::db::Db;
use prewarm_store::objects::ObjectStore;
use prewarm_store::pool_index::PoolIndex;
use shared_domain::ids::TemplateVersion;
use shared_domain::ids::{PoolItemId, TemplateId};
use shared_domain::object_keys;
use shared_domain::pool::PoolKey;

use super::trace::Trace;

/// Rows per insert statement.
const CHUNK: usize = 10_000;

/// The source object of image position `p` (shared by every template: a
/// CopyObject costs the same whatever it copies).
fn source(position: u32) -> String {
    format!("{SOURCE_PREFIX}{position:04}")
}

const SOURCE_PREFIX: &str = "templates/catalogue-source/";

/// Seeds the catalogue of `trace` owned by `company`: its templates
/// (created 15 days ago; the launch template now), their images, and
/// `items` ready items per template with their objects in S3 and their ids
/// listed in `index`. Returns the template ids by template index.
pub async fn catalogue(
    dbh: &Db,
    objects: &ObjectStore,
    index: &PoolIndex,
    company: uuid::Uuid,
    trace: &Trace,
    items: usize,
) -> anyhow::Result<Vec<TemplateId>> {
    let max_images = trace.images.iter().copied().max().unwrap_or(1);
    for p in 0..max_images {
        objects
            .put(&source(p), bytes::Bytes::from(vec![7u8; 1024]), "image/png")
            .await?;
    }
    let templates: Vec<TemplateId> = trace.images.iter().map(|_| TemplateId::new()).collect();
    let mut conn = dbh.conn().await?;
    for (chunk, images) in templates.chunks(CHUNK).zip(trace.images.chunks(CHUNK)) {
        let ids: Vec<uuid::Uuid> = chunk.iter().map(|t| t.0).collect();
        let counts: Vec<i32> = images.iter().map(|&o| o as i32).collect();
        diesel::sql_query(
            "INSERT INTO templates (id, owner_company_id, visibility, name, category, layout, version, created_at, updated_at)
             SELECT id, $1, 'public', 'catalogue ' || g, 'catalogue', '{}'::jsonb, 1,
                    now() - interval '15 days', now() - interval '15 days'
               FROM unnest($2::uuid[]) WITH ORDINALITY AS u(id, g)",
        )
        .bind::<SqlUuid, _>(company)
        .bind::<Array<SqlUuid>, _>(&ids)
        .execute(&mut conn)
        .await?;
        diesel::sql_query(
            "INSERT INTO template_images (template_id, version, position, object_key, content_type, size_bytes)
             SELECT id, 1, p, $3 || lpad(p::text, 4, '0'), 'image/png', 1024
               FROM unnest($1::uuid[], $2::int[]) AS u(id, n), generate_series(0, n - 1) AS p",
        )
        .bind::<Array<SqlUuid>, _>(&ids)
        .bind::<Array<Int4>, _>(&counts)
        .bind::<Text, _>(SOURCE_PREFIX)
        .execute(&mut conn)
        .await?;
    }
    // The launch template is brand new: created just before the run.
    diesel::sql_query("UPDATE templates SET created_at = now(), updated_at = now() WHERE id = $1")
        .bind::<SqlUuid, _>(templates[trace.launch].0)
        .execute(&mut conn)
        .await?;
    drop(conn);
    let pool = seed_items(dbh, &templates, trace, items).await?;
    copy_objects(objects, &pool).await?;
    list_ids(index, &pool).await?;
    Ok(templates)
}

/// One seeded item: its template, id and images.
struct Seeded {
    template: TemplateId,
    item: PoolItemId,
    images: u32,
}

/// `items` ready items per template in the ledger,
/// then the running totals the worker keeps: ready items per template,
/// and the live objects a budget is checked against.
async fn seed_items(
    dbh: &Db,
    templates: &[TemplateId],
    trace: &Trace,
    items: usize,
) -> anyhow::Result<Vec<Seeded>> {
    let pool: Vec<Seeded> = templates
        .iter()
        .zip(&trace.images)
        .flat_map(|(&template, &images)| {
            (0..items).map(move |_| Seeded {
                template,
                item: PoolItemId::new(),
                images,
            })
        })
        .collect();
    let mut conn = dbh.conn().await?;
    for chunk in pool.chunks(CHUNK) {
        let items: Vec<uuid::Uuid> = chunk.iter().map(|s| s.item.0).collect();
        let owners: Vec<uuid::Uuid> = chunk.iter().map(|s| s.template.0).collect();
        let counts: Vec<i32> = chunk.iter().map(|s| s.images as i32).collect();
        diesel::sql_query(
            "INSERT INTO pool_items (id, template_id, template_version, state, created_at, ready_at, image_count)
             SELECT i, t, 1, 'ready', now() - interval '2 hours', now() - interval '2 hours', n
               FROM unnest($1::uuid[], $2::uuid[], $3::int[]) AS u(i, t, n)",
        )
        .bind::<Array<SqlUuid>, _>(&items)
        .bind::<Array<SqlUuid>, _>(&owners)
        .bind::<Array<Int4>, _>(&counts)
        .execute(&mut conn)
        .await?;
    }
    diesel::sql_query(
        "INSERT INTO pool_depths (template_id, ready)
         SELECT template_id, count(*) FROM pool_items WHERE state = 'ready' GROUP BY template_id",
    )
    .execute(&mut conn)
    .await?;
    diesel::sql_query("UPDATE pool_depth_total SET ready = (SELECT sum(ready) FROM pool_depths)")
        .execute(&mut conn)
        .await?;
    // The product's own recount.
    prewarm_store::db::pool_live::recount(&mut conn).await?;
    Ok(pool)
}

/// Each seeded item's objects, copied from the shared sources (S3 direct).
async fn copy_objects(objects: &ObjectStore, pool: &[Seeded]) -> anyhow::Result<()> {
    let copies = pool.iter().flat_map(|s| {
        (0..s.images).map(move |p| {
            (
                source(p),
                object_keys::pool_image(s.template, s.item, p as i32),
            )
        })
    });
    let failures = stream::iter(copies.map(|(from, to)| {
        let objects = objects.clone();
        async move { objects.copy(&from, &to).await.is_err() }
    }))
    .buffer_unordered(64)
    .filter(|failed| futures::future::ready(*failed))
    .count()
    .await;
    anyhow::ensure!(failures == 0, "{failures} seed copies failed");
    Ok(())
}

/// Lists every template's ready ids in Redis and marks the lists built
/// (else the worker's first reconciler pass rebuilds every list).
async fn list_ids(index: &PoolIndex, pool: &[Seeded]) -> anyhow::Result<()> {
    let mut by_template: std::collections::BTreeMap<TemplateId, Vec<PoolItemId>> =
        std::collections::BTreeMap::new();
    for s in pool {
        by_template.entry(s.template).or_default().push(s.item);
    }
    let failures = stream::iter(by_template.into_iter().map(|(template, ids)| {
        let index = index.clone();
        async move {
            index
                .push(PoolKey::new(template, TemplateVersion::FIRST), &ids)
                .await
                .is_err()
        }
    }))
    .buffer_unordered(32)
    .filter(|failed| futures::future::ready(*failed))
    .count()
    .await;
    anyhow::ensure!(failures == 0, "{failures} pool lists not written");
    index.mark_built().await?;
    Ok(())
}

/// The backdated designs of `rows` ((seconds from `start`, template index))
/// made by `company`, straight into `designs`. Returns the rows written.
pub async fn history(
    dbh: &Db,
    company: uuid::Uuid,
    templates: &[TemplateId],
    rows: &[(f64, usize)],
    start: DateTime<Utc>,
) -> anyhow::Result<usize> {
    let mut conn = dbh.conn().await?;
    for chunk in rows.chunks(CHUNK * 2) {
        let ids: Vec<uuid::Uuid> = chunk.iter().map(|&(_, t)| templates[t].0).collect();
        let at: Vec<DateTime<Utc>> = chunk
            .iter()
            .map(|&(s, _)| start + TimeDelta::microseconds((s * 1e6) as i64))
            .collect();
        // Copied designs without images: only their time and template count.
        diesel::sql_query(
            "INSERT INTO designs (id, company_id, template_id, template_version, layout, served_from, pool_item_id, created_at)
             SELECT gen_random_uuid(), $1, t, 1, '{}'::jsonb, 'copy', NULL, at
               FROM unnest($2::uuid[], $3::timestamptz[]) AS u(t, at)",
        )
        .bind::<SqlUuid, _>(company)
        .bind::<Array<SqlUuid>, _>(&ids)
        .bind::<Array<Timestamptz>, _>(&at)
        .execute(&mut conn)
        .await?;
    }
    // Planner statistics for the seeded tables, as a database in service has.
    diesel::sql_query("ANALYZE").execute(&mut conn).await?;
    Ok(rows.len())
}
