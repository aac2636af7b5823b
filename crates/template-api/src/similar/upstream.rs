//! The HTTP client of the recommendation service:
//! `GET {upstream_url}/v1/templates/{id}/similar?page=P&per_page=N` answers
//! `{"items": [{"id": ..., "score": ...}], "next_page": P+1 | null}`.

use shared_domain::error::Chain;
use std::time::{Duration, Instant};

use prometheus::HistogramVec;
use serde::{Deserialize, Serialize};
use shared_domain::ids::TemplateId;
use uuid::Uuid;

/// One page of candidate ids, best first, as the upstream ranked them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamPage {
    pub ids: Vec<Uuid>,
    pub next_page: Option<u32>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("the recommendation service failed: {0}")]
    Unavailable(String),
    #[error("the recommendation service did not answer within {0:?}")]
    Timeout(Duration),
}

impl From<tokio::task::JoinError> for UpstreamError {
    fn from(e: tokio::task::JoinError) -> Self {
        UpstreamError::Unavailable(format!("load task failed: {e}"))
    }
}

#[derive(Deserialize)]
struct Item {
    id: Uuid,
}

#[derive(Deserialize)]
struct Answer {
    items: Vec<Item>,
    next_page: Option<u32>,
}

#[derive(Clone)]
pub struct Upstream {
    http: reqwest::Client,
    base: String,
    page_size: u32,
    timeout: Duration,
    /// `prewarm_upstream_request_duration_seconds{upstream, outcome}`.
    latency: HistogramVec,
}

impl Upstream {
    /// A client of the service at `base` (`http://` or `https://`; HTTPS
    /// trusts the system's roots, plus the PEM bundle `ca_file` if set).
    pub fn new(
        base: &str,
        ca_file: &str,
        page_size: u32,
        timeout: Duration,
        latency: HistogramVec,
    ) -> anyhow::Result<Self> {
        let mut http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(1)));
        if !ca_file.is_empty() {
            let pem = std::fs::read(ca_file)
                .map_err(|e| anyhow::anyhow!("similar.ca_file {ca_file}: {e}"))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| anyhow::anyhow!("similar.ca_file {ca_file}: {e}"))?
            {
                http = http.add_root_certificate(cert);
            }
        }
        Ok(Self {
            http: http.build()?,
            base: base.trim_end_matches('/').to_string(),
            page_size,
            timeout,
            latency,
        })
    }

    /// Page `page` (1-based) of templates similar to `template`. A template the
    /// service does not know has no recommendations (an empty last page).
    pub async fn page(
        &self,
        template: TemplateId,
        page: u32,
    ) -> Result<UpstreamPage, UpstreamError> {
        let started = Instant::now();
        let result = self.fetch(template, page).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(UpstreamError::Timeout(_)) => "timeout",
            Err(UpstreamError::Unavailable(_)) => "error",
        };
        self.latency
            .with_label_values(&["recommender", outcome])
            .observe(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            tracing::warn!(%template, page, error = %Chain(e), "recommendation service call failed");
        }
        result
    }

    async fn fetch(&self, template: TemplateId, page: u32) -> Result<UpstreamPage, UpstreamError> {
        let url = format!("{}/v1/templates/{template}/similar", self.base);
        let classify = |e: reqwest::Error| {
            if e.is_timeout() {
                UpstreamError::Timeout(self.timeout)
            } else {
                UpstreamError::Unavailable(e.to_string())
            }
        };
        let resp = self
            .http
            .get(url)
            .query(&[("page", page), ("per_page", self.page_size)])
            .send()
            .await
            .map_err(classify)?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(UpstreamPage {
                ids: Vec::new(),
                next_page: None,
            });
        }
        if !resp.status().is_success() {
            return Err(UpstreamError::Unavailable(format!(
                "status {}",
                resp.status()
            )));
        }
        let answer: Answer = resp.json().await.map_err(classify)?;
        Ok(UpstreamPage {
            ids: answer.items.into_iter().map(|i| i.id).collect(),
            next_page: answer.next_page,
        })
    }
}
