//! Bearer-token authentication. Companies present an API key (stored hashed);
//! the admin presents the configured admin token.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use prewarm_store::db::api_keys::{self, ValidKey};
use prewarm_store::db::Db;
use prewarm_store::pause::PausePoints;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use shared_domain::error::ErrorCode;
use shared_domain::ids::CompanyId;

use crate::error::ApiError;

/// API keys recently seen, so the hot path skips a database round trip:
/// valid keys for `ttl` (or until a rotated key's end, if sooner; a key
/// revoked through the admin API is dropped at once on every replica that
/// hears the revocation, and stops within `ttl` on one that missed it;
/// `server.auth_cache_ttl_secs`, 0 disables the cache), and unknown keys for
/// `ttl` too, so a client spraying made-up keys costs no database query per
/// attempt. Lookups that do reach the database are bounded (`lookups`), so
/// such a client cannot take every pooled connection either.
pub struct AuthCache {
    ttl: Duration,
    /// Company, and until when the entry may be used.
    entries: RwLock<HashMap<Vec<u8>, (CompanyId, Instant)>>,
    unknown: RwLock<HashMap<Vec<u8>, Instant>>,
    lookups: tokio::sync::Semaphore,
    /// Bumped by every revocation heard: a lookup that began before one
    /// does not cache its (possibly stale) answer.
    generation: std::sync::atomic::AtomicU64,
}

/// Beyond this many keys the cache starts over (bounded memory under key spraying).
const AUTH_CACHE_MAX: usize = 100_000;

impl AuthCache {
    /// `max_lookups`: database lookups in flight at once (misses only).
    pub fn new(ttl: Duration, max_lookups: usize) -> Self {
        Self {
            ttl,
            entries: RwLock::new(HashMap::new()),
            unknown: RwLock::new(HashMap::new()),
            lookups: tokio::sync::Semaphore::new(max_lookups.max(1)),
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether `hash` is cached as a valid key (no database query).
    pub fn is_known_valid(&self, hash: &[u8]) -> bool {
        self.get(hash).is_some()
    }

    fn is_known_unknown(&self, hash: &[u8]) -> bool {
        self.unknown
            .read()
            .ok()
            .and_then(|unknown| unknown.get(hash).map(|at| at.elapsed() < self.ttl))
            .unwrap_or(false)
    }

    fn put_unknown(&self, hash: Vec<u8>) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut unknown) = self.unknown.write() {
            if unknown.len() >= AUTH_CACHE_MAX {
                unknown.clear();
            }
            unknown.insert(hash, Instant::now());
        }
    }

    fn get(&self, hash: &[u8]) -> Option<CompanyId> {
        let entries = self.entries.read().ok()?;
        let (company, until) = entries.get(hash)?;
        (Instant::now() < *until).then_some(*company)
    }

    /// Drops one key (revoked).
    pub fn forget(&self, hash: &[u8]) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Ok(mut entries) = self.entries.write() {
            entries.remove(hash);
        }
    }

    /// Drops every key (revocations may have been missed).
    pub fn forget_all(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Ok(mut entries) = self.entries.write() {
            entries.clear();
        }
    }

    /// Caches a key found valid by a lookup that began at `generation`;
    /// skipped if a revocation was heard since (the answer may be stale).
    fn put(&self, hash: Vec<u8>, key: ValidKey, generation: u64) {
        if self.ttl.is_zero() {
            return;
        }
        let mut keep = self.ttl;
        if let Some(expires_at) = key.expires_at {
            let left = (expires_at - chrono::Utc::now())
                .to_std()
                .unwrap_or_default();
            keep = keep.min(left);
        }
        let company = key.company;
        if let Ok(mut entries) = self.entries.write() {
            // Checked under the write lock `forget` also takes: a revocation
            // either bumped the generation before this check, or removes
            // this entry after it.
            if self.generation() != generation {
                return;
            }
            if entries.len() >= AUTH_CACHE_MAX {
                entries.clear();
            }
            entries.insert(hash, (company, Instant::now() + keep));
        }
    }
}

/// The authenticated company of a request.
#[derive(Debug, Clone, Copy)]
pub struct AuthCompany(pub CompanyId);

/// Proof that the request carried the admin token.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// A fresh API key: `pw_` + 32 random bytes in hex.
pub fn new_api_key() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("pw_{}", hex::encode(bytes))
}

/// What a listing shows of a key: its first 8 characters (20 random bits).
pub fn key_hint(key: &str) -> String {
    format!("{}…", &key[..key.len().min(8)])
}

fn bearer(req: &HttpRequest) -> Result<String, ApiError> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::MissingAuth,
                "missing `Authorization: Bearer <key>` header",
            )
        })?;
    let value = header
        .to_str()
        .map_err(|_| ApiError::new(ErrorCode::InvalidAuth, "malformed Authorization header"))?;
    let token = value
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidAuth,
                "expected `Authorization: Bearer <key>`",
            )
        })?;
    Ok(token.to_string())
}

/// What authentication needs, registered as its own app data (so this
/// module depends on nothing above it): the key cache, the database, the
/// admin token's digest, and the test pause points.
pub struct Authenticator {
    pub cache: AuthCache,
    db: Db,
    admin_token_hash: Vec<u8>,
    pause: PausePoints,
}

impl Authenticator {
    pub fn new(cache: AuthCache, db: Db, admin_token: &SecretString, pause: PausePoints) -> Self {
        Self {
            cache,
            db,
            admin_token_hash: hash_token(admin_token.expose_secret()),
            pause,
        }
    }

    /// Whether a bearer token's digest is the admin token's, compared in
    /// constant time (how long it takes says nothing of how much matched).
    pub fn is_admin_digest(&self, hash: &[u8]) -> bool {
        hash.len() == self.admin_token_hash.len()
            && hash
                .iter()
                .zip(&self.admin_token_hash)
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    }
}

fn authenticator(req: &HttpRequest) -> Result<web::Data<Authenticator>, ApiError> {
    req.app_data::<web::Data<Authenticator>>()
        .cloned()
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "authenticator missing"))
}

impl FromRequest for AuthCompany {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer(req);
        let auth = authenticator(req);
        Box::pin(async move {
            let hash = hash_token(&token?);
            let auth = auth?;
            let cache = &auth.cache;
            let refused = || ApiError::new(ErrorCode::InvalidAuth, "unknown or revoked API key");
            if let Some(company) = cache.get(&hash) {
                return Ok(AuthCompany(company));
            }
            if cache.is_known_unknown(&hash) {
                return Err(refused());
            }
            let _lookup = cache
                .lookups
                .acquire()
                .await
                .map_err(|_| ApiError::new(ErrorCode::Internal, "auth lookups closed"))?;
            let generation = cache.generation();
            let mut conn = auth.db.conn().await?;
            match api_keys::company_for_key(&mut conn, &hash).await? {
                Some(key) => {
                    auth.pause
                        .reach(prewarm_store::pause::at::AUTH_LOOKED_UP)
                        .await;
                    cache.put(hash, key, generation);
                    Ok(AuthCompany(key.company))
                }
                None => {
                    cache.put_unknown(hash);
                    Err(refused())
                }
            }
        })
    }
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let result = (|| {
            let token = bearer(req)?;
            let auth = authenticator(req)?;
            // Compare digests, so the comparison time says nothing about the token.
            if auth.is_admin_digest(&hash_token(&token)) {
                Ok(Admin)
            } else {
                Err(ApiError::new(ErrorCode::InvalidAuth, "invalid admin token"))
            }
        })();
        std::future::ready(result)
    }
}
