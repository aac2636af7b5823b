//! One replica at a time: a background pass (reconciler, GC, sizer) runs
//! under a lease in `singleton_leases`, renewed every third of its time to
//! live while the pass runs and given back after it. A replica that dies
//! mid-pass frees the lease when it expires. (Every pass is also safe when
//! two run at once -- see docs/design.md, "Concurrency" -- the lease only
//! saves the duplicate work.)

use shared_domain::error::Chain;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use prewarm_store::db::{leases, Db, StoreError};

#[derive(Clone)]
pub struct Singleton {
    db: Db,
    /// This replica's name in `singleton_leases.holder`.
    holder: Arc<str>,
    ttl: Duration,
}

impl Singleton {
    /// A new holder: the pod's name (`HOSTNAME`) and a random suffix, so two
    /// processes never share one.
    /// Leases last `ttl` unrenewed (`worker.singleton_lease_secs`).
    pub fn new(db: Db, ttl: Duration) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "warmup-worker".into());
        Self {
            db,
            holder: format!("{host}-{}", uuid::Uuid::new_v4().simple()).into(),
            ttl,
        }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Runs `pass` if this replica gets lease `name`; `None` when another
    /// replica holds it.
    pub async fn run<T>(
        &self,
        name: &'static str,
        pass: impl Future<Output = T>,
    ) -> Result<Option<T>, StoreError> {
        let acquired = {
            let mut conn = self.db.conn().await?;
            leases::try_acquire(&mut conn, name, &self.holder, self.ttl).await?
        };
        if !acquired {
            return Ok(None);
        }
        let heartbeat = {
            let (db, holder, ttl) = (self.db.clone(), self.holder.clone(), self.ttl);
            tokio::spawn(async move {
                let every = ttl / 3;
                let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                loop {
                    tick.tick().await;
                    let renewed = match db.conn().await {
                        Ok(mut conn) => leases::renew(&mut conn, name, &holder, ttl).await,
                        Err(e) => Err(e),
                    };
                    match renewed {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(lease = name, "lost a singleton lease mid-pass");
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(lease = name, error = %Chain(&e), "could not renew a singleton lease")
                        }
                    }
                }
            })
        };
        let out = pass.await;
        heartbeat.abort();
        let released = match self.db.conn().await {
            Ok(mut conn) => leases::release(&mut conn, name, &self.holder).await,
            Err(e) => Err(e),
        };
        if let Err(e) = released {
            tracing::warn!(lease = name, error = %Chain(&e), "could not release a singleton lease; it expires");
        }
        Ok(Some(out))
    }
}
