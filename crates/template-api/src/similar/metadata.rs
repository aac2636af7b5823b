//! Template metadata (category, visibility, owner, name) for the similar
//! filter, cached in-process with a TTL and invalidated with the rest of a
//! template's entries. Misses of one request are loaded in one query; absent
//! (deleted, unknown) templates are cached as absent.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use prewarm_store::db::templates::{self, TemplateMetaRow};
use prewarm_store::db::{Db, StoreError};
use uuid::Uuid;

use crate::metrics::CacheMetrics;

#[derive(Clone)]
pub struct MetadataCache {
    entries: Cache<Uuid, Option<Arc<TemplateMetaRow>>>,
    metrics: CacheMetrics,
}

impl MetadataCache {
    pub fn new(ttl: Duration, max_entries: u64, metrics: CacheMetrics) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(ttl.max(Duration::from_millis(1)))
                .build(),
            metrics,
        }
    }

    /// The live templates among `ids`.
    pub async fn get_many(
        &self,
        db: &Db,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Arc<TemplateMetaRow>>, StoreError> {
        let mut found = HashMap::with_capacity(ids.len());
        let mut missing = Vec::new();
        for id in ids {
            match self.entries.get(id) {
                Some(Some(meta)) => {
                    found.insert(*id, meta);
                }
                Some(None) => {}
                None => missing.push(*id),
            }
        }
        let hits = (ids.len() - missing.len()) as u64;
        let requests = &self.metrics.requests;
        requests
            .with_label_values(&[self.metrics.name, "hit"])
            .inc_by(hits);
        if missing.is_empty() {
            return Ok(found);
        }
        requests
            .with_label_values(&[self.metrics.name, "miss"])
            .inc_by(missing.len() as u64);
        let mut conn = db.conn().await?;
        let rows = templates::metadata(&mut conn, &missing).await?;
        let mut loaded: HashMap<Uuid, Arc<TemplateMetaRow>> =
            rows.into_iter().map(|r| (r.id, Arc::new(r))).collect();
        for id in missing {
            let meta = loaded.remove(&id);
            self.entries.insert(id, meta.clone());
            if let Some(meta) = meta {
                found.insert(id, meta);
            }
        }
        Ok(found)
    }

    pub fn invalidate(&self, id: Uuid) {
        self.entries.invalidate(&id);
    }

    pub fn invalidate_all(&self) {
        self.entries.invalidate_all();
    }

    pub fn sweep(&self) -> u64 {
        self.entries.run_pending_tasks();
        let n = self.entries.entry_count();
        self.metrics
            .entries
            .with_label_values(&[self.metrics.name])
            .set(n as i64);
        n
    }
}
