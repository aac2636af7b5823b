//! The Redis tier shared by every API replica for slow lookups ("similar
//! templates"), and the pub/sub channel that tells every replica to drop what
//! it cached about a template when it is edited or deleted.
//!
//! Entries are JSON strings in one hash per template
//! (`{prefix}similar:{template}`, one field per upstream page), so one `DEL`
//! invalidates all of a template's pages. Each hash expires after the longest
//! time an entry may be served (TTL + stale-if-error window).

use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::prelude::*;
use shared_domain::ids::TemplateId;
use tokio::sync::mpsc;

use crate::pool_index::{IndexError, PoolIndex};

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

#[derive(Clone)]
pub struct SharedCache {
    pool: Pool,
    prefix: String,
}

impl SharedCache {
    pub fn new(index: &PoolIndex) -> Self {
        let (pool, prefix) = index.pool();
        Self {
            pool: pool.clone(),
            prefix: prefix.to_string(),
        }
    }

    fn key(&self, template: TemplateId) -> String {
        format!("{}similar:{template}", self.prefix)
    }

    /// The channel carrying invalidated template ids.
    pub fn channel(&self) -> String {
        format!("{}invalidate", self.prefix)
    }

    pub async fn get(
        &self,
        template: TemplateId,
        field: &str,
    ) -> Result<Option<String>, IndexError> {
        Ok(self.pool.hget(self.key(template), field).await?)
    }

    pub async fn put(
        &self,
        template: TemplateId,
        field: &str,
        value: &str,
        keep_for: Duration,
    ) -> Result<(), IndexError> {
        let key = self.key(template);
        let tx = self.pool.next().multi();
        let _: () = tx.hset(&key, (field, value)).await?;
        let _: () = tx
            .expire(&key, keep_for.as_secs().max(1) as i64, None)
            .await?;
        let _: () = tx.exec(true).await?;
        Ok(())
    }

    /// Drops the template's shared entries and tells every replica (this one
    /// included) to drop its local ones.
    pub async fn invalidate(&self, template: TemplateId) -> Result<(), IndexError> {
        let _: () = self.pool.del(self.key(template)).await?;
        let _: () = self
            .pool
            .next()
            .publish(self.channel(), template.to_string())
            .await?;
        Ok(())
    }

    /// Tells every replica that an API key (its SHA-256) was revoked.
    pub async fn revoke_key(&self, key_hash: &[u8]) -> Result<(), IndexError> {
        let _: () = self
            .pool
            .next()
            .publish(self.channel(), format!("key:{}", hex::encode(key_hash)))
            .await?;
        Ok(())
    }

    /// Subscribes to invalidations on a dedicated connection that
    /// re-subscribes after reconnecting. Sends each message, and
    /// [`Invalidation::All`] after a reconnect (messages may have been
    /// missed while disconnected, so the receiver should drop everything).
    pub async fn subscribe(
        &self,
        url: &str,
        ca_file: Option<&std::path::Path>,
    ) -> Result<mpsc::UnboundedReceiver<Invalidation>, IndexError> {
        let mut config = crate::pool_index::client_config(url, ca_file)?;
        // Down at start: retried in the background (see `PoolIndex::connect`).
        config.fail_fast = false;
        let subscriber: SubscriberClient = Builder::from_config(config)
            .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2))
            .build_subscriber_client()?;
        let _connection = subscriber.connect();
        let _resubscribe = subscriber.manage_subscriptions();
        let (tx, rx) = mpsc::unbounded_channel();
        let mut messages = subscriber.message_rx();
        let mut reconnects = subscriber.reconnect_rx();
        let channel = self.channel();
        tokio::spawn(async move {
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
            // Anything published before the subscription was missed.
            if tx.send(Invalidation::All).is_err() {
                return;
            }
            // Keeps the client (and its connection) alive as long as the task runs.
            let _subscriber = subscriber;
            // The first connection is announced like a reconnect: it is the
            // one just covered by the `All` above, not a lost message.
            let mut first_connection = true;
            loop {
                let sent = tokio::select! {
                    msg = messages.recv() => match msg {
                        Ok(msg) => {
                            match msg.value.as_string().and_then(|s| Invalidation::parse(&s)) {
                                Some(message) => tx.send(message),
                                None => Ok(()),
                            }
                        }
                        // Lagged: messages were lost; drop everything.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => tx.send(Invalidation::All),
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    },
                    r = reconnects.recv() => match r {
                        Ok(_) if std::mem::take(&mut first_connection) => Ok(()),
                        Ok(_) => tx.send(Invalidation::All),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => tx.send(Invalidation::All),
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    },
                };
                if sent.is_err() {
                    break; // the receiver is gone
                }
            }
        });
        Ok(rx)
    }
}
