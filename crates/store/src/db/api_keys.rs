//! `api_keys`: bearer tokens, stored as SHA-256 hashes.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use shared_domain::ids::{ApiKeyId, CompanyId};

use super::schema::api_keys;
use super::StoreError;

pub async fn insert(
    conn: &mut AsyncPgConnection,
    company: CompanyId,
    key_hash: &[u8],
) -> Result<ApiKeyId, StoreError> {
    let id = ApiKeyId::new();
    diesel::insert_into(api_keys::table)
        .values((
            api_keys::id.eq(id.0),
            api_keys::company_id.eq(company.0),
            api_keys::key_hash.eq(key_hash),
            api_keys::created_at.eq(super::now()),
        ))
        .execute(conn)
        .await?;
    Ok(id)
}

/// The company a (hashed) key belongs to, unless unknown or revoked.
pub async fn company_for_key(
    conn: &mut AsyncPgConnection,
    key_hash: &[u8],
) -> Result<Option<CompanyId>, StoreError> {
    let id = api_keys::table
        .filter(api_keys::key_hash.eq(key_hash))
        .filter(api_keys::revoked_at.is_null())
        .select(api_keys::company_id)
        .first::<uuid::Uuid>(conn)
        .await
        .optional()?;
    Ok(id.map(CompanyId))
}
