//! `api_keys`: bearer tokens, stored as SHA-256 hashes (plus a short,
//! non-secret hint). A key stops working when revoked, or when a rotation's
//! grace period (`expires_at`) ends.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use shared_domain::company::ApiKeyInfo;
use shared_domain::ids::{ApiKeyId, CompanyId};
use uuid::Uuid;

use super::schema::api_keys;
use super::StoreError;

pub async fn insert(
    conn: &mut AsyncPgConnection,
    company: CompanyId,
    key_hash: &[u8],
    hint: &str,
) -> Result<ApiKeyId, StoreError> {
    let id = ApiKeyId::new();
    diesel::insert_into(api_keys::table)
        .values((
            api_keys::id.eq(id.0),
            api_keys::company_id.eq(company.0),
            api_keys::key_hash.eq(key_hash),
            api_keys::hint.eq(hint),
            api_keys::created_at.eq(super::now()),
        ))
        .execute(conn)
        .await?;
    Ok(id)
}

/// A key that authenticates: its company, and when it stops (rotated keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidKey {
    pub company: CompanyId,
    pub expires_at: Option<DateTime<Utc>>,
}

/// The company a (hashed) key belongs to, unless unknown, revoked or expired.
pub async fn company_for_key(
    conn: &mut AsyncPgConnection,
    key_hash: &[u8],
) -> Result<Option<ValidKey>, StoreError> {
    let now = super::now();
    let found = api_keys::table
        .filter(api_keys::key_hash.eq(key_hash))
        .filter(api_keys::revoked_at.is_null())
        .filter(
            api_keys::expires_at
                .is_null()
                .or(api_keys::expires_at.gt(now)),
        )
        .select((api_keys::company_id, api_keys::expires_at))
        .first::<(Uuid, Option<DateTime<Utc>>)>(conn)
        .await
        .optional()?;
    Ok(found.map(|(company, expires_at)| ValidKey {
        company: CompanyId(company),
        expires_at,
    }))
}

/// What a listing shows of a key (never its hash).
#[derive(Queryable, Selectable)]
#[diesel(table_name = api_keys)]
#[diesel(check_for_backend(diesel::pg::Pg))]
struct KeyRow {
    id: Uuid,
    company_id: Uuid,
    hint: String,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
}

impl From<KeyRow> for ApiKeyInfo {
    fn from(row: KeyRow) -> Self {
        ApiKeyInfo {
            id: ApiKeyId(row.id),
            company_id: CompanyId(row.company_id),
            hint: row.hint,
            created_at: row.created_at,
            revoked_at: row.revoked_at,
            expires_at: row.expires_at,
        }
    }
}

/// A company's keys, oldest first (never their secrets).
pub async fn list(
    conn: &mut AsyncPgConnection,
    company: CompanyId,
) -> Result<Vec<ApiKeyInfo>, StoreError> {
    let rows: Vec<KeyRow> = api_keys::table
        .filter(api_keys::company_id.eq(company.0))
        .order((api_keys::created_at.asc(), api_keys::id.asc()))
        .select(KeyRow::as_select())
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(ApiKeyInfo::from).collect())
}

/// Revokes a key at once; returns its hash (for the replicas' caches), or
/// `None` if there is no such key. Revoking twice keeps the first time.
pub async fn revoke(
    conn: &mut AsyncPgConnection,
    id: ApiKeyId,
) -> Result<Option<Vec<u8>>, StoreError> {
    let hash = diesel::update(api_keys::table.find(id.0))
        .set(api_keys::revoked_at.eq(diesel::dsl::sql::<
            diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
        >("COALESCE(revoked_at, now())")))
        .returning(api_keys::key_hash)
        .get_result::<Vec<u8>>(conn)
        .await
        .optional()?;
    Ok(hash)
}

/// A rotation's result.
#[derive(Debug)]
pub struct Rotated {
    pub new_id: ApiKeyId,
    pub company: CompanyId,
    /// The old key's hash (for the replicas' caches).
    pub old_hash: Vec<u8>,
    /// When the old key stops (the earlier end if it was rotating already).
    pub old_expires_at: DateTime<Utc>,
}

/// Rotation: a new key for the same company, and the old one (which must
/// be live) stops at `old_expires_at` -- in one transaction. `None` if the
/// old key is unknown, revoked or expired.
pub async fn rotate(
    conn: &mut AsyncPgConnection,
    old: ApiKeyId,
    new_hash: &[u8],
    new_hint: &str,
    old_expires_at: DateTime<Utc>,
) -> Result<Option<Rotated>, StoreError> {
    let now = super::now();
    let new_id = ApiKeyId::new();
    let rotated = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            let Some((company, old_hash, ends)) =
                diesel::update(
                    api_keys::table
                        .find(old.0)
                        .filter(api_keys::revoked_at.is_null())
                        .filter(
                            api_keys::expires_at
                                .is_null()
                                .or(api_keys::expires_at.gt(now)),
                        ),
                )
                // A key already rotating keeps the earlier end: rotating again
                // never lengthens the life of a key being retired.
                .set(
                    api_keys::expires_at.eq(diesel::dsl::sql::<
                        diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
                    >("LEAST(COALESCE(expires_at, ")
                    .bind::<diesel::sql_types::Timestamptz, _>(old_expires_at)
                    .sql("), ")
                    .bind::<diesel::sql_types::Timestamptz, _>(old_expires_at)
                    .sql(")")),
                )
                .returning((
                    api_keys::company_id,
                    api_keys::key_hash,
                    api_keys::expires_at,
                ))
                .get_result::<(Uuid, Vec<u8>, Option<DateTime<Utc>>)>(conn)
                .await
                .optional()?
            else {
                return Ok(None);
            };
            let old_end = ends.unwrap_or(old_expires_at);
            diesel::insert_into(api_keys::table)
                .values((
                    api_keys::id.eq(new_id.0),
                    api_keys::company_id.eq(company),
                    api_keys::key_hash.eq(new_hash),
                    api_keys::hint.eq(new_hint),
                    api_keys::created_at.eq(now),
                ))
                .execute(conn)
                .await?;
            Ok(Some(Rotated {
                new_id,
                company: CompanyId(company),
                old_hash,
                old_expires_at: old_end,
            }))
        })
        .await?;
    Ok(rotated)
}
