//! The Redis tier shared by every API replica for slow lookups ("similar
//! templates"), and the pub/sub channel that tells every replica to drop what
//! it cached about a template when it is edited or deleted.
//!
//! Entries are JSON strings in one hash per template
//! (`{prefix}similar:{template}`, one field per upstream page), so one `DEL`
//! invalidates all of a template's pages. Each hash expires after the longest
//! time an entry may be served (TTL + stale-if-error window).
//!
//! Invalidations are numbered (as Hazelcast's near cache numbers its
//! invalidation events): one script takes the next number, keeps the message
//! in a log of the last [`LOG_LEN`] and publishes `"{seq} {payload}"`. A
//! subscriber that sees a gap in the numbers -- a message PUBSUB lost, noticed
//! by the next one, by a reconnect, or by a poll of the counter every
//! [`POLL`] -- reads the missed messages back from the log and drops only
//! what they name; only when they have left the log does it drop everything.

use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::prelude::*;
use shared_domain::ids::TemplateId;
use tokio::sync::mpsc;

use crate::redis::{Redis, RedisError};

/// One message of the invalidation channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// Drop what is cached about this template.
    Template(TemplateId),
    /// Drop this API key (SHA-256 of the token): it was revoked.
    ApiKey(Vec<u8>),
    /// Messages may have been missed (a reconnect): drop everything.
    All,
}

impl Invalidation {
    fn parse(text: &str) -> Option<Invalidation> {
        match text.strip_prefix("key:") {
            Some(hash) => hex::decode(hash).ok().map(Invalidation::ApiKey),
            None => text.parse().ok().map(Invalidation::Template),
        }
    }
}

/// Invalidations kept in the log for subscribers to read back.
pub const LOG_LEN: u64 = 10_000;

/// How often a subscriber compares its last number with the counter (a
/// lost last message has no follower to reveal the gap).
pub const POLL: Duration = Duration::from_secs(1);

/// Takes the next number, logs the message, trims the log, publishes.
/// KEYS: counter, log; ARGV: payload, log length, channel.
const PUBLISH_SCRIPT: &str = r#"
local seq = redis.call('INCR', KEYS[1])
local entry = seq .. ' ' .. ARGV[1]
redis.call('ZADD', KEYS[2], seq, entry)
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[2]) + 1))
redis.call('PUBLISH', ARGV[3], entry)
return seq
"#;

/// One numbered message as published: `"{seq} {payload}"`.
fn parse_numbered(text: &str) -> Option<(u64, Option<Invalidation>)> {
    let (seq, payload) = text.split_once(' ')?;
    Some((seq.parse().ok()?, Invalidation::parse(payload)))
}

/// What a subscriber that applied every message up to `last` does when
/// every one up to `upto` should have reached it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CatchUp {
    /// Nothing was missed (or it does not know where it stands: `last` is
    /// `None`, so it cannot tell).
    Nothing,
    /// Messages `from..=to` were missed: read them back.
    Read { from: u64, to: u64 },
    /// The counter went back (Redis lost its data): what was missed
    /// cannot be told.
    DropAll,
}

fn catch_up_plan(last: Option<u64>, upto: u64) -> CatchUp {
    match last {
        Some(last) if upto > last => CatchUp::Read {
            from: last + 1,
            to: upto,
        },
        Some(last) if upto < last => CatchUp::DropAll,
        _ => CatchUp::Nothing,
    }
}

#[derive(Clone)]
pub struct SharedCache {
    redis: Redis,
}

impl SharedCache {
    pub fn new(redis: &Redis) -> Self {
        Self {
            redis: redis.clone(),
        }
    }

    /// A template's entries. The braces are a Redis Cluster hash tag: the
    /// hash and its [`generation_key`](Self::generation_key) share a slot,
    /// so the conditional write may read one and write the other.
    fn key(&self, template: TemplateId) -> String {
        format!("{}similar:{{{template}}}", self.redis.prefix())
    }

    /// A token replaced by every invalidation of the template's entries (a
    /// fresh random one, so an expired or evicted key can never come back
    /// to a value a load read before): a load reads it first and writes
    /// only if it has not changed (see [`put`](Self::put)).
    fn generation_key(&self, template: TemplateId) -> String {
        format!("{}similar:{{{template}}}:generation", self.redis.prefix())
    }

    /// The channel carrying invalidated template ids.
    pub fn channel(&self) -> String {
        format!("{}invalidate", self.redis.prefix())
    }

    /// The invalidations' counter and log (one Cluster hash tag, so the
    /// publish script may touch both).
    fn log_keys(&self) -> (String, String) {
        (
            format!("{}invalidations:{{log}}:seq", self.redis.prefix()),
            format!("{}invalidations:{{log}}:entries", self.redis.prefix()),
        )
    }

    /// Publishes one numbered invalidation (see the module docs).
    async fn publish(&self, payload: String) -> Result<u64, RedisError> {
        let (counter, log) = self.log_keys();
        Ok(self
            .redis
            .pool()
            .next()
            .eval(
                PUBLISH_SCRIPT,
                vec![counter, log],
                vec![payload, LOG_LEN.to_string(), self.channel()],
            )
            .await?)
    }

    /// The newest invalidation number (0 before the first).
    pub async fn last_number(&self) -> Result<u64, RedisError> {
        let (counter, _) = self.log_keys();
        let n: Option<u64> = self.redis.pool().get(counter).await?;
        Ok(n.unwrap_or(0))
    }

    /// The logged invalidations numbered `from..=to`, or `None` when some
    /// have left the log (or cannot be read).
    pub async fn missed(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Option<Vec<Invalidation>>, RedisError> {
        if from > to {
            return Ok(Some(Vec::new()));
        }
        let (_, log) = self.log_keys();
        // Through a script: the client's sorted-set commands are not built in.
        let entries: Vec<String> = self
            .redis
            .pool()
            .next()
            .eval(
                "return redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2])",
                vec![log],
                vec![from.to_string(), to.to_string()],
            )
            .await?;
        let mut found = Vec::with_capacity(entries.len());
        let mut numbers = Vec::with_capacity(entries.len());
        for entry in &entries {
            let Some((seq, message)) = parse_numbered(entry) else {
                return Ok(None);
            };
            numbers.push(seq);
            found.extend(message);
        }
        numbers.dedup();
        Ok((numbers.len() as u64 == to - from + 1).then_some(found))
    }

    /// The template's entry `field`, and the generation it was read at
    /// (pass it to [`put`](Self::put) with what the load fetched).
    pub async fn get(
        &self,
        template: TemplateId,
        field: &str,
    ) -> Result<(Option<String>, String), RedisError> {
        let (entry, generation): (Option<String>, Option<String>) = self
            .redis
            .pool()
            .next()
            .eval(
                "return {redis.call('HGET', KEYS[1], ARGV[1]), redis.call('GET', KEYS[2])}",
                vec![self.key(template), self.generation_key(template)],
                vec![field.to_string()],
            )
            .await?;
        Ok((entry, generation.unwrap_or_else(|| "0".into())))
    }

    /// Stores an entry loaded since [`get`](Self::get) answered
    /// `generation` -- unless the template was invalidated meanwhile: a
    /// load that began before an invalidation never stores what it
    /// fetched. Returns whether it was stored.
    pub async fn put(
        &self,
        template: TemplateId,
        field: &str,
        value: &str,
        keep_for: Duration,
        generation: &str,
    ) -> Result<bool, RedisError> {
        let stored: i64 = self
            .redis
            .pool()
            .next()
            .eval(
                "if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[4] then return 0 end
                 redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
                 redis.call('EXPIRE', KEYS[1], ARGV[3])
                 return 1",
                vec![self.key(template), self.generation_key(template)],
                vec![
                    field.to_string(),
                    value.to_string(),
                    keep_for.as_secs().max(1).to_string(),
                    generation.to_string(),
                ],
            )
            .await?;
        Ok(stored == 1)
    }

    /// Drops the template's shared entries (a new generation token: loads
    /// begun before store nothing) and tells every replica (this one included) to
    /// drop its local ones.
    pub async fn invalidate(&self, template: TemplateId) -> Result<(), RedisError> {
        let _: () = self
            .redis
            .pool()
            .next()
            .eval(
                "redis.call('DEL', KEYS[1])
                 redis.call('SET', KEYS[2], ARGV[1], 'EX', 86400)",
                vec![self.key(template), self.generation_key(template)],
                vec![uuid::Uuid::new_v4().simple().to_string()],
            )
            .await?;
        self.publish(template.to_string()).await?;
        Ok(())
    }

    /// Tells every replica that an API key (its SHA-256) was revoked.
    pub async fn revoke_key(&self, key_hash: &[u8]) -> Result<(), RedisError> {
        self.publish(format!("key:{}", hex::encode(key_hash)))
            .await?;
        Ok(())
    }

    /// Brings a subscriber that applied every invalidation up to `last`
    /// to `upto`: the missed ones read back from the log, or
    /// [`Invalidation::All`] when they cannot be (left the log, Redis
    /// failing). Moves `last` to `upto`.
    async fn catch_up(&self, last: &mut Option<u64>, upto: u64) -> Vec<Invalidation> {
        let plan = catch_up_plan(*last, upto);
        *last = Some(upto);
        let (from, to) = match plan {
            CatchUp::Nothing => return Vec::new(),
            CatchUp::DropAll => {
                tracing::warn!(
                    upto,
                    "invalidation counter went back; dropping every cached entry"
                );
                return vec![Invalidation::All];
            }
            CatchUp::Read { from, to } => (from, to),
        };
        match self.missed(from, to).await {
            Ok(Some(found)) => {
                tracing::info!(from, to, "invalidations missed; read back from the log");
                found
            }
            Ok(None) | Err(_) => {
                tracing::warn!(
                    from,
                    to,
                    "invalidations missed and gone from the log; dropping every cached entry"
                );
                vec![Invalidation::All]
            }
        }
    }

    /// [`catch_up`](Self::catch_up) to the counter as it is now;
    /// `fallback` is what to deliver when the counter cannot be read.
    async fn catch_up_to_counter(
        &self,
        last: &mut Option<u64>,
        fallback: Vec<Invalidation>,
    ) -> Vec<Invalidation> {
        match self.last_number().await {
            Ok(upto) => self.catch_up(last, upto).await,
            Err(_) => fallback,
        }
    }

    /// Subscribes to invalidations on a dedicated connection that
    /// re-subscribes after reconnecting, and sends each message. Numbers
    /// are followed (see the module docs): what a lost message, a
    /// reconnect or a lagging reader missed is read back from the log and
    /// sent; [`Invalidation::All`] is sent when it cannot be, and once
    /// after subscribing (anything before was missed).
    pub async fn subscribe(&self) -> Result<mpsc::UnboundedReceiver<Invalidation>, RedisError> {
        // Down at start: retried in the background, as the handle's own
        // connections are (`Redis::connect`).
        let config = self.redis.subscriber_config();
        let subscriber: SubscriberClient = Builder::from_config(config)
            .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2))
            .build_subscriber_client()?;
        let _connection = subscriber.connect();
        let _resubscribe = subscriber.manage_subscriptions();
        let (tx, rx) = mpsc::unbounded_channel();
        let mut messages = subscriber.message_rx();
        let mut reconnects = subscriber.reconnect_rx();
        let channel = self.channel();
        let this = self.clone();
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            // Subscribes once connected (retrying while Redis is away); the
            // client re-subscribes by itself after later reconnects.
            loop {
                if subscriber.wait_for_connect().await.is_ok()
                    && subscriber.subscribe(channel.clone()).await.is_ok()
                {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            // Where the numbers stand now; anything before was missed.
            let mut last = this.last_number().await.ok();
            if tx.send(Invalidation::All).is_err() {
                return;
            }
            // Keeps the client (and its connection) alive as long as the task runs.
            let _subscriber = subscriber;
            // The first connection is announced like a reconnect: it is the
            // one just covered by the `All` above, not a lost message.
            let mut first_connection = true;
            let mut poll = tokio::time::interval_at(tokio::time::Instant::now() + POLL, POLL);
            loop {
                let deliver = tokio::select! {
                    msg = messages.recv() => match msg {
                        Ok(msg) => {
                            let text = msg.value.as_string().unwrap_or_default();
                            match parse_numbered(&text) {
                                Some((seq, message)) if seq > 0 => {
                                    // A repeat (the poll read it back
                                    // first, or the counter went back,
                                    // which the poll finds) is applied as
                                    // it is.
                                    let new = last.is_none_or(|l| seq > l);
                                    let mut out = if new {
                                        this.catch_up(&mut last, seq - 1).await
                                    } else {
                                        Vec::new()
                                    };
                                    if new {
                                        last = Some(seq);
                                    }
                                    out.extend(message);
                                    out
                                }
                                // Not numbered by the script (a publisher of
                                // another version): applied as it is.
                                _ => Invalidation::parse(&text).into_iter().collect(),
                            }
                        }
                        // The reader lagged: messages were lost.
                        Err(RecvError::Lagged(_)) => {
                            this.catch_up_to_counter(&mut last, vec![Invalidation::All]).await
                        }
                        Err(RecvError::Closed) => break,
                    },
                    r = reconnects.recv() => match r {
                        Ok(_) if std::mem::take(&mut first_connection) => Vec::new(),
                        Ok(_) | Err(RecvError::Lagged(_)) => {
                            this.catch_up_to_counter(&mut last, vec![Invalidation::All]).await
                        }
                        Err(RecvError::Closed) => break,
                    },
                    // A lost last message has no follower to reveal it.
                    _ = poll.tick() => this.catch_up_to_counter(&mut last, Vec::new()).await,
                };
                for message in deliver {
                    if tx.send(message).is_err() {
                        return; // the receiver is gone
                    }
                }
            }
        });
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_messages_parse_and_gaps_are_found() {
        let t = TemplateId::new();
        assert_eq!(
            parse_numbered(&format!("7 {t}")),
            Some((7, Some(Invalidation::Template(t))))
        );
        assert_eq!(
            parse_numbered("8 key:00ff"),
            Some((8, Some(Invalidation::ApiKey(vec![0, 255]))))
        );
        assert_eq!(
            parse_numbered("9 nonsense"),
            Some((9, None)),
            "numbered, unreadable: the gap is still seen"
        );
        assert_eq!(parse_numbered(&t.to_string()), None);
        assert_eq!(catch_up_plan(Some(4), 4), CatchUp::Nothing);
        assert_eq!(catch_up_plan(Some(4), 6), CatchUp::Read { from: 5, to: 6 });
        assert_eq!(catch_up_plan(None, 6), CatchUp::Nothing);
        assert_eq!(
            catch_up_plan(Some(4), 1),
            CatchUp::DropAll,
            "the counter went back: Redis lost its data"
        );
    }
}
