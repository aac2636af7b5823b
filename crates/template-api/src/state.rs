//! What every handler shares. Cloned per actix worker; all fields are handles.

use std::sync::Arc;

use prewarm_store::db::Db;
use prewarm_store::objects::ObjectStore;
use prewarm_store::pool_index::PoolIndex;
use shared_domain::pool::PoolKey;
use shared_domain::warmup::Reason;
use tokio::sync::Semaphore;

use crate::settings::Settings;

#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Db,
    pub index: PoolIndex,
    pub objects: ObjectStore,
    /// Warm-up requests to Kafka, coalesced per template version.
    pub warmup: Arc<crate::warmup_requests::WarmupRequests>,
    /// Caps CopyObject calls made by cold-path requests of this process, so a
    /// burst of misses cannot open thousands of S3 connections.
    pub copy_limiter: Arc<Semaphore>,
    /// Cold designs in flight per company (`serving.cold_designs_per_company`),
    /// so one company's misses cannot queue every other's copies behind them.
    pub cold_slots: Arc<crate::company_slots::CompanySlots>,
    /// API keys: the cache, the lookups, the admin token (also its own app data).
    pub auth: Arc<crate::auth::Authenticator>,
    /// The Redis tier of the caches, and the channel that invalidates them
    /// on every replica (templates edited, API keys revoked).
    pub shared_cache: prewarm_store::shared_cache::SharedCache,
    pub metrics: Arc<crate::metrics::ApiMetrics>,
    pub similar: crate::similar::SimilarTemplates,
    /// Upload bytes held in memory by this process (`server.max_upload_bytes_in_flight`).
    pub upload_budget: Arc<crate::upload::UploadBudget>,
    /// `None` when `rate_limit.enabled` is false.
    pub rate_limiter: Option<Arc<crate::rate_limit::RateLimiter>>,
    /// Templates' current versions, for warm designs without a template read.
    pub versions: Arc<crate::template_versions::TemplateVersions>,
    /// Pool ids popped ahead of the next design; `None` when
    /// `serving.prefetch_hold_ms` is 0. One per process, shared by the workers.
    pub prefetch: Option<Arc<crate::prefetch::Prefetch>>,
    /// The background loops: one stop for all of them ([`crate::background`]).
    pub background: crate::background::Background,
    /// Test-only pause points (a no-op unless a test armed one).
    pub pause: prewarm_store::pause::PausePoints,
}

impl AppState {
    /// What an upload needs, borrowed from this state.
    pub fn uploads(&self) -> crate::upload::Uploads<'_> {
        crate::upload::Uploads {
            db: &self.db,
            objects: &self.objects,
            limits: &self.settings.server,
            budget: &self.upload_budget,
            pause: &self.pause,
        }
    }

    /// Asks the worker to top a template's pool up; never waits for Kafka
    /// (asks within `serving.warmup_coalesce_ms` travel as one message).
    pub fn request_warmup(&self, pool: PoolKey, reason: Reason) {
        self.warmup.ask(pool, reason);
    }
}
