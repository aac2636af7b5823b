//! Token buckets in Redis, shared by every API replica (rate limits).
//!
//! One hash per bucket (`{prefix}{rl}:{name}`: tokens left, last refill in
//! ms), refilled and spent by atomic scripts that read Redis's own clock,
//! so replicas with skewed clocks agree. A bucket untouched for the time it
//! takes to fill up expires (it would be full anyway).
//!
//! A request's check ([`RateBuckets::check`]) asks its three buckets --
//! the address's failed authentications, its API key's, its address's --
//! in one script and one round trip, deciding in Redis whether the
//! address's is spent at all (a request refused by the other two spends
//! none of it). The `{rl}` hash tag puts every bucket in one Redis Cluster
//! slot, which a script over several keys needs: rate limiting is then
//! one shard's work, one script per request.

use fred::prelude::*;

use crate::redis::{Redis, RedisError};

/// The bucket functions both scripts share: `take(key, rate, burst, cost,
/// now)` refills a bucket to `now` and spends `cost` if it has it (a
/// negative cost gives tokens back, up to the capacity); returns
/// (1 if spent else 0, tokens left).
const TAKE_FN: &str = r"
local function take(key, rate, burst, cost, now)
  local b = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(b[1])
  local ts = tonumber(b[2])
  if tokens == nil or ts == nil then
    tokens = burst
    ts = now
  end
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
  local spent = 0
  if cost > 0 and tokens >= cost then
    tokens = tokens - cost
    spent = 1
  elseif cost < 0 then
    tokens = math.min(burst, tokens - cost)
  end
  redis.call('HSET', key, 'tokens', tostring(tokens), 'ts', tostring(now))
  redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
  return spent, tokens
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

/// One request's check. KEYS[1]: the address's failed authentications,
/// KEYS[2]: the address's bucket, KEYS[3] (when a key was presented): the
/// key's. ARGV: rate, capacity and cost of the first; rate and capacity of
/// the address's; 1 if the key is known valid (spared by a failed-auth
/// lockout) else 0; rate and capacity of the key's. The key's bucket spends
/// 1 whatever the first says; the address's spends 1 only if neither
/// refuses. Returns each bucket's {spent, tokens * 1000}, -1s for one not
/// asked.
const CHECK_BODY: &str = r"
local a_spent, a_tokens = take(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), now)
local auth_ok = a_spent == 1 or (tonumber(ARGV[3]) == 0 and a_tokens >= 1)
local refused = (not auth_ok) and ARGV[6] == '0'
local k_spent, k_tokens = -1, -1
if #KEYS >= 3 then
  k_spent, k_tokens = take(KEYS[3], tonumber(ARGV[7]), tonumber(ARGV[8]), 1, now)
  if k_spent == 0 then refused = true end
end
local ip_spent, ip_tokens = -1, -1
if not refused then
  ip_spent, ip_tokens = take(KEYS[2], tonumber(ARGV[4]), tonumber(ARGV[5]), 1, now)
end
return {a_spent, math.floor(a_tokens * 1000), k_spent, math.floor(k_tokens * 1000),
        ip_spent, math.floor(ip_tokens * 1000)}
";

/// One bucket of a check: its name, refill rate (tokens/s) and capacity.
#[derive(Debug, Clone, Copy)]
pub struct Bucket<'a> {
    pub name: &'a str,
    pub rate: f64,
    pub burst: f64,
}

/// What a request's check found: each bucket after it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Checked {
    pub failed_auth: Taken,
    /// `None` without a key.
    pub key: Option<Taken>,
    /// `None` when the other two refused (the address's was not asked).
    pub address: Option<Taken>,
}

/// A bucket's state after a take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Taken {
    /// Whether the cost was spent (the request may go on).
    pub allowed: bool,
    /// Tokens left (fractional).
    pub tokens: f64,
}

#[derive(Clone)]
pub struct RateBuckets {
    redis: Redis,
}

impl RateBuckets {
    pub fn new(redis: &Redis) -> Self {
        Self {
            redis: redis.clone(),
        }
    }

    /// Refills bucket `name` (`rate` tokens per second up to `burst`), then
    /// spends `cost` tokens if it has them (`cost` 0 only reads it).
    pub async fn take(
        &self,
        name: &str,
        rate: f64,
        burst: f64,
        cost: f64,
    ) -> Result<Taken, RedisError> {
        let script = scripts().0.as_str();
        let (spent, milli): (i64, i64) = self
            .redis
            .pool()
            .next()
            .eval(
                script,
                vec![self.key(name)],
                vec![rate.to_string(), burst.to_string(), cost.to_string()],
            )
            .await?;
        Ok(taken(spent, milli))
    }

    /// A request's check in one round trip (see the module docs):
    /// `failed_auth` spends `auth_cost` (0 only reads it: a token must be
    /// there), `key` (if any) spends 1, and `address` spends 1 unless one
    /// of the others refused -- the failed-authentication one only when
    /// the key is not `known_valid`.
    pub async fn check(
        &self,
        failed_auth: Bucket<'_>,
        auth_cost: f64,
        key: Option<Bucket<'_>>,
        address: Bucket<'_>,
        known_valid: bool,
    ) -> Result<Checked, RedisError> {
        let mut keys = vec![self.key(failed_auth.name), self.key(address.name)];
        let mut args = vec![
            failed_auth.rate.to_string(),
            failed_auth.burst.to_string(),
            auth_cost.to_string(),
            address.rate.to_string(),
            address.burst.to_string(),
            if known_valid { "1" } else { "0" }.to_string(),
        ];
        if let Some(key) = key {
            keys.push(self.key(key.name));
            args.push(key.rate.to_string());
            args.push(key.burst.to_string());
        }
        let r: Vec<i64> = self
            .redis
            .pool()
            .next()
            .eval(scripts().1.as_str(), keys, args)
            .await?;
        let at = |i: usize| r.get(i).copied().unwrap_or(-1);
        let asked = |i: usize| (at(i) >= 0).then(|| taken(at(i), at(i + 1)));
        Ok(Checked {
            failed_auth: taken(at(0).max(0), at(1)),
            key: asked(2),
            address: asked(4),
        })
    }

    fn key(&self, name: &str) -> String {
        format!("{}{{rl}}:{name}", self.redis.prefix())
    }
}

fn taken(spent: i64, milli: i64) -> Taken {
    Taken {
        allowed: spent == 1,
        tokens: milli as f64 / 1000.0,
    }
}

/// The two scripts, each the shared bucket function and its body: one
/// bucket (KEYS[1]; ARGV: rate, capacity, cost; returns {spent, tokens *
/// 1000}), and a request's check ([`CHECK_BODY`]).
fn scripts() -> &'static (String, String) {
    static SCRIPTS: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| {
        let one = "local spent, tokens = take(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), \
                   tonumber(ARGV[3]), now)\nreturn {spent, math.floor(tokens * 1000)}\n";
        (format!("{TAKE_FN}{one}"), format!("{TAKE_FN}{CHECK_BODY}"))
    })
}
