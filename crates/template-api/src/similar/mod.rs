//! "Similar templates": pages of candidates from the external recommendation
//! service, filtered (same category as the source, visible to the caller, not
//! the source) until a page of results passes, behind two cache tiers.
//!
//! - [`swr_cache`]: the local tier (moka): TTL, size bound, single flight,
//!   refresh-ahead, stale-if-error, sweeping.
//! - [`upstream`]: the recommendation service's HTTP client.
//! - [`metadata`]: cached template metadata for the filter.
//! - [`settings`]: the `similar` settings section.
//!
//! The shared tier is Redis (`prewarm_store::shared_cache`): a replica that
//! misses locally reads what another one fetched before asking the upstream.
//! Editing or deleting a template drops both tiers' entries about it and
//! broadcasts the id on a pub/sub channel; every replica drops its local
//! entries (and everything after a reconnect, when messages may be lost).

pub mod metadata;
pub mod settings;
pub mod swr_cache;
pub mod upstream;

use shared_domain::error::Chain;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use prewarm_store::db::Db;
use prewarm_store::shared_cache::SharedCache;
use shared_domain::error::ErrorCode;
use shared_domain::ids::{CompanyId, TemplateId};
use shared_domain::template::{SimilarTemplates as SimilarPage, TemplateSummary, Visibility};

use crate::error::ApiError;
use crate::metrics::ApiMetrics;
use metadata::MetadataCache;
use settings::SimilarSettings;
use swr_cache::{Lookup, Policy, Stamped, SwrCache};
use upstream::{Upstream, UpstreamError, UpstreamPage};

type PageKey = (TemplateId, u32);

#[derive(Clone)]
pub struct SimilarTemplates {
    settings: Arc<SimilarSettings>,
    policy: Policy,
    pages: SwrCache<PageKey, UpstreamPage, UpstreamError>,
    metadata: MetadataCache,
    upstream: Upstream,
    shared: Option<SharedCache>,
}

impl SimilarTemplates {
    pub fn new(
        settings: &SimilarSettings,
        shared: Option<SharedCache>,
        metrics: &ApiMetrics,
    ) -> anyhow::Result<Self> {
        let policy = Policy {
            ttl: Duration::from_secs(settings.ttl_secs),
            refresh_ahead: Duration::from_secs(settings.refresh_ahead_secs),
            stale_if_error: Duration::from_secs(settings.stale_if_error_secs),
            error_backoff: Duration::from_millis(settings.error_backoff_ms),
            max_entries: settings.max_entries,
        };
        Ok(Self {
            settings: Arc::new(settings.clone()),
            policy,
            pages: SwrCache::new(policy, metrics.cache("similar_pages")),
            metadata: MetadataCache::new(
                Duration::from_secs(settings.metadata_ttl_secs),
                settings.metadata_max_entries,
                metrics.cache("template_metadata"),
            ),
            upstream: Upstream::new(
                &settings.upstream_url,
                &settings.ca_file,
                settings.upstream_page_size,
                settings.upstream_timeout(),
                metrics.upstream_latency.clone(),
            )?,
            shared: if settings.shared_tier { shared } else { None },
        })
    }

    /// One page of similar templates for `company`, and how the cache answered.
    pub async fn page(
        &self,
        db: &Db,
        company: CompanyId,
        source: TemplateId,
        page: u32,
    ) -> Result<(SimilarPage, Lookup), ApiError> {
        let not_found = || {
            ApiError::new(
                ErrorCode::TemplateNotFound,
                format!("template {source} not found"),
            )
        };
        let metas = self.metadata.get_many(db, &[source.0]).await?;
        let source_meta = metas.get(&source.0).cloned().ok_or_else(not_found)?;
        if !visible(&source_meta, company) {
            return Err(not_found());
        }
        let size = self.settings.page_size;
        let wanted = page as usize * size;
        let mut passed: Vec<TemplateSummary> = Vec::new();
        let mut seen = HashSet::new();
        let mut lookup = Lookup::Hit;
        let mut upstream_page = Some(1);
        while let Some(p) = upstream_page {
            if passed.len() >= wanted || p > self.settings.max_upstream_pages {
                break;
            }
            let (candidates, how) = self.upstream_page(source, p).await?;
            lookup = lookup.worst(how);
            let metas = self.metadata.get_many(db, &candidates.value.ids).await?;
            for id in &candidates.value.ids {
                let Some(meta) = metas.get(id) else { continue };
                let passes = *id != source.0
                    && meta.category == source_meta.category
                    && visible(meta, company)
                    && seen.insert(*id);
                if passes {
                    passed.push(summary(meta));
                }
            }
            upstream_page = candidates.value.next_page;
        }
        let start = (wanted - size).min(passed.len());
        let end = wanted.min(passed.len());
        let more = passed.len() > wanted
            || upstream_page.is_some_and(|p| p <= self.settings.max_upstream_pages);
        Ok((
            SimilarPage {
                template_id: source,
                page,
                items: passed[start..end].to_vec(),
                next_page: (more && page < self.settings.max_page).then_some(page + 1),
            },
            lookup,
        ))
    }

    async fn upstream_page(
        &self,
        source: TemplateId,
        page: u32,
    ) -> Result<(Arc<Stamped<UpstreamPage>>, Lookup), ApiError> {
        let upstream = self.upstream.clone();
        let shared = self.shared.clone();
        let policy = self.policy;
        self.pages
            .get((source, page), move || {
                load_page(upstream, shared, policy, source, page)
            })
            .await
            .map_err(|e| match e {
                UpstreamError::Timeout(_) => {
                    ApiError::new(ErrorCode::RecommendationsTimeout, e.to_string())
                }
                UpstreamError::Unavailable(_) => {
                    ApiError::new(ErrorCode::RecommendationsUnavailable, e.to_string())
                }
            })
    }

    /// A template was edited or deleted: drop what this replica and the shared
    /// tier hold about it and tell the other replicas.
    pub async fn invalidate(&self, template: TemplateId) {
        self.drop_local(template);
        if let Some(shared) = &self.shared {
            if let Err(e) = shared.invalidate(template).await {
                tracing::warn!(%template, error = %Chain(&e),
                    "could not invalidate the shared cache; other replicas catch up within metadata_ttl_secs");
            }
        }
    }

    pub fn drop_local(&self, template: TemplateId) {
        self.pages.invalidate_if(move |(t, _)| *t == template);
        self.metadata.invalidate(template.0);
    }

    pub fn drop_all_local(&self) {
        self.pages.invalidate_all();
        self.metadata.invalidate_all();
    }

    /// Removes expired entries (run every `sweep_interval_ms`); returns the
    /// upstream pages still held.
    pub fn sweep(&self) -> u64 {
        self.metadata.sweep();
        self.pages.sweep()
    }

    pub fn sweep_interval(&self) -> Duration {
        Duration::from_millis(self.settings.sweep_interval_ms)
    }
}

fn visible(meta: &prewarm_store::db::templates::TemplateMetaRow, company: CompanyId) -> bool {
    meta.visibility == Visibility::Public.as_str() || meta.owner_company_id == company.0
}

fn summary(meta: &prewarm_store::db::templates::TemplateMetaRow) -> TemplateSummary {
    TemplateSummary {
        id: TemplateId(meta.id),
        owner_company_id: CompanyId(meta.owner_company_id),
        visibility: Visibility::parse(&meta.visibility).unwrap_or_default(),
        name: meta.name.clone(),
        category: meta.category.clone(),
        version: shared_domain::ids::TemplateVersion(meta.version),
    }
}

/// A local miss: the shared tier if it holds a fresh answer, else the
/// upstream (whose answer is shared); if the upstream fails, the shared
/// tier's stale answer within the stale-if-error window.
async fn load_page(
    upstream: Upstream,
    shared: Option<SharedCache>,
    policy: Policy,
    source: TemplateId,
    page: u32,
) -> Result<Stamped<UpstreamPage>, UpstreamError> {
    let field = page.to_string();
    // The generation read with the entry: the answer fetched below is
    // stored only if no invalidation came meanwhile.
    let mut generation = None;
    let from_shared: Option<Stamped<UpstreamPage>> = match &shared {
        Some(tier) => match tier.get(source, &field).await {
            Ok((entry, read_at)) => {
                generation = Some(read_at);
                entry.and_then(|json| serde_json::from_str(&json).ok())
            }
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "shared cache tier unavailable");
                None
            }
        },
        None => None,
    };
    if let Some(entry) = &from_shared {
        if entry.age() < policy.ttl.saturating_sub(policy.refresh_ahead) {
            return Ok(entry.clone());
        }
    }
    match upstream.page(source, page).await {
        Ok(answer) => {
            let entry = Stamped::now(answer);
            if let (Some(tier), Some(generation)) = (&shared, &generation) {
                let json = serde_json::to_string(&entry).unwrap_or_default();
                match tier
                    .put(source, &field, &json, policy.keep_for(), generation)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => tracing::debug!(%source, "invalidated while loading; not shared"),
                    Err(e) => {
                        tracing::warn!(error = %Chain(&e), "could not write the shared cache tier")
                    }
                }
            }
            Ok(entry)
        }
        Err(e) => match from_shared {
            Some(entry) if entry.age() < policy.keep_for() => Ok(entry),
            _ => Err(e),
        },
    }
}
