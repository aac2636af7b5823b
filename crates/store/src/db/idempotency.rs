//! `idempotency_keys`: the first answer of each `Idempotency-Key`.
//!
//! A request [`begin`]s with its key and the hash of its body. Exactly one
//! request at a time owns a key (its [`Claim`]); it makes the resource and,
//! inside the very transaction that makes it, [`complete`]s the key with its
//! answer -- so "resource made" and "answer stored" commit together, and a
//! retry after a crash or a lost reply is answered from here. A request that
//! fails without making anything [`release`]s the key (a retry runs afresh).
//! An owner that dies before committing loses the key once `locked_until`
//! passes; its late commit, if any, is refused (the completion checks the
//! owner), so one key never makes two resources.

use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{Bytea, Integer, Jsonb, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use shared_domain::ids::CompanyId;
use uuid::Uuid;

use super::schema::idempotency_keys;
use super::StoreError;

/// A request's key: whose, for which route, and what was asked.
#[derive(Debug, Clone)]
pub struct KeyedRequest {
    pub company: CompanyId,
    /// e.g. `POST /designs`: one key may be used once per route.
    pub route: &'static str,
    pub key: String,
    /// SHA-256 of what the request asks (same key, other hash: refused).
    pub request_hash: Vec<u8>,
}

/// Ownership of a key by one request (see the module docs).
#[derive(Debug, Clone)]
pub struct Claim {
    pub request: KeyedRequest,
    pub owner: Uuid,
}

/// A stored answer.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAnswer {
    pub status: u16,
    pub body: serde_json::Value,
}

/// The request's key was taken over by a retry after its lock ran out:
/// nothing was written; the retry's answer is the key's.
#[derive(Debug)]
pub struct KeyLost;

#[derive(Debug)]
pub enum Begin {
    /// This request owns the key: make the resource, then complete or release.
    Proceed(Claim),
    /// The key was answered before: replay this.
    Replay(StoredAnswer),
    /// The key was used with a different request.
    Reused,
    /// Another request owns the key and is still working.
    InProgress,
}

#[derive(diesel::QueryableByName)]
struct Taken {
    #[diesel(sql_type = Nullable<SqlUuid>)]
    owner: Option<Uuid>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = idempotency_keys)]
#[diesel(check_for_backend(diesel::pg::Pg))]
struct Existing {
    request_hash: Vec<u8>,
    response_status: Option<i32>,
    response_body: Option<serde_json::Value>,
}

fn interval(d: Duration) -> String {
    format!("{} milliseconds", d.as_millis())
}

/// Takes the key for this request if it is new, expired (older than
/// `retention`), or abandoned by an owner whose `lock` ran out; otherwise
/// says what the key holds.
pub async fn begin(
    conn: &mut AsyncPgConnection,
    request: &KeyedRequest,
    lock: Duration,
    retention: Duration,
) -> Result<Begin, StoreError> {
    let owner = Uuid::new_v4();
    let taken: Vec<Taken> = diesel::sql_query(
        "INSERT INTO idempotency_keys AS k
             (company_id, route, key, request_hash, owner, locked_until, created_at)
         VALUES ($1, $2, $3, $4, $5, now() + $6::interval, now())
         ON CONFLICT (company_id, route, key) DO UPDATE
            SET request_hash = EXCLUDED.request_hash, owner = EXCLUDED.owner,
                locked_until = EXCLUDED.locked_until, created_at = EXCLUDED.created_at,
                response_status = NULL, response_body = NULL
          WHERE k.created_at < now() - $7::interval
             OR (k.response_status IS NULL AND k.locked_until < now()
                 AND k.request_hash = EXCLUDED.request_hash)
         RETURNING k.owner",
    )
    .bind::<SqlUuid, _>(request.company.0)
    .bind::<Text, _>(request.route)
    .bind::<Text, _>(&request.key)
    .bind::<Bytea, _>(&request.request_hash)
    .bind::<SqlUuid, _>(owner)
    .bind::<Text, _>(interval(lock))
    .bind::<Text, _>(interval(retention))
    .load(conn)
    .await?;
    if taken.iter().find_map(|t| t.owner) == Some(owner) {
        return Ok(Begin::Proceed(Claim {
            request: request.clone(),
            owner,
        }));
    }
    let existing: Option<Existing> = idempotency_keys::table
        .find((request.company.0, request.route, &request.key))
        .select(Existing::as_select())
        .get_result(conn)
        .await
        .optional()?;
    let Some(existing) = existing else {
        // Purged between the two statements: a later attempt takes it.
        return Ok(Begin::InProgress);
    };
    if existing.request_hash != request.request_hash {
        return Ok(Begin::Reused);
    }
    match (existing.response_status, existing.response_body) {
        (Some(status), Some(body)) => Ok(Begin::Replay(StoredAnswer {
            status: u16::try_from(status).unwrap_or(200),
            body,
        })),
        _ => Ok(Begin::InProgress),
    }
}

/// Stores the answer of `claim`; call it inside the transaction that makes
/// the resource. `false` if the claim was lost (its lock ran out and another
/// request took the key): the caller must roll back.
pub async fn complete(
    conn: &mut AsyncPgConnection,
    claim: &Claim,
    answer: &StoredAnswer,
) -> Result<bool, diesel::result::Error> {
    let updated = diesel::sql_query(
        "UPDATE idempotency_keys
            SET response_status = $5, response_body = $6, owner = NULL, locked_until = NULL
          WHERE company_id = $1 AND route = $2 AND key = $3 AND owner = $4",
    )
    .bind::<SqlUuid, _>(claim.request.company.0)
    .bind::<Text, _>(claim.request.route)
    .bind::<Text, _>(&claim.request.key)
    .bind::<SqlUuid, _>(claim.owner)
    .bind::<Integer, _>(i32::from(answer.status))
    .bind::<Jsonb, _>(&answer.body)
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

/// Gives the key up after a failure that made nothing: a retry runs afresh.
pub async fn release(conn: &mut AsyncPgConnection, claim: &Claim) -> Result<(), StoreError> {
    diesel::sql_query(
        "DELETE FROM idempotency_keys
          WHERE company_id = $1 AND route = $2 AND key = $3 AND owner = $4
            AND response_status IS NULL",
    )
    .bind::<SqlUuid, _>(claim.request.company.0)
    .bind::<Text, _>(claim.request.route)
    .bind::<Text, _>(&claim.request.key)
    .bind::<SqlUuid, _>(claim.owner)
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes up to `batch` keys older than `retention`; returns how many.
/// Replicas may run it at once (`SKIP LOCKED`).
pub async fn purge_expired(
    conn: &mut AsyncPgConnection,
    retention: Duration,
    batch: i64,
) -> Result<usize, StoreError> {
    Ok(diesel::sql_query(
        "DELETE FROM idempotency_keys WHERE ctid IN (
             SELECT ctid FROM idempotency_keys
              WHERE created_at < now() - $1::interval
              LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind::<Text, _>(interval(retention))
    .bind::<diesel::sql_types::BigInt, _>(batch)
    .execute(conn)
    .await?)
}
