//! Rate limits: token buckets per API key and per client address, per route
//! class, shared by every replica through Redis
//! ([`prewarm_store::rate_buckets`]). While Redis is down each replica
//! limits on its own, with in-process buckets of the same sizes; after a
//! Redis failure the replica stays on them for [`REDIS_BACKOFF`] before it
//! asks Redis again, so a stalled Redis does not add its timeout to every
//! request.
//!
//! Classes: `create_design` (`POST /designs`), `upload` (`POST /templates`,
//! `PUT /templates/{id}/images`), `write` (every other `POST`, `PUT`,
//! `PATCH`, `DELETE`: edits bump versions), `read` (the rest, `/admin/*`
//! included). A request is classed by the path the router decodes and
//! matches (`/%64esigns` is `/designs`), never by the bytes the client sent,
//! so no spelling of a route moves it to a cheaper class.
//! An address gets `rate_limit.address_factor` times a key's budget. Failed
//! authentications spend an address's `failed_auth` bucket; an address with
//! that bucket empty gets 429 on every route until it refills.
//!
//! A request's three buckets are asked in one Redis script, one round trip
//! ([`RateBuckets::check`]): the failed-authentication bucket (read, or
//! spent by an admin-token guess), the key's (spent), and the address's,
//! spent only when the other two allow -- a key refused by its own budget
//! spends nothing of its address's. With rate limits on, this is the one
//! round trip a warm design makes before its claim (measured in
//! docs/benchmarks.md, "The hot path with rate limits on").
//!
//! Every limited response carries `RateLimit-Limit`, `RateLimit-Remaining`
//! and `RateLimit-Reset` (seconds until the bucket is full again); a 429
//! also `Retry-After` (seconds until one request is allowed).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};
use prewarm_store::rate_buckets::{Bucket, Checked, RateBuckets, Taken};
use shared_domain::error::ErrorCode;

use crate::auth::Authenticator;
use crate::error::ApiError;
use crate::metrics::ApiMetrics;
use crate::settings::RateLimitSettings;

/// The route classes, each with its own budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    CreateDesign,
    Upload,
    Write,
    Read,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::CreateDesign => "create_design",
            Class::Upload => "upload",
            Class::Write => "write",
            Class::Read => "read",
        }
    }

    /// The class of a request, from its method and its decoded path (as
    /// the router matches it); `None` for the unauthenticated probes and
    /// documents. `/admin/*` is limited too (as reads), so its failed
    /// authentications spend the address's bucket.
    pub fn of(method: &actix_web::http::Method, path: &str) -> Option<Class> {
        use actix_web::http::Method;
        let path = path.trim_end_matches('/');
        if matches!(path, "/healthz" | "/readyz" | "/metrics" | "/openapi.json") {
            return None;
        }
        let admin = path == "/admin" || path.starts_with("/admin/");
        Some(match *method {
            _ if admin => Class::Read,
            Method::POST if path == "/designs" => Class::CreateDesign,
            Method::POST if path == "/templates" => Class::Upload,
            Method::PUT if path.ends_with("/images") => Class::Upload,
            Method::GET | Method::HEAD | Method::OPTIONS => Class::Read,
            _ => Class::Write,
        })
    }
}

/// A bucket's size: tokens per second, and capacity.
#[derive(Debug, Clone, Copy)]
struct Size {
    rate: f64,
    burst: f64,
}

/// One bucket's answer, as headers.
#[derive(Debug, Clone, Copy)]
pub struct Verdict {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until the bucket is full.
    pub reset_secs: u64,
    /// Seconds until one token is there.
    pub retry_after_secs: u64,
}

impl Verdict {
    fn of(taken: Taken, size: Size) -> Self {
        let tokens = taken.tokens.max(0.0);
        Self {
            allowed: taken.allowed,
            limit: size.burst.floor() as u64,
            remaining: tokens.floor() as u64,
            reset_secs: ((size.burst - tokens) / size.rate).ceil().max(0.0) as u64,
            retry_after_secs: ((1.0 - tokens) / size.rate).ceil().max(1.0) as u64,
        }
    }

    fn headers(&self) -> [(&'static str, String); 3] {
        [
            ("ratelimit-limit", self.limit.to_string()),
            ("ratelimit-remaining", self.remaining.to_string()),
            ("ratelimit-reset", self.reset_secs.to_string()),
        ]
    }

    fn refusal(&self, what: &str) -> ApiError {
        let mut e = ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "too many requests {what}; retry after {} s",
                self.retry_after_secs
            ),
        )
        .retry_after(self.retry_after_secs);
        for (name, value) in self.headers() {
            e = e.with_header(name, value);
        }
        e
    }
}

/// In-process buckets: the fallback while Redis is down.
struct LocalBuckets {
    table: Mutex<LocalTable>,
    /// Most buckets kept ([`LOCAL_MAX`]; smaller in tests).
    max: usize,
}

#[derive(Default)]
struct LocalTable {
    buckets: HashMap<String, LocalBucket>,
    /// When full buckets were last dropped to make room.
    swept: Option<Instant>,
}

struct LocalBucket {
    tokens: f64,
    at: Instant,
    size: Size,
}

impl LocalBucket {
    /// Refilled to its burst by `now`: no different from a new bucket.
    fn full(&self, now: Instant) -> bool {
        self.tokens + now.duration_since(self.at).as_secs_f64() * self.size.rate >= self.size.burst
    }
}

/// Most in-process buckets (bounded memory). A full table makes room by
/// dropping the buckets that have refilled (they hold no state a new
/// bucket would not), at most once a second; a table full of buckets still
/// spending refuses new names until some refill. Clearing it instead would
/// let anyone who can make 100,000 names (junk keys, many addresses) hand
/// every bucket a fresh burst.
const LOCAL_MAX: usize = 100_000;

impl Default for LocalBuckets {
    fn default() -> Self {
        Self::with_max(LOCAL_MAX)
    }
}

impl LocalBuckets {
    fn with_max(max: usize) -> Self {
        Self {
            table: Mutex::default(),
            max,
        }
    }

    fn take(&self, name: &str, size: Size, cost: f64) -> Taken {
        let Ok(mut table) = self.table.lock() else {
            return Taken {
                allowed: true,
                tokens: size.burst,
            };
        };
        let now = Instant::now();
        if table.buckets.len() >= self.max && !table.buckets.contains_key(name) {
            if table
                .swept
                .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
            {
                table.buckets.retain(|_, b| !b.full(now));
                table.swept = Some(now);
            }
            if table.buckets.len() >= self.max {
                return Taken {
                    allowed: false,
                    tokens: 0.0,
                };
            }
        }
        let bucket = table
            .buckets
            .entry(name.to_string())
            .or_insert(LocalBucket {
                tokens: size.burst,
                at: now,
                size,
            });
        bucket.size = size;
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * size.rate)
            .min(size.burst);
        bucket.at = now;
        let allowed = cost > 0.0 && bucket.tokens >= cost;
        if allowed {
            bucket.tokens -= cost;
        } else if cost < 0.0 {
            bucket.tokens = (bucket.tokens - cost).min(size.burst);
        }
        Taken {
            allowed,
            tokens: bucket.tokens,
        }
    }
}

/// How long a replica limits in-process after Redis failed it.
pub const REDIS_BACKOFF: Duration = Duration::from_secs(2);
/// How long a bucket may take in Redis before the replica decides alone
/// (far below `redis.command_timeout_ms`: every request waits for it).
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(50);

pub struct RateLimiter {
    settings: RateLimitSettings,
    shared: RateBuckets,
    local: LocalBuckets,
    /// Which keys this replica knows valid (spared by the failed-auth lockout).
    auth: Arc<Authenticator>,
    metrics: Arc<ApiMetrics>,
    /// Until when Redis is not asked (set by a failure).
    redis_down_until: Mutex<Option<Instant>>,
}

impl RateLimiter {
    pub fn new(
        settings: RateLimitSettings,
        shared: RateBuckets,
        auth: Arc<Authenticator>,
        metrics: Arc<ApiMetrics>,
    ) -> Self {
        Self {
            settings,
            shared,
            auth,
            metrics,
            local: LocalBuckets::default(),
            redis_down_until: Mutex::new(None),
        }
    }

    fn redis_backing_off(&self) -> bool {
        self.redis_down_until
            .lock()
            .ok()
            .and_then(|until| *until)
            .is_some_and(|until| Instant::now() < until)
    }

    fn size(&self, class: Class) -> Size {
        let s = &self.settings;
        let (rate, burst) = match class {
            Class::CreateDesign => (s.create_design_per_sec, s.create_design_burst),
            Class::Upload => (s.upload_per_sec, s.upload_burst),
            Class::Write => (s.write_per_sec, s.write_burst),
            Class::Read => (s.read_per_sec, s.read_burst),
        };
        Size { rate, burst }
    }

    fn failed_auth_size(&self) -> Size {
        Size {
            rate: self.settings.failed_auth_per_min / 60.0,
            burst: self.settings.failed_auth_burst,
        }
    }

    async fn take(&self, name: String, size: Size, cost: f64) -> Verdict {
        let shared = if self.redis_backing_off() {
            None
        } else {
            let asked = tokio::time::timeout(
                REDIS_TIMEOUT,
                self.shared.take(&name, size.rate, size.burst, cost),
            )
            .await
            .map_err(|_| format!("no answer within {REDIS_TIMEOUT:?}"))
            .and_then(|r| r.map_err(|e| e.to_string()));
            match asked {
                Ok(taken) => Some(taken),
                Err(e) => {
                    self.redis_failed(&e);
                    None
                }
            }
        };
        let taken = shared.unwrap_or_else(|| self.local.take(&name, size, cost));
        let mut verdict = Verdict::of(taken, size);
        // A peek (cost 0) "allows" if a token is there.
        if cost == 0.0 {
            verdict.allowed = taken.tokens >= 1.0;
        }
        verdict
    }

    /// A request's three buckets in one Redis round trip
    /// ([`RateBuckets::check`]), or in-process by the same rule while
    /// Redis is down or slow.
    async fn check(&self, ask: &Ask<'_>) -> Checked {
        let bucket = |name, size: Size| Bucket {
            name,
            rate: size.rate,
            burst: size.burst,
        };
        let failed_auth = bucket(ask.failed_auth, self.failed_auth_size());
        let key = ask.key.map(|name| bucket(name, ask.size));
        let address = bucket(ask.address, ask.address_size);
        if !self.redis_backing_off() {
            let asked = tokio::time::timeout(
                REDIS_TIMEOUT,
                self.shared
                    .check(failed_auth, ask.auth_cost, key, address, ask.known_valid),
            )
            .await
            .map_err(|_| format!("no answer within {REDIS_TIMEOUT:?}"))
            .and_then(|r| r.map_err(|e| e.to_string()));
            match asked {
                Ok(checked) => return checked,
                Err(e) => self.redis_failed(&e),
            }
        }
        let local = |b: Bucket<'_>, cost| {
            let size = Size {
                rate: b.rate,
                burst: b.burst,
            };
            self.local.take(b.name, size, cost)
        };
        let failed_auth = local(failed_auth, ask.auth_cost);
        let auth_ok = failed_auth.allowed || (ask.auth_cost == 0.0 && failed_auth.tokens >= 1.0);
        // A request the failed-auth bucket refuses makes no key bucket: junk
        // keys cannot fill the table.
        let auth_refused = !auth_ok && !ask.known_valid;
        let key = key.filter(|_| !auth_refused).map(|k| local(k, 1.0));
        let refused = auth_refused || key.is_some_and(|k| !k.allowed);
        Checked {
            failed_auth,
            key,
            address: (!refused).then(|| local(address, 1.0)),
        }
    }

    fn redis_failed(&self, e: &str) {
        tracing::debug!(error = %e, "rate buckets unavailable; limiting in-process");
        self.metrics.degraded("redis");
        if let Ok(mut until) = self.redis_down_until.lock() {
            *until = Some(Instant::now() + REDIS_BACKOFF);
        }
    }
}

/// What one request's check asks of [`RateLimiter::check`].
struct Ask<'a> {
    failed_auth: &'a str,
    auth_cost: f64,
    known_valid: bool,
    key: Option<&'a str>,
    size: Size,
    address: &'a str,
    address_size: Size,
}

/// The client's address: the peer, or -- behind `rate_limit.forwarded_hops`
/// proxies that each append the address they saw to `X-Forwarded-For` --
/// the entry the outermost trusted proxy appended (counted from the right:
/// entries further left are the client's own say, and may be forged).
fn client_address(req: &ServiceRequest, forwarded_hops: usize) -> String {
    let peer = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "unknown".into());
    let values = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok());
    shared_domain::headers::forwarded_client(&peer, values, forwarded_hops)
}

/// Middleware: applies the limits (see the module docs).
pub async fn rate_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // Registered only when `rate_limit.enabled`.
    let limiter = req.app_data::<web::Data<RateLimiter>>().cloned();
    // The decoded path the router matches (`match_info` holds the request's
    // URL with percent-escapes of unreserved characters decoded, exactly
    // what routing compares): `/%64esigns` is classed as `/designs`.
    let class = Class::of(req.method(), req.match_info().as_str());
    let (Some(limiter), Some(class)) = (limiter, class) else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let decision = decide(&limiter, &req, class).await;
    if let Some(e) = decision.refusal {
        limiter.metrics.rate_limited(class.as_str());
        let response = e.error_response();
        return Ok(req.into_response(response).map_into_right_body());
    }
    let mut res = next.call(req).await?;
    // Only a key that was presented and refused counts (not a missing
    // header), and an admin guess has paid already.
    let refused = res.status() == actix_web::http::StatusCode::UNAUTHORIZED;
    if refused && decision.charge_on_401 {
        limiter
            .take(decision.failed_auth, limiter.failed_auth_size(), 1.0)
            .await;
    }
    if let Some(shown) = decision.shown {
        for (name, value) in shown.headers() {
            if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&value) {
                res.headers_mut().insert(
                    actix_web::http::header::HeaderName::from_static(name),
                    value,
                );
            }
        }
    }
    Ok(res.map_into_left_body())
}

/// What the limits decided for one request, before its handler runs.
struct Decision {
    refusal: Option<ApiError>,
    /// The budget the answer's headers show (the tighter of the key's and
    /// the address's).
    shown: Option<Verdict>,
    /// The address's failed-authentication bucket.
    failed_auth: String,
    /// Whether a 401 from the handler spends a token of it: a key was
    /// presented, and it was not an admin guess (which paid up front).
    charge_on_401: bool,
}

/// Checks a request's buckets (one round trip) and decides: refused by
/// the address's failed authentications (unless the key is known valid),
/// by the key's budget, or by the address's -- in that order.
async fn decide(limiter: &RateLimiter, req: &ServiceRequest, class: Class) -> Decision {
    let address = client_address(req, limiter.settings.forwarded_hops);
    let token_hash = bearer_hash(req);
    let size = limiter.size(class);
    let address_size = Size {
        rate: size.rate * limiter.settings.address_factor,
        burst: size.burst * limiter.settings.address_factor,
    };
    let failed_auth = format!("auth:{address}");
    // An admin token is never cached as valid, so a wrong one on an admin
    // route is known wrong here, before any handler runs, and spends its
    // failed-authentication token up front: concurrent guesses cannot all
    // pass a bucket that only a finished 401 would have emptied, and a
    // right one spends nothing, so nothing has to be given back (a refund
    // after the handler would be lost when the client disconnects).
    let routed = req.match_info().as_str().trim_end_matches('/');
    let admin_route = routed == "/admin" || routed.starts_with("/admin/");
    let admin_guess = admin_route
        && token_hash
            .as_deref()
            .is_some_and(|hash| !limiter.auth.is_admin_digest(hash));
    let auth_cost = if admin_guess { 1.0 } else { 0.0 };
    // An address out of failed authentications is refused, but for keys
    // already known valid here: a guesser's next guess is not checked, an
    // active client behind the same address keeps working.
    let known_valid = token_hash
        .as_deref()
        .is_some_and(|hash| limiter.auth.cache.is_known_valid(hash));
    // The key's bucket first: a key refused by its own budget spends
    // nothing of its address's (it cannot crowd out the address's other
    // keys). All three in one round trip.
    let key_name = token_hash
        .as_ref()
        .map(|hash| format!("{}:key:{}", class.as_str(), hex::encode(&hash[..16])));
    let address_name = format!("{}:ip:{address}", class.as_str());
    let checked = limiter
        .check(&Ask {
            failed_auth: &failed_auth,
            auth_cost,
            known_valid,
            key: key_name.as_deref(),
            size,
            address: &address_name,
            address_size,
        })
        .await;
    let mut auth_left = Verdict::of(checked.failed_auth, limiter.failed_auth_size());
    if auth_cost == 0.0 {
        // A peek "allows" if a token is there.
        auth_left.allowed = checked.failed_auth.tokens >= 1.0;
    }
    let by_key = checked.key.map(|k| Verdict::of(k, size));
    let by_address = checked.address.map(|a| Verdict::of(a, address_size));
    let refusal = if !auth_left.allowed && !known_valid {
        Some(auth_left.refusal("with failed authentication from this address"))
    } else if let Some(key) = by_key.filter(|v| !v.allowed) {
        Some(key.refusal("for this API key"))
    } else {
        by_address
            .filter(|v| !v.allowed)
            .map(|v| v.refusal("from this address"))
    };
    // Show the tighter of the two budgets.
    let shown = match (by_key, by_address) {
        (Some(key), Some(address)) if address.remaining < key.remaining => Some(address),
        (Some(key), _) => Some(key),
        (None, address) => address,
    };
    Decision {
        refusal,
        shown,
        failed_auth,
        charge_on_401: token_hash.is_some() && !admin_guess,
    }
}

/// SHA-256 of the bearer token, if any (no secret reaches Redis, and the
/// auth cache is keyed the same way).
fn bearer_hash(req: &ServiceRequest) -> Option<Vec<u8>> {
    let value = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let token = value.strip_prefix("Bearer ")?.trim();
    (!token.is_empty()).then(|| crate::auth::hash_token(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_fall_into_their_classes() {
        use actix_web::http::Method;
        assert_eq!(
            Class::of(&Method::POST, "/designs"),
            Some(Class::CreateDesign)
        );
        assert_eq!(Class::of(&Method::POST, "/templates"), Some(Class::Upload));
        assert_eq!(
            Class::of(&Method::PUT, "/templates/x/images"),
            Some(Class::Upload)
        );
        assert_eq!(Class::of(&Method::GET, "/designs"), Some(Class::Read));
        assert_eq!(Class::of(&Method::DELETE, "/designs/x"), Some(Class::Write));
        assert_eq!(
            Class::of(&Method::PATCH, "/templates/x"),
            Some(Class::Write)
        );
        assert_eq!(Class::of(&Method::GET, "/healthz"), None);
        assert_eq!(
            Class::of(&Method::POST, "/admin/companies"),
            Some(Class::Read)
        );
    }

    #[test]
    fn a_local_bucket_spends_then_refills() {
        let local = LocalBuckets::default();
        let size = Size {
            rate: 1000.0,
            burst: 2.0,
        };
        assert!(local.take("a", size, 1.0).allowed);
        assert!(local.take("a", size, 1.0).allowed);
        assert!(!local.take("a", size, 1.0).allowed);
        assert!(local.take("b", size, 1.0).allowed, "buckets are separate");
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(local.take("a", size, 1.0).allowed, "refilled");
    }

    #[test]
    fn a_full_local_table_keeps_the_buckets_still_spending() {
        let local = LocalBuckets::with_max(100);
        let slow = Size {
            rate: 0.001,
            burst: 2.0,
        };
        assert!(local.take("victim", slow, 1.0).allowed);
        assert!(local.take("victim", slow, 1.0).allowed);
        assert!(!local.take("victim", slow, 1.0).allowed, "spent");
        // Junk names fill the table; the ones past it are refused, not
        // allowed by a table started over.
        let refused = (0..200)
            .filter(|i| !local.take(&format!("junk-{i}"), slow, 1.0).allowed)
            .count();
        assert_eq!(refused, 101, "names past a table full of spending buckets");
        assert!(
            !local.take("victim", slow, 1.0).allowed,
            "the victim's bucket was reset"
        );
    }

    #[test]
    fn a_full_local_table_makes_room_from_refilled_buckets() {
        let local = LocalBuckets::with_max(10);
        let fast = Size {
            rate: 1000.0,
            burst: 2.0,
        };
        for i in 0..10 {
            assert!(local.take(&format!("old-{i}"), fast, 1.0).allowed);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(
            local.take("new", fast, 1.0).allowed,
            "refilled buckets make room"
        );
        assert_eq!(local.table.lock().unwrap().buckets.len(), 1);
    }

    #[test]
    fn the_client_address_is_the_one_the_outermost_trusted_proxy_saw() {
        use actix_web::test::TestRequest;
        let req = || {
            TestRequest::default()
                .peer_addr("10.0.0.9:4000".parse().unwrap())
                // The client wrote the first entry itself; the Ingress appended the second.
                .insert_header(("x-forwarded-for", "1.2.3.4, 203.0.113.7"))
                .insert_header(("forwarded", "for=6.6.6.6"))
                .to_srv_request()
        };
        assert_eq!(client_address(&req(), 0), "10.0.0.9");
        assert_eq!(client_address(&req(), 1), "203.0.113.7");
        assert_eq!(client_address(&req(), 2), "1.2.3.4");
        // More proxies configured than entries: not through them; the peer.
        assert_eq!(client_address(&req(), 3), "10.0.0.9");
    }

    #[test]
    fn headers_follow_the_bucket() {
        let size = Size {
            rate: 2.0,
            burst: 10.0,
        };
        let v = Verdict::of(
            Taken {
                allowed: false,
                tokens: 0.5,
            },
            size,
        );
        assert_eq!(
            (v.limit, v.remaining, v.reset_secs, v.retry_after_secs),
            (10, 0, 5, 1)
        );
    }
}
