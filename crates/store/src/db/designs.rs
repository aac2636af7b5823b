//! `designs` and `design_images`: companies' designs, created from a pool item
//! (warm) or from fresh copies (cold), always in one transaction that also
//! counts the design against the company's plan limit.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use shared_domain::design::{Design, DesignImage, ServedFrom};
use shared_domain::ids::{CompanyId, DesignId, PoolItemId, TemplateId, TemplateVersion};
use shared_domain::object_keys;
use uuid::Uuid;

use crate::pause;

use super::idempotency::{self, Claim, StoredAnswer};
use super::schema::{design_images, designs, pool_items};
use super::{companies, object_refs, templates, StoreError};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = designs)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct DesignRow {
    pub id: Uuid,
    pub company_id: Uuid,
    pub template_id: Uuid,
    pub template_version: i32,
    pub layout: serde_json::Value,
    pub served_from: String,
    pub pool_item_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = design_images)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct DesignImageRow {
    pub design_id: Uuid,
    pub position: i32,
    pub object_key: String,
}

impl DesignRow {
    fn into_design(self, images: Vec<DesignImage>) -> Design {
        Design {
            id: DesignId(self.id),
            company_id: CompanyId(self.company_id),
            template_id: TemplateId(self.template_id),
            template_version: TemplateVersion(self.template_version),
            layout: self.layout,
            images,
            served_from: ServedFrom::parse(&self.served_from).unwrap_or(ServedFrom::Copy),
            pool_item_id: self.pool_item_id.map(PoolItemId),
            created_at: self.created_at,
            urls_expire_at: None,
        }
    }
}

impl From<DesignImageRow> for DesignImage {
    fn from(row: DesignImageRow) -> Self {
        DesignImage {
            position: row.position,
            object_key: row.object_key,
            url: None,
        }
    }
}

/// What the caller asks to create: the template version it resolved.
#[derive(Debug, Clone)]
pub struct DesignSpec {
    pub id: DesignId,
    pub company: CompanyId,
    pub template: TemplateId,
    pub template_version: TemplateVersion,
    pub layout: serde_json::Value,
}

/// What a warm claim ([`create_from_pool_item`]) came to. Every refusal
/// wrote nothing.
#[derive(Debug)]
pub enum WarmOutcome {
    Created(Design),
    /// The company is at its plan limit.
    LimitReached,
    /// The pool item was not `ready` for this template version (already
    /// used, discarded, stale): pop another one.
    ItemUnavailable,
    /// The template was edited or deleted since the caller read its
    /// version: read the template again.
    TemplateChanged,
    /// The template is private to another company (the caller had not read
    /// it; the item is still ready).
    TemplateHidden,
    /// The request's idempotency key was taken over by a retry (this
    /// request outlived its lock).
    KeyLost,
}

/// What recording a cold design ([`create_from_copies`]) came to. Every
/// refusal wrote nothing; the caller deletes its copies.
#[derive(Debug)]
pub enum ColdOutcome {
    Created(Design),
    /// The company is at its plan limit.
    LimitReached,
    /// The template was edited or deleted while the copies ran.
    TemplateChanged,
    /// The template was made private to another company while the copies ran.
    TemplateHidden,
    /// The copies' announcement expired before the design was recorded (the
    /// garbage collector may have taken them).
    CopiesExpired,
    /// The request's idempotency key was taken over by a retry.
    KeyLost,
}

/// The two outcomes' common ground: a design made, or a key lost to a retry.
trait Outcome {
    fn created(design: Design) -> Self;
    fn key_lost() -> Self;
}

impl Outcome for WarmOutcome {
    fn created(design: Design) -> Self {
        WarmOutcome::Created(design)
    }
    fn key_lost() -> Self {
        WarmOutcome::KeyLost
    }
}

impl Outcome for ColdOutcome {
    fn created(design: Design) -> Self {
        ColdOutcome::Created(design)
    }
    fn key_lost() -> Self {
        ColdOutcome::KeyLost
    }
}

/// Ends a transaction early: a refusal (rolled back like an error, answered
/// as an outcome) or a database error.
#[derive(Debug)]
enum Abort<O> {
    Refused(O),
    Db(diesel::result::Error),
}

impl<O> From<diesel::result::Error> for Abort<O> {
    fn from(e: diesel::result::Error) -> Self {
        Abort::Db(e)
    }
}

fn finish<O: Outcome>(result: Result<Design, Abort<O>>) -> Result<O, StoreError> {
    match result {
        Ok(design) => Ok(O::created(design)),
        Err(Abort::Refused(outcome)) => Ok(outcome),
        Err(Abort::Db(e)) => Err(e.into()),
    }
}

/// Stores `design` as the answer (201) of the request's idempotency key,
/// inside the transaction that made it.
async fn complete_key<O: Outcome>(
    conn: &mut AsyncPgConnection,
    key: Option<&Claim>,
    design: &Design,
) -> Result<(), Abort<O>> {
    let Some(claim) = key else {
        return Ok(());
    };
    let answer = StoredAnswer {
        status: 201,
        body: serde_json::to_value(design)
            .map_err(|e| Abort::Db(diesel::result::Error::SerializationError(Box::new(e))))?,
    };
    if idempotency::complete(conn, claim, &answer).await? {
        Ok(())
    } else {
        Err(Abort::Refused(O::key_lost()))
    }
}

async fn insert_design(
    conn: &mut AsyncPgConnection,
    row: &DesignRow,
) -> Result<(), diesel::result::Error> {
    diesel::insert_into(designs::table)
        .values(row)
        .execute(conn)
        .await?;
    Ok(())
}

fn spec_row(spec: &DesignSpec, served_from: ServedFrom, item: Option<PoolItemId>) -> DesignRow {
    DesignRow {
        id: spec.id.0,
        company_id: spec.company.0,
        template_id: spec.template.0,
        template_version: spec.template_version.0,
        layout: spec.layout.clone(),
        served_from: served_from.as_str().to_string(),
        pool_item_id: item.map(|i| i.0),
        created_at: super::now(),
    }
}

mod claim_sql {
    use diesel::sql_types::{Integer, Timestamptz, Uuid};

    diesel::define_sql_function! {
        /// The warm claim: the template's layout and the item's image count
        /// (its keys are the key scheme's for positions 0 to n-1). Called
        /// through the query builder, not as raw SQL, so that it is a
        /// cached prepared statement: one round trip a claim (raw SQL is
        /// prepared again on every call, a round trip of its own).
        fn prewarm_claim_item(
            item: Uuid,
            template: Uuid,
            version: Integer,
            company: Uuid,
            design: Uuid,
            at: Timestamptz,
        ) -> Record<(Jsonb, Integer)>;
    }
}

/// What a warm claim needs: the design to make and the template version the
/// popped item must be of. The layout comes from the template inside the
/// claim, which also checks the version and the company's right to see it,
/// so the caller need not read the template first.
#[derive(Debug, Clone)]
pub struct WarmSpec {
    pub id: DesignId,
    pub company: CompanyId,
    pub template: TemplateId,
    pub template_version: TemplateVersion,
}

/// The warm path's transaction: claim pool item `item` (it must be `ready` and
/// of `spec.template_version`, the template's current version), take a plan
/// slot and record a design that owns the item's objects -- all or nothing,
/// in one statement and one round trip (`prewarm_claim_item`, a cached
/// prepared statement).
/// It writes one design row, one item update and one counter update whatever
/// the image count. With an idempotency `key`, the claim and the stored
/// answer share one transaction.
pub async fn create_from_pool_item(
    conn: &mut AsyncPgConnection,
    spec: &WarmSpec,
    item: PoolItemId,
    key: Option<&Claim>,
) -> Result<WarmOutcome, StoreError> {
    if key.is_none() {
        return Ok(claim_item(conn, spec, item).await?);
    }
    let result = conn
        .transaction::<_, Abort<WarmOutcome>, _>(async |conn| {
            match claim_item(conn, spec, item).await? {
                WarmOutcome::Created(design) => {
                    complete_key(conn, key, &design).await?;
                    Ok(design)
                }
                // Roll back: the failed statement aborted the transaction.
                refused => Err(Abort::Refused(refused)),
            }
        })
        .await;
    finish(result)
}

async fn claim_item(
    conn: &mut AsyncPgConnection,
    spec: &WarmSpec,
    item: PoolItemId,
) -> Result<WarmOutcome, diesel::result::Error> {
    let created_at = super::now();
    let result: Result<(serde_json::Value, i32), diesel::result::Error> =
        diesel::select(claim_sql::prewarm_claim_item(
            item.0,
            spec.template.0,
            spec.template_version.0,
            spec.company.0,
            spec.id.0,
            created_at,
        ))
        .get_result(conn)
        .await;
    let message = match result {
        Ok((layout, count)) => {
            let images = warm_images(spec.template, item, count);
            let row = DesignRow {
                id: spec.id.0,
                company_id: spec.company.0,
                template_id: spec.template.0,
                template_version: spec.template_version.0,
                layout,
                served_from: ServedFrom::Pool.as_str().to_string(),
                pool_item_id: Some(item.0),
                created_at,
            };
            return Ok(WarmOutcome::Created(row.into_design(images)));
        }
        Err(diesel::result::Error::DatabaseError(kind, info)) => match info.message() {
            "prewarm:item_unavailable" => return Ok(WarmOutcome::ItemUnavailable),
            "prewarm:template_changed" => return Ok(WarmOutcome::TemplateChanged),
            "prewarm:template_hidden" => return Ok(WarmOutcome::TemplateHidden),
            "prewarm:design_limit" => return Ok(WarmOutcome::LimitReached),
            _ => diesel::result::Error::DatabaseError(kind, info),
        },
        Err(e) => e,
    };
    Err(message)
}

/// The cold path's transaction: take a plan slot and record a design whose
/// objects were just copied (`images`, by position), taking over the copies
/// announced in `pending_copies` ([`object_refs::announce`]); with an
/// idempotency `key`, its answer is stored in the same transaction.
pub async fn create_from_copies(
    conn: &mut AsyncPgConnection,
    spec: &DesignSpec,
    images: &[DesignImage],
    key: Option<&Claim>,
) -> Result<ColdOutcome, StoreError> {
    let row = spec_row(spec, ServedFrom::Copy, None);
    let image_rows: Vec<DesignImageRow> = images
        .iter()
        .map(|img| DesignImageRow {
            design_id: row.id,
            position: img.position,
            object_key: img.object_key.clone(),
        })
        .collect();
    let result = conn
        .transaction::<_, Abort<ColdOutcome>, _>(async |conn| {
            // Same rule as the warm claim: the template must still be at the
            // version the copies were made from (an edit during seconds of
            // copying must not yield a design of the old version).
            // And the same visibility rule: a template made private while
            // another company's copies ran yields that company no design.
            match templates::lock_version(conn, spec.template, spec.template_version, spec.company)
                .await?
            {
                templates::VersionLock::Locked => {}
                templates::VersionLock::Changed => {
                    return Err(Abort::Refused(ColdOutcome::TemplateChanged))
                }
                templates::VersionLock::Hidden => {
                    return Err(Abort::Refused(ColdOutcome::TemplateHidden))
                }
            }
            pause::reach(pause::at::COLD_LOCKED).await;
            if object_refs::settle(conn, spec.id.0).await? != images.len() {
                return Err(Abort::Refused(ColdOutcome::CopiesExpired));
            }
            if !companies::take_design_slot(conn, spec.company).await? {
                return Err(Abort::Refused(ColdOutcome::LimitReached));
            }
            insert_design(conn, &row).await?;
            diesel::insert_into(design_images::table)
                .values(&image_rows)
                .execute(conn)
                .await?;
            let design = row.clone().into_design(images.to_vec());
            complete_key(conn, key, &design).await?;
            Ok(design)
        })
        .await;
    finish(result)
}

/// A warm design's images: its item's objects, positions 0 to `count - 1`.
fn warm_images(template: TemplateId, item: PoolItemId, count: i32) -> Vec<DesignImage> {
    (0..)
        .zip(object_keys::pool_images(template, item, count))
        .map(|(position, object_key)| DesignImage {
            position,
            object_key,
            url: None,
        })
        .collect()
}

/// The images of these designs: a cold design's are its `design_images`
/// rows; a warm design's are its pool item's, whose keys the key scheme
/// derives from the item's template (the design's: the claim checks it), id
/// and image count.
async fn images_of(
    conn: &mut AsyncPgConnection,
    rows: &[DesignRow],
) -> Result<HashMap<Uuid, Vec<DesignImage>>, StoreError> {
    let mut map: HashMap<Uuid, Vec<DesignImage>> = HashMap::new();
    let cold: Vec<Uuid> = rows
        .iter()
        .filter(|r| r.pool_item_id.is_none())
        .map(|r| r.id)
        .collect();
    if !cold.is_empty() {
        let copied: Vec<(Uuid, i32, String)> = design_images::table
            .filter(design_images::design_id.eq_any(&cold))
            .order((design_images::design_id, design_images::position))
            .select((
                design_images::design_id,
                design_images::position,
                design_images::object_key,
            ))
            .load(conn)
            .await?;
        for (design, position, object_key) in copied {
            map.entry(design).or_default().push(DesignImage {
                position,
                object_key,
                url: None,
            });
        }
    }
    let items: Vec<Uuid> = rows.iter().filter_map(|r| r.pool_item_id).collect();
    if !items.is_empty() {
        let counts: HashMap<Uuid, i32> = pool_items::table
            .filter(pool_items::id.eq_any(&items))
            .select((pool_items::id, pool_items::image_count))
            .load::<(Uuid, i32)>(conn)
            .await?
            .into_iter()
            .collect();
        for r in rows {
            let Some(item) = r.pool_item_id else { continue };
            let count = counts.get(&item).copied().unwrap_or(0);
            map.insert(
                r.id,
                warm_images(TemplateId(r.template_id), PoolItemId(item), count),
            );
        }
    }
    Ok(map)
}

/// One of `company`'s designs.
pub async fn find(
    conn: &mut AsyncPgConnection,
    company: CompanyId,
    id: DesignId,
) -> Result<Option<Design>, StoreError> {
    let Some(row) = designs::table
        .find(id.0)
        .filter(designs::company_id.eq(company.0))
        .select(DesignRow::as_select())
        .first(conn)
        .await
        .optional()?
    else {
        return Ok(None);
    };
    let mut images = images_of(conn, std::slice::from_ref(&row)).await?;
    let imgs = images.remove(&row.id).unwrap_or_default();
    Ok(Some(row.into_design(imgs)))
}

/// `company`'s designs, newest first.
pub async fn list(
    conn: &mut AsyncPgConnection,
    company: CompanyId,
    limit: i64,
    at: &super::page::PageAt,
) -> Result<Vec<Design>, StoreError> {
    let rows: Vec<DesignRow> = designs::table
        .filter(designs::company_id.eq(company.0))
        .filter(after_designs(at))
        .order((designs::created_at.desc(), designs::id.desc()))
        .limit(limit)
        .offset(at.skip)
        .select(DesignRow::as_select())
        .load(conn)
        .await?;
    let mut images = images_of(conn, &rows).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let imgs = images.remove(&r.id).unwrap_or_default();
            r.into_design(imgs)
        })
        .collect())
}

/// Deletes one of `company`\'s designs and frees its plan slot; returns the
/// object keys the caller must now delete from S3 (`None` if not found). A
/// warm design's pool item (whose objects it owns) goes with it.
pub async fn delete(
    conn: &mut AsyncPgConnection,
    company: CompanyId,
    id: DesignId,
) -> Result<Option<Vec<String>>, StoreError> {
    Ok(conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            // A cold design's own rows go with it (ON DELETE CASCADE): read
            // them first. A warm design's keys are its item's.
            let mut keys: Vec<String> = design_images::table
                .inner_join(designs::table)
                .filter(designs::id.eq(id.0))
                .filter(designs::company_id.eq(company.0))
                .select(design_images::object_key)
                .load(conn)
                .await?;
            let Some(item) = diesel::delete(
                designs::table
                    .find(id.0)
                    .filter(designs::company_id.eq(company.0)),
            )
            .returning(designs::pool_item_id)
            .get_result::<Option<Uuid>>(conn)
            .await
            .optional()?
            else {
                return Ok(None);
            };
            if let Some(item) = item {
                let owner = diesel::delete(pool_items::table.find(item))
                    .returning((pool_items::template_id, pool_items::image_count))
                    .get_result::<(Uuid, i32)>(conn)
                    .await
                    .optional()?;
                if let Some((template, count)) = owner {
                    keys.extend(object_keys::pool_images(
                        TemplateId(template),
                        PoolItemId(item),
                        count,
                    ));
                }
            }
            companies::release_design_slot(conn, company).await?;
            keys.sort();
            keys.dedup();
            Ok(Some(keys))
        })
        .await?)
}

/// Every object key referenced by any design (for invariant checks).
pub async fn all_object_keys(conn: &mut AsyncPgConnection) -> Result<Vec<String>, StoreError> {
    let mut keys: Vec<String> = design_images::table
        .select(design_images::object_key)
        .load(conn)
        .await?;
    let warm: Vec<(Uuid, Uuid, i32)> = designs::table
        .inner_join(pool_items::table.on(designs::pool_item_id.eq(pool_items::id.nullable())))
        .select((
            pool_items::template_id,
            pool_items::id,
            pool_items::image_count,
        ))
        .load(conn)
        .await?;
    for (template, item, count) in warm {
        keys.extend(object_keys::pool_images(
            TemplateId(template),
            PoolItemId(item),
            count,
        ));
    }
    Ok(keys)
}

/// Rows strictly after the cursor in (`created_at`, `id`) descending order
/// (no cursor admits every row).
fn after_designs(
    at: &super::page::PageAt,
) -> Box<dyn BoxableExpression<designs::table, diesel::pg::Pg, SqlType = diesel::sql_types::Bool>> {
    match at.after {
        // A row-value comparison: Postgres seeks the (created_at, id) index
        // to the cursor instead of filtering every newer row.
        Some(shared_domain::cursor::Cursor { created_at, id }) => Box::new(
            diesel::dsl::sql::<diesel::sql_types::Bool>("(designs.created_at, designs.id) < (")
                .bind::<diesel::sql_types::Timestamptz, _>(created_at)
                .sql(", ")
                .bind::<diesel::sql_types::Uuid, _>(id)
                .sql(")"),
        ),
        None => Box::new(diesel::dsl::sql::<diesel::sql_types::Bool>("TRUE")),
    }
}
