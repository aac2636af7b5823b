//! The `Idempotency-Key` header of `POST /designs` and `POST /templates`.
//!
//! A handler hashes what the request asks, then [`start`]s: it either owns
//! the key (a [`Claim`] it passes into the transaction that makes the
//! resource, where the answer is stored -- `prewarm_store::db::idempotency`),
//! or gets the first answer to replay, or a 422 (same key, other request),
//! or, after waiting `idempotency.wait_ms` for a request still working on
//! the key, a 409 `request_in_progress`. A handler that fails after
//! starting [`release`]s the key, so the client's retry runs afresh.

use shared_domain::error::Chain;
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse};
use prewarm_store::db::idempotency::{self, Begin, Claim, KeyedRequest, StoredAnswer};
use prewarm_store::db::Db;
use sha2::{Digest, Sha256};
use shared_domain::error::ErrorCode;
use shared_domain::headers;
use shared_domain::ids::CompanyId;

use crate::error::ApiError;
use crate::metrics::ApiMetrics;
use crate::settings::IdempotencySettings;

pub const HEADER: &str = "idempotency-key";
/// On a replayed answer.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// The longest key accepted.
pub const MAX_KEY_LEN: usize = headers::MAX_IDEMPOTENCY_KEY_LEN;

/// The request's `Idempotency-Key`, if any: 1 to 255 visible ASCII characters.
pub fn key_of(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get(HEADER) else {
        return Ok(None);
    };
    match value.to_str().ok().and_then(headers::idempotency_key) {
        Some(key) => Ok(Some(key.to_string())),
        None => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("`Idempotency-Key` must be 1 to {MAX_KEY_LEN} visible ASCII characters"),
        )),
    }
}

/// Hashes a request incrementally (route first, then each part with its length).
pub struct RequestHasher(Sha256);

impl RequestHasher {
    pub fn new(route: &str) -> Self {
        let mut h = Sha256::new();
        h.update(route.as_bytes());
        Self(h)
    }

    /// Adds one part; parts are length-framed, so ("ab","c") != ("a","bc").
    pub fn part(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
    }

    /// Adds bytes to the current streamed part (frame it with [`Self::part`] of its length).
    pub fn stream(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> Vec<u8> {
        self.0.finalize().to_vec()
    }
}

/// What a keyed request does next.
pub enum Start {
    /// Make the resource (with the claim, if a key was given).
    Proceed(Option<Claim>),
    /// Answer with the key's first answer.
    Replay(StoredAnswer),
}

/// Starts a request that may carry a key (see the module docs).
pub async fn start(
    db: &Db,
    settings: &IdempotencySettings,
    company: CompanyId,
    route: &'static str,
    key: Option<String>,
    request_hash: Vec<u8>,
) -> Result<Start, ApiError> {
    let Some(key) = key else {
        return Ok(Start::Proceed(None));
    };
    let request = KeyedRequest {
        company,
        route,
        key,
        request_hash,
    };
    let lock = Duration::from_secs(settings.lock_secs);
    let retention = Duration::from_secs(settings.retention_secs);
    let deadline = Instant::now() + Duration::from_millis(settings.wait_ms);
    let mut pause = Duration::from_millis(10);
    loop {
        let begun = {
            let mut conn = db.conn().await?;
            idempotency::begin(&mut conn, &request, lock, retention).await?
        };
        match begun {
            Begin::Proceed(claim) => return Ok(Start::Proceed(Some(claim))),
            Begin::Replay(answer) => return Ok(Start::Replay(answer)),
            Begin::Reused => {
                return Err(ApiError::new(
                    ErrorCode::IdempotencyKeyReused,
                    "this Idempotency-Key was used with a different request",
                ))
            }
            Begin::InProgress if Instant::now() + pause > deadline => {
                return Err(in_progress());
            }
            Begin::InProgress => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(200));
            }
        }
    }
}

/// Another request holds the key.
pub fn in_progress() -> ApiError {
    ApiError::new(
        ErrorCode::RequestInProgress,
        "another request with this Idempotency-Key is in progress; retry",
    )
    .retry_after(1)
}

/// Frees the key of a request that failed without making anything.
pub async fn release(db: &Db, claim: Option<&Claim>) {
    let Some(claim) = claim else {
        return;
    };
    let released = match db.conn().await {
        Ok(mut conn) => idempotency::release(&mut conn, claim).await,
        Err(e) => Err(e),
    };
    if let Err(e) = released {
        // The key stays locked until `idempotency.lock_secs`, then frees up.
        tracing::warn!(error = %Chain(&e), "could not release an idempotency key");
    }
}

/// A replayed answer: the stored status and body, marked as replayed.
pub fn replay(
    metrics: &ApiMetrics,
    route: &str,
    answer: &StoredAnswer,
    body: &impl serde::Serialize,
) -> HttpResponse {
    metrics.idempotent_replay(route);
    let status = actix_web::http::StatusCode::from_u16(answer.status)
        .unwrap_or(actix_web::http::StatusCode::OK);
    HttpResponse::build(status)
        .insert_header((REPLAYED_HEADER, "true"))
        .json(body)
}

/// Pages of 1,000 keys one purge step deletes at most.
pub const PURGE_PAGES_A_STEP: usize = 10;

/// Deletes keys past their retention, a page at a time, every minute (each
/// replica; they skip each other's rows), until `background` stops. A step
/// deletes at most [`PURGE_PAGES_A_STEP`] pages, so a backlog is worked off
/// over several minutes and a step is short; one cut off by a shutdown is
/// idempotent and taken up by the next replica's pass.
pub fn spawn_purge(background: &crate::background::Background, db: Db, retention: Duration) {
    background.every(Duration::from_secs(60), move || {
        let db = db.clone();
        async move {
            for _ in 0..PURGE_PAGES_A_STEP {
                let purged = match db.conn().await {
                    Ok(mut conn) => idempotency::purge_expired(&mut conn, retention, 1000).await,
                    Err(e) => Err(e),
                };
                match purged {
                    Ok(1000) => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %Chain(&e), "could not purge expired idempotency keys");
                        break;
                    }
                }
            }
        }
    });
}
