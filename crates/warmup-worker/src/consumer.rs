//! The Kafka loop: take a batch of warm-up requests, coalesce them per
//! template, refill each template once, then store the batch's offsets
//! (committed by librdkafka's auto-commit). Offsets are stored only after the
//! refills finished, so a crash replays the batch -- harmless, since a refill
//! only fills the gap the ledger shows.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use shared_domain::ids::TemplateId;
use shared_domain::warmup::WarmupRequest;

use crate::refill::{Outcome, Refiller};
use crate::settings::WorkerSettings;

/// A message's position, kept so its offset is stored after the work is done.
struct Position {
    topic: String,
    partition: i32,
    offset: i64,
}

/// What one batch did (for logs and tests).
#[derive(Debug, Default, Clone)]
pub struct BatchReport {
    pub messages: usize,
    pub templates: usize,
    pub invalid: usize,
    pub failed_refills: usize,
}

pub async fn run(
    consumer: StreamConsumer,
    refiller: Refiller,
    settings: WorkerSettings,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let first = tokio::select! {
            _ = &mut shutdown => break,
            msg = consumer.recv() => msg,
        };
        let first = match first {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "kafka receive failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let mut batch = vec![decode(&first)];
        let deadline = tokio::time::Instant::now() + settings.batch_window();
        while batch.len() < settings.batch_max {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(Ok(m)) => batch.push(decode(&m)),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "kafka receive failed inside a batch");
                    break;
                }
                Err(_) => break,
            }
        }
        let report = process_batch(&refiller, &settings, &batch).await;
        tracing::debug!(?report, "batch done");
        for (_, pos) in &batch {
            if let Err(e) = consumer.store_offset(&pos.topic, pos.partition, pos.offset) {
                tracing::warn!(error = %e, "could not store offset");
            }
        }
    }
    // Graceful stop: the batch in hand is done; commit what it stored.
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        tracing::debug!(error = %e, "final commit (nothing stored, or broker gone)");
    }
    Ok(())
}

fn decode(msg: &rdkafka::message::BorrowedMessage<'_>) -> (Option<TemplateId>, Position) {
    let template = msg
        .payload()
        .and_then(|p| WarmupRequest::from_bytes(p).ok())
        .and_then(|r| r.template());
    (
        template,
        Position {
            topic: msg.topic().to_string(),
            partition: msg.partition(),
            offset: msg.offset(),
        },
    )
}

/// Refills each distinct template of the batch once, retrying failures with backoff.
async fn process_batch(
    refiller: &Refiller,
    settings: &WorkerSettings,
    batch: &[(Option<TemplateId>, Position)],
) -> BatchReport {
    let templates: BTreeSet<TemplateId> = batch.iter().filter_map(|(t, _)| *t).collect();
    let invalid = batch.iter().filter(|(t, _)| t.is_none()).count();
    if invalid > 0 {
        tracing::warn!(invalid, "skipped undecodable warm-up messages");
    }
    let failed = stream::iter(templates.iter().copied())
        .map(|t| refill_with_retry(refiller, settings.refill_attempts, t))
        .buffer_unordered(settings.refill_parallelism)
        .filter(|ok| std::future::ready(!ok))
        .count()
        .await;
    BatchReport {
        messages: batch.len(),
        templates: templates.len(),
        invalid,
        failed_refills: failed,
    }
}

async fn refill_with_retry(refiller: &Refiller, attempts: u32, template: TemplateId) -> bool {
    let mut delay = Duration::from_millis(200);
    for attempt in 1..=attempts {
        match refiller.refill(template).await {
            Ok(Outcome::Refilled { ready, .. }) if ready > 0 => {
                tracing::debug!(%template, ready, "pool refilled");
                return true;
            }
            Ok(_) => return true,
            Err(e) if attempt < attempts => {
                tracing::warn!(%template, attempt, error = %e, "refill failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => {
                tracing::error!(%template, attempts, error = %e, "refill failed; giving up until the next request");
            }
        }
    }
    false
}
