//! The `similar` settings section: the upstream recommendation service and
//! the cache in front of it.

use std::time::Duration;

use prewarm_store::settings::invalid;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimilarSettings {
    /// Base URL of the recommendation service (`http://` or `https://`).
    pub upstream_url: String,
    /// With `https://`: a PEM bundle of the CA(s) to trust besides the
    /// system's roots (empty: the system's only).
    pub ca_file: String,
    /// Longest wait for one upstream page before answering 504 (or serving stale).
    pub upstream_timeout_ms: u64,
    /// Candidates asked for per upstream page.
    pub upstream_page_size: u32,
    /// Most upstream pages read to fill one answer page.
    pub max_upstream_pages: u32,
    /// Templates in one answer page.
    pub page_size: usize,
    /// Highest answer page a client may ask for.
    pub max_page: u32,
    /// How long an upstream page is fresh.
    pub ttl_secs: u64,
    /// A read this long before expiry refreshes the entry in the background
    /// (stale-while-revalidate), so a hot key never makes a reader wait.
    pub refresh_ahead_secs: u64,
    /// After expiry, how long an entry may still be served while the upstream
    /// fails (stale-if-error). Entries are removed after TTL + this window.
    pub stale_if_error_secs: u64,
    /// After a failed refresh, readers get the stale entry without asking the
    /// upstream again for this long.
    pub error_backoff_ms: u64,
    /// Most upstream pages held in memory (least recently used evicted first).
    pub max_entries: u64,
    /// How often expired entries are swept out, even if never read again.
    pub sweep_interval_ms: u64,
    /// How long a template's metadata (category, visibility, name) is cached.
    pub metadata_ttl_secs: u64,
    /// Most templates whose metadata is held in memory.
    pub metadata_max_entries: u64,
    /// Share upstream answers between replicas through Redis.
    pub shared_tier: bool,
}

impl Default for SimilarSettings {
    fn default() -> Self {
        Self {
            upstream_url: "http://127.0.0.1:9100".into(),
            ca_file: String::new(),
            upstream_timeout_ms: 2_000,
            upstream_page_size: 20,
            max_upstream_pages: 10,
            page_size: 10,
            max_page: 20,
            ttl_secs: 2 * 3600,
            refresh_ahead_secs: 600,
            stale_if_error_secs: 3600,
            error_backoff_ms: 5_000,
            max_entries: 100_000,
            sweep_interval_ms: 60_000,
            metadata_ttl_secs: 60,
            metadata_max_entries: 100_000,
            shared_tier: true,
        }
    }
}

impl SimilarSettings {
    pub fn validate(&self) -> Result<(), config::ConfigError> {
        if !self.upstream_url.starts_with("http://") && !self.upstream_url.starts_with("https://") {
            return Err(invalid("similar.upstream_url", "must be an http(s) URL"));
        }
        if self.ttl_secs == 0 {
            return Err(invalid("similar.ttl_secs", "must be >= 1"));
        }
        if self.refresh_ahead_secs >= self.ttl_secs {
            return Err(invalid(
                "similar.refresh_ahead_secs",
                "must be below ttl_secs",
            ));
        }
        if self.page_size == 0 || self.upstream_page_size == 0 || self.max_upstream_pages == 0 {
            return Err(invalid(
                "similar.page_size",
                "page_size, upstream_page_size and max_upstream_pages must be >= 1",
            ));
        }
        if self.sweep_interval_ms == 0 {
            return Err(invalid("similar.sweep_interval_ms", "must be >= 1"));
        }
        Ok(())
    }

    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream_timeout_ms)
    }
}
