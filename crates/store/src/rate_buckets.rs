//! Token buckets in Redis, shared by every API replica (rate limits).
//!
//! One hash per bucket (`{prefix}rl:{name}`: tokens left, last refill in
//! ms), refilled and spent by one atomic script that reads Redis's own
//! clock, so replicas with skewed clocks agree. A bucket untouched for the
//! time it takes to fill up expires (it would be full anyway).

use fred::prelude::*;

use crate::redis::{Redis, RedisError};

/// KEYS[1]: the bucket. ARGV: refill rate (tokens/s), capacity, cost (a
/// negative cost gives tokens back, up to the capacity).
/// Returns {1 if spent else 0, tokens left * 1000}.
const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
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
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {spent, math.floor(tokens * 1000)}
";

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
        let key = format!("{}rl:{name}", self.redis.prefix());
        let (spent, milli): (i64, i64) = self
            .redis
            .pool()
            .next()
            .eval(
                TAKE,
                vec![key],
                vec![rate.to_string(), burst.to_string(), cost.to_string()],
            )
            .await?;
        Ok(Taken {
            allowed: spent == 1,
            tokens: milli as f64 / 1000.0,
        })
    }
}
