//! `templates` and `template_images`: layouts and their ordered images, per version.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use shared_domain::ids::{CompanyId, TemplateId, TemplateVersion};
use shared_domain::pool::PoolKey;
use shared_domain::template::{
    EditEffect, EditableFields, Template, TemplateImage, ValidPatch, ValidTemplate, Visibility,
};
use shared_domain::valid::PageLimit;
use uuid::Uuid;

use super::idempotency::{self, Claim, StoredAnswer};
use super::schema::{template_images, templates};
use super::StoreError;

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(table_name = templates)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct TemplateRow {
    pub id: Uuid,
    pub owner_company_id: Uuid,
    pub visibility: String,
    pub name: String,
    pub category: String,
    pub layout: serde_json::Value,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = template_images)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct TemplateImageRow {
    pub template_id: Uuid,
    pub version: i32,
    pub position: i32,
    pub object_key: String,
    pub content_type: String,
    pub size_bytes: i64,
}

impl TemplateRow {
    pub fn template_id(&self) -> TemplateId {
        TemplateId(self.id)
    }

    pub fn template_version(&self) -> TemplateVersion {
        TemplateVersion(self.version)
    }

    /// The pool of the template's current version.
    pub fn pool(&self) -> PoolKey {
        PoolKey::new(self.template_id(), self.template_version())
    }

    pub fn into_template(self, images: Vec<TemplateImage>) -> Template {
        Template {
            id: TemplateId(self.id),
            owner_company_id: CompanyId(self.owner_company_id),
            // The CHECK constraint admits only the two known values.
            visibility: Visibility::parse(&self.visibility).unwrap_or_default(),
            name: self.name,
            category: self.category,
            layout: self.layout,
            version: TemplateVersion(self.version),
            images,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

impl From<TemplateImageRow> for TemplateImage {
    fn from(row: TemplateImageRow) -> Self {
        TemplateImage {
            position: row.position,
            object_key: row.object_key,
            content_type: row.content_type,
            size_bytes: row.size_bytes,
        }
    }
}

fn image_rows(id: TemplateId, version: i32, images: &[TemplateImage]) -> Vec<TemplateImageRow> {
    images
        .iter()
        .map(|img| TemplateImageRow {
            template_id: id.0,
            version,
            position: img.position,
            object_key: img.object_key.clone(),
            content_type: img.content_type.clone(),
            size_bytes: img.size_bytes,
        })
        .collect()
}

/// What saving a new template ([`insert`]) came to. Every refusal wrote
/// nothing.
#[derive(Debug)]
pub enum InsertOutcome {
    Created(Template),
    /// A retry took the request's idempotency key over.
    KeyLost,
    /// Some of the upload's announcements had expired: the garbage
    /// collector may have deleted those images, so no template may point
    /// at them.
    UploadExpired,
}

/// The images of an upload and the owner of their announcement
/// (`pending_copies`), which the save takes over in its transaction.
#[derive(Debug, Clone, Copy)]
pub struct Uploaded<'a> {
    pub announcement: Uuid,
    pub images: &'a [TemplateImage],
}

/// Takes over an upload's announcements inside the save's transaction
/// (the cold design's rule, `object_refs::settle`): the save commits only
/// if every image is still announced, so no template ever points at an
/// image the collector may have taken. Answers whether every image was
/// still announced.
async fn settle_upload(
    conn: &mut AsyncPgConnection,
    upload: Uploaded<'_>,
) -> Result<bool, diesel::result::Error> {
    let standing = super::object_refs::settle(conn, upload.announcement).await?;
    Ok(standing == upload.images.len())
}

/// Records a new template (version 1) and its uploaded images in one
/// transaction that also takes over the upload's announcements; with an
/// idempotency `key`, its answer (201) is stored in the same transaction.
/// Refused (nothing written) if a retry took the key or an image's
/// announcement expired.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    id: TemplateId,
    owner: CompanyId,
    new: &ValidTemplate,
    upload: Uploaded<'_>,
    key: Option<&Claim>,
) -> Result<InsertOutcome, StoreError> {
    let images = upload.images;
    let now = super::now();
    let row = TemplateRow {
        id: id.0,
        owner_company_id: owner.0,
        visibility: new.visibility.as_str().to_string(),
        name: new.name.as_str().to_string(),
        category: new.category.as_str().to_string(),
        layout: new.layout.as_value().clone(),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    let rows = image_rows(id, 1, images);
    let template = row.clone().into_template(images.to_vec());
    let mut refused = None;
    let stored = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            if !settle_upload(conn, upload).await? {
                refused = Some(InsertOutcome::UploadExpired);
                return Err(diesel::result::Error::RollbackTransaction);
            }
            diesel::insert_into(templates::table)
                .values(&row)
                .execute(conn)
                .await?;
            diesel::insert_into(template_images::table)
                .values(&rows)
                .execute(conn)
                .await?;
            if let Some(claim) = key {
                let answer = StoredAnswer {
                    status: 201,
                    body: serde_json::to_value(&template)
                        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?,
                };
                if !idempotency::complete(conn, claim, &answer).await? {
                    refused = Some(InsertOutcome::KeyLost);
                    return Err(diesel::result::Error::RollbackTransaction);
                }
            }
            Ok(())
        })
        .await;
    match (stored, refused) {
        (Ok(()), _) => Ok(InsertOutcome::Created(template)),
        (Err(diesel::result::Error::RollbackTransaction), Some(refused)) => Ok(refused),
        (Err(e), _) => Err(e.into()),
    }
}

/// What an edit came to.
#[derive(Debug)]
pub enum UpdateOutcome {
    Updated(Template),
    /// No such live template of this owner.
    NotFound,
    /// `If-Match` named another representation: nothing was written.
    PreconditionFailed,
    /// The new images' announcements had expired: nothing was written.
    UploadExpired,
}

/// The template row if `company` may see it (public, or its own); no images.
/// This is the hot path's read: one indexed lookup.
pub async fn find_visible_row(
    conn: &mut AsyncPgConnection,
    id: TemplateId,
    company: CompanyId,
) -> Result<Option<TemplateRow>, StoreError> {
    Ok(templates::table
        .find(id.0)
        .filter(templates::deleted_at.is_null())
        .filter(
            templates::visibility
                .eq(Visibility::Public.as_str())
                .or(templates::owner_company_id.eq(company.0)),
        )
        .select(TemplateRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The current row of a template, whoever owns it (the worker's view).
pub async fn find_row(
    conn: &mut AsyncPgConnection,
    id: TemplateId,
) -> Result<Option<TemplateRow>, StoreError> {
    Ok(templates::table
        .find(id.0)
        .filter(templates::deleted_at.is_null())
        .select(TemplateRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The owners of `ids` (live or deleted templates; ids unknown here are
/// left out), in one query.
pub async fn owners(
    conn: &mut AsyncPgConnection,
    ids: &[TemplateId],
) -> Result<HashMap<TemplateId, CompanyId>, StoreError> {
    let ids: Vec<Uuid> = ids.iter().map(|t| t.0).collect();
    let rows: Vec<(Uuid, Uuid)> = templates::table
        .filter(templates::id.eq_any(&ids))
        .select((templates::id, templates::owner_company_id))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(t, c)| (TemplateId(t), CompanyId(c)))
        .collect())
}

/// The ordered images of one template version.
pub async fn images(
    conn: &mut AsyncPgConnection,
    id: TemplateId,
    version: TemplateVersion,
) -> Result<Vec<TemplateImage>, StoreError> {
    let rows: Vec<TemplateImageRow> = template_images::table
        .filter(template_images::template_id.eq(id.0))
        .filter(template_images::version.eq(version.0))
        .order(template_images::position.asc())
        .select(TemplateImageRow::as_select())
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(TemplateImage::from).collect())
}

/// A visible template with the images of its current version.
pub async fn find_visible(
    conn: &mut AsyncPgConnection,
    id: TemplateId,
    company: CompanyId,
) -> Result<Option<Template>, StoreError> {
    let Some(row) = find_visible_row(conn, id, company).await? else {
        return Ok(None);
    };
    let images = images(conn, id, TemplateVersion(row.version)).await?;
    Ok(Some(row.into_template(images)))
}

/// Templates `company` may see (public ones and its own), newest first.
pub async fn list_visible(
    conn: &mut AsyncPgConnection,
    company: CompanyId,
    limit: i64,
    at: &super::page::PageAt,
) -> Result<Listed, StoreError> {
    // Two index ranges, each read no further than the page needs (the
    // public templates; the company's own private ones), merged: what other
    // companies keep private costs this listing nothing (an index per range).
    let query = listing_sql(at.after.is_some());
    let (created_at, id) = at
        .after
        .map_or((super::now(), Uuid::nil()), |c| (c.created_at, c.id));
    let rows: Vec<ListedRow> = diesel::sql_query(query)
        .bind::<diesel::sql_types::Uuid, _>(company.0)
        .bind::<diesel::sql_types::Timestamptz, _>(created_at)
        .bind::<diesel::sql_types::Uuid, _>(id)
        .bind::<diesel::sql_types::BigInt, _>(limit + 1 + at.skip)
        .bind::<diesel::sql_types::BigInt, _>(limit + 1)
        .bind::<diesel::sql_types::BigInt, _>(at.skip)
        .bind::<diesel::sql_types::BigInt, _>(PageLimit::MAX_LAYOUT_BYTES)
        .load(conn)
        .await?;
    let read = <[ListedRow]>::first(&rows).map_or(0, |r| r.listed);
    let more = read > i64::try_from(rows.len()).unwrap_or(i64::MAX);
    let templates = list_images(conn, rows.into_iter().map(|r| r.template).collect()).await?;
    Ok(Listed { templates, more })
}

/// A page of [`list_visible`]: its templates, and whether more follow
/// (past the page's size or past its layout bytes).
#[derive(Debug)]
pub struct Listed {
    pub templates: Vec<Template>,
    pub more: bool,
}

#[derive(QueryableByName)]
struct ListedRow {
    #[diesel(embed)]
    template: TemplateRow,
    /// Rows read for the page (its size plus one, when there are more).
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    listed: i64,
}

/// The listing's statement ([`list_visible`]). Binds: $1 the company, $2
/// and $3 the cursor's time and id (unused without one), $4 rows per range
/// (the page, one more, and what it skips), $5 the page size plus one, $6
/// the rows skipped, $7 the page's bytes. The page ends at its size or where
/// its templates reach $7 bytes (its first row always kept), judged from
/// the stored `layout_bytes` and the image count before any layout is read.
pub fn listing_sql(after_cursor: bool) -> String {
    let after = if after_cursor {
        "AND (created_at, id) < ($2, $3)"
    } else {
        "AND $2::timestamptz IS NOT NULL AND $3::uuid IS NOT NULL"
    };
    let columns =
        "id, owner_company_id, visibility, name, category, layout, version, created_at, updated_at";
    // A row's size: its layout's stored length and its current images'
    // entries (an index probe per row read, like the images' own read).
    let read = format!(
        "{columns}, coalesce(layout_bytes, 0) + {} * (SELECT count(*) FROM template_images i
           WHERE i.template_id = templates.id AND i.version = templates.version) AS page_bytes",
        PageLimit::IMAGE_ENTRY_BYTES
    );
    format!(
        "SELECT {columns}, listed FROM (
           SELECT {columns}, count(*) OVER () AS listed, row_number() OVER w AS n,
                  sum(page_bytes) OVER w - page_bytes AS before
             FROM (
               SELECT * FROM (
                 (SELECT {read} FROM templates
                   WHERE deleted_at IS NULL AND visibility = 'public' {after}
                   ORDER BY created_at DESC, id DESC LIMIT $4)
                 UNION ALL
                 (SELECT {read} FROM templates
                   WHERE deleted_at IS NULL AND owner_company_id = $1 AND visibility <> 'public' {after}
                   ORDER BY created_at DESC, id DESC LIMIT $4)
               ) ranges
               ORDER BY created_at DESC, id DESC LIMIT $5 OFFSET $6
             ) page
           WINDOW w AS (ORDER BY created_at DESC, id DESC ROWS UNBOUNDED PRECEDING)
         ) sized
         WHERE n < $5 AND (n = 1 OR before < $7)
         ORDER BY created_at DESC, id DESC"
    )
}

/// The current images of listed templates, attached to them.
async fn list_images(
    conn: &mut AsyncPgConnection,
    rows: Vec<TemplateRow>,
) -> Result<Vec<Template>, StoreError> {
    // One query for every listed template's current images, not one per
    // template, and only the current version's rows (an index probe per
    // (template, version)): a page costs its templates' images, however
    // many versions their owners made.
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let image_rows: Vec<TemplateImageRow> = template_images::table
        .inner_join(
            templates::table.on(templates::id
                .eq(template_images::template_id)
                .and(templates::version.eq(template_images::version))),
        )
        .filter(template_images::template_id.eq_any(&ids))
        .order((template_images::template_id, template_images::position))
        .select(TemplateImageRow::as_select())
        .load(conn)
        .await?;
    let mut by_template: HashMap<Uuid, Vec<TemplateImage>> = HashMap::new();
    for img in image_rows {
        by_template
            .entry(img.template_id)
            .or_default()
            .push(img.into());
    }
    Ok(rows
        .into_iter()
        .map(|r| {
            let images = by_template.remove(&r.id).unwrap_or_default();
            r.into_template(images)
        })
        .collect())
}

/// Edits a template owned by `owner`. A real change of layout, or new
/// images, bumps the version (pools of the old version stop being served at
/// once, because pool keys and claims are per version); a patch that sets
/// the layout it already has does not, and a patch that changes nothing
/// writes nothing (its answer is the template as it is). New images'
/// announcements are taken over in the same transaction.
pub async fn update(
    conn: &mut AsyncPgConnection,
    id: TemplateId,
    owner: CompanyId,
    patch: &ValidPatch,
    new_images: Option<Uploaded<'_>>,
    if_match: Option<&str>,
) -> Result<UpdateOutcome, StoreError> {
    enum Edit {
        Done(TemplateRow),
        Refused(UpdateOutcome),
    }
    let patch = patch.clone();
    let edited = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            let Some(mut row) = templates::table
                .find(id.0)
                .filter(templates::owner_company_id.eq(owner.0))
                .filter(templates::deleted_at.is_null())
                .for_update()
                .select(TemplateRow::as_select())
                .first(conn)
                .await
                .optional()?
            else {
                return Ok(Edit::Refused(UpdateOutcome::NotFound));
            };
            // Checked on the locked row: two editors holding one ETag cannot
            // both write.
            if let Some(expected) = if_match {
                let current =
                    shared_domain::template::etag(id, TemplateVersion(row.version), row.updated_at);
                if !shared_domain::headers::etag_matches(expected, &current) {
                    return Ok(Edit::Refused(UpdateOutcome::PreconditionFailed));
                }
            }
            if let Some(upload) = new_images {
                if !settle_upload(conn, upload).await? {
                    return Ok(Edit::Refused(UpdateOutcome::UploadExpired));
                }
            }
            let before_version = row.version;
            let effect = patch.apply(
                EditableFields {
                    name: &mut row.name,
                    category: &mut row.category,
                    layout: &mut row.layout,
                    visibility: &mut row.visibility,
                },
                new_images.is_some(),
            );
            let bump = match effect {
                EditEffect::Unchanged => return Ok(Edit::Done(row)),
                EditEffect::Described => false,
                EditEffect::NewVersion => true,
            };
            if bump {
                row.version += 1;
            }
            row.updated_at = super::now();
            diesel::update(templates::table.find(id.0))
                .set((
                    templates::name.eq(&row.name),
                    templates::category.eq(&row.category),
                    templates::layout.eq(&row.layout),
                    templates::visibility.eq(&row.visibility),
                    templates::version.eq(row.version),
                    templates::updated_at.eq(row.updated_at),
                ))
                .execute(conn)
                .await?;
            if bump {
                let images: Vec<TemplateImage> = match new_images {
                    Some(upload) => upload.images.to_vec(),
                    None => template_images::table
                        .filter(template_images::template_id.eq(id.0))
                        .filter(template_images::version.eq(before_version))
                        .order(template_images::position.asc())
                        .select(TemplateImageRow::as_select())
                        .load(conn)
                        .await?
                        .into_iter()
                        .map(TemplateImage::from)
                        .collect(),
                };
                diesel::insert_into(template_images::table)
                    .values(image_rows(id, row.version, &images))
                    .execute(conn)
                    .await?;
            }
            Ok(Edit::Done(row))
        })
        .await?;
    match edited {
        Edit::Done(row) => {
            let images = images(conn, id, TemplateVersion(row.version)).await?;
            Ok(UpdateOutcome::Updated(row.into_template(images)))
        }
        Edit::Refused(outcome) => Ok(outcome),
    }
}

/// What [`lock_version`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionLock {
    /// The template is at the version, visible to the company, and locked.
    Locked,
    /// Edited (another version) or deleted since it was read.
    Changed,
    /// At the version, but private to another company now (made private
    /// while the design was being made).
    Hidden,
}

/// Takes a KEY SHARE lock on the template row if it is still at `version`,
/// not deleted and visible to `company` (public, or its own). Called in the
/// transaction that records a cold design, so an edit -- a new version, a
/// delete or a change of visibility, each of which locks the row FOR
/// UPDATE -- cannot commit between this check and the design's commit:
/// the same rule the warm claim applies on its locked row.
pub async fn lock_version(
    conn: &mut AsyncPgConnection,
    id: TemplateId,
    version: TemplateVersion,
    company: CompanyId,
) -> Result<VersionLock, diesel::result::Error> {
    let found: Option<(Uuid, String)> = templates::table
        .find(id.0)
        .filter(templates::version.eq(version.0))
        .filter(templates::deleted_at.is_null())
        .for_key_share()
        .select((templates::owner_company_id, templates::visibility))
        .first(conn)
        .await
        .optional()?;
    Ok(match found {
        None => VersionLock::Changed,
        Some((owner, visibility))
            if owner == company.0 || visibility == Visibility::Public.as_str() =>
        {
            VersionLock::Locked
        }
        Some(_) => VersionLock::Hidden,
    })
}

/// Deletes a template owned by `owner` (soft: designs made from it keep their
/// history). Its version is bumped, so every pool item of it is stale and the
/// reconciler discards it. Returns the object keys of all its image versions,
/// for the caller to delete from S3, or `None` when it is not the owner's.
///
/// The row is locked `FOR UPDATE` first: that conflicts with the `KEY SHARE`
/// lock a design's transaction holds on the template ([`lock_version`] and
/// the warm claim), so the delete waits for designs being recorded, and a
/// design started after it sees the template gone. A plain `UPDATE` of
/// non-key columns would not conflict, and a design could commit after the
/// delete. `deleted_at` is read after the lock is granted, so every design
/// of the template was created before it.
pub async fn delete(
    conn: &mut AsyncPgConnection,
    id: TemplateId,
    owner: CompanyId,
) -> Result<Option<Vec<String>>, StoreError> {
    Ok(conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            let locked: Option<Uuid> = templates::table
                .find(id.0)
                .filter(templates::owner_company_id.eq(owner.0))
                .filter(templates::deleted_at.is_null())
                .for_update()
                .select(templates::id)
                .first(conn)
                .await
                .optional()?;
            if locked.is_none() {
                return Ok(None);
            }
            let now = super::now();
            diesel::update(templates::table.find(id.0))
                .set((
                    templates::deleted_at.eq(now),
                    templates::updated_at.eq(now),
                    templates::version.eq(templates::version + 1),
                ))
                .execute(conn)
                .await?;
            let keys: Vec<String> = template_images::table
                .filter(template_images::template_id.eq(id.0))
                .select(template_images::object_key)
                .load(conn)
                .await?;
            super::pool_policies::template_deleted(conn, id.0, owner.0).await?;
            Ok(Some(keys))
        })
        .await?)
}

/// What "similar templates" needs to filter and show a template.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = templates)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct TemplateMetaRow {
    pub id: Uuid,
    pub owner_company_id: Uuid,
    pub visibility: String,
    pub name: String,
    pub category: String,
    pub version: i32,
}

/// The live (not deleted) templates among `ids`, in no particular order.
pub async fn metadata(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> Result<Vec<TemplateMetaRow>, StoreError> {
    Ok(templates::table
        .filter(templates::id.eq_any(ids))
        .filter(templates::deleted_at.is_null())
        .select(TemplateMetaRow::as_select())
        .load(conn)
        .await?)
}

/// Every live template with what a recommender ranks on (the stand-in
/// recommendation service's catalogue).
pub async fn catalogue(
    conn: &mut AsyncPgConnection,
) -> Result<Vec<(Uuid, String, String, serde_json::Value)>, StoreError> {
    Ok(templates::table
        .filter(templates::deleted_at.is_null())
        .select((
            templates::id,
            templates::category,
            templates::name,
            templates::layout,
        ))
        .load(conn)
        .await?)
}
