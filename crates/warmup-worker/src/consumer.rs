//! The Kafka loop: take a batch of warm-up requests, coalesce them per
//! template, refill each template once, then store the batch's offsets
//! (committed by librdkafka's auto-commit). Offsets are stored only after the
//! refills finished, so a crash replays the batch -- harmless, since a refill
//! only fills the gap the ledger shows.

use shared_domain::error::Chain;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use prewarm_store::warmup_topic::WarmupPublisher;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use shared_domain::ids::TemplateId;
use shared_domain::warmup::Reason;
use shared_domain::warmup::WarmupRequest;
use tracing::Instrument;

use crate::metrics::WorkerMetrics;
use crate::refill::{Outcome, Refiller};
use crate::settings::WorkerSettings;

/// What the worker needs of one warm-up request.
#[derive(Debug, Clone)]
struct Request {
    template: TemplateId,
    requested_at_ms: i64,
    reason: &'static str,
    /// A design asked for it (a pop or a miss), in any coalesced request.
    in_demand: bool,
    /// The producer's trace context (`traceparent`, `tracestate` headers).
    trace: Vec<(String, String)>,
}

fn reason_label(reason: Reason) -> &'static str {
    match reason {
        Reason::Unspecified => "unspecified",
        Reason::PoolPop => "pool_pop",
        Reason::TemplateCreated => "template_created",
        Reason::TemplateEdited => "template_edited",
        Reason::PoolMiss => "pool_miss",
    }
}

type Batch = Vec<(Option<Request>, Position)>;

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
    /// Templates not refilled because the batch budget was spent.
    pub deferred_refills: usize,
}

/// Where refills that keep failing go.
#[derive(Clone)]
pub struct DeadLetters {
    pub publisher: WarmupPublisher,
    pub topic: String,
}

/// How long dropping a [`ClosingConsumer`] waits for librdkafka's close.
pub const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// The worker's consumer, closed without hanging its owner when dropped.
/// librdkafka's close can wait forever in `rd_kafka_assign`, called from
/// the revoke callback while the group's thread waits on the broker
/// (confluentinc/librdkafka#4884, fede1024/rust-rdkafka#509; seen here once,
/// dropping a worker in the benchmark): the close runs on a thread of its
/// own and is waited for at most [`CLOSE_WAIT`], then left to finish (or
/// end with the process). Offsets are committed before (see [`run`]).
pub struct ClosingConsumer(Option<StreamConsumer<WorkerContext>>);

impl ClosingConsumer {
    pub fn new(consumer: StreamConsumer<WorkerContext>) -> Self {
        Self(Some(consumer))
    }
}

impl std::ops::Deref for ClosingConsumer {
    type Target = StreamConsumer<WorkerContext>;

    fn deref(&self) -> &Self::Target {
        self.0.as_ref().expect("taken only by drop")
    }
}

impl Drop for ClosingConsumer {
    fn drop(&mut self) {
        let Some(consumer) = self.0.take() else {
            return;
        };
        let (closed, wait) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("kafka-close".into())
            .spawn(move || {
                drop(consumer);
                let _ = closed.send(());
            });
        if spawned.is_ok() && wait.recv_timeout(CLOSE_WAIT).is_err() {
            tracing::warn!(
                wait = ?CLOSE_WAIT,
                "the Kafka consumer did not close in time (librdkafka#4884); left closing on its own thread"
            );
        }
    }
}

pub async fn run(
    consumer: ClosingConsumer,
    refiller: Refiller,
    dead_letters: DeadLetters,
    settings: WorkerSettings,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let closing = consumer;
    let consumer: &StreamConsumer<WorkerContext> = &closing;
    tokio::pin!(shutdown);
    loop {
        let batch = tokio::select! {
            _ = &mut shutdown => break,
            batch = boxed(next_batch(consumer, &settings)) => batch,
        };
        if batch.is_empty() {
            continue;
        }
        let report = boxed(process_batch(&refiller, &dead_letters, &settings, &batch)).await;
        tracing::debug!(?report, "batch done");
        for (_, pos) in &batch {
            if let Err(e) = consumer.store_offset(&pos.topic, pos.partition, pos.offset) {
                tracing::warn!(error = %Chain(&e), "could not store offset");
            }
        }
    }
    // Graceful stop: the batch in hand is done; commit what it stored.
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        tracing::debug!(error = %Chain(&e), "final commit (nothing stored, or broker gone)");
    }
    Ok(())
}

/// Boxes a future as `Send`. Checking `Send` at a concrete lifetime works
/// around rustc's "not general enough" errors with borrowed futures
/// (rust-lang/rust#102211).
fn boxed<'a, T>(
    f: impl Future<Output = T> + Send + 'a,
) -> Pin<Box<dyn Future<Output = T> + Send + 'a>> {
    Box::pin(f)
}

/// Waits for one message, then keeps taking messages for `batch_window` or
/// until `batch_max`. Returns owned data only: no borrowed message outlives it.
async fn next_batch(consumer: &StreamConsumer<WorkerContext>, settings: &WorkerSettings) -> Batch {
    let first = match recv(consumer).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %Chain(&e), "kafka receive failed; retrying");
            tokio::time::sleep(Duration::from_millis(500)).await;
            return Vec::new();
        }
    };
    let mut batch = vec![first];
    let deadline = tokio::time::Instant::now() + settings.batch_window();
    while batch.len() < settings.batch_max {
        let next = match tokio::time::timeout_at(deadline, recv(consumer)).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                tracing::warn!(error = %Chain(&e), "kafka receive failed inside a batch");
                break;
            }
            Err(_) => break,
        };
        batch.push(next);
    }
    batch
}

/// Receives one message and decodes it at once, so the borrowed message
/// never lives across an await of the caller.
async fn recv(
    consumer: &StreamConsumer<WorkerContext>,
) -> rdkafka::error::KafkaResult<(Option<Request>, Position)> {
    consumer.recv().await.map(|m| decode(&m))
}

/// The W3C trace-context headers of a message.
fn trace_headers(msg: &rdkafka::message::BorrowedMessage<'_>) -> Vec<(String, String)> {
    let Some(headers) = msg.headers() else {
        return Vec::new();
    };
    headers
        .iter()
        .filter(|h| h.key == "traceparent" || h.key == "tracestate")
        .filter_map(|h| {
            let value = std::str::from_utf8(h.value?).ok()?;
            Some((h.key.to_string(), value.to_string()))
        })
        .collect()
}

fn decode(msg: &rdkafka::message::BorrowedMessage<'_>) -> (Option<Request>, Position) {
    let request = msg
        .payload()
        .and_then(|p| WarmupRequest::from_bytes(p).ok())
        .and_then(|r| {
            Some(Request {
                template: r.template()?,
                requested_at_ms: r.requested_at_ms,
                reason: reason_label(r.reason()),
                in_demand: matches!(r.reason(), Reason::PoolPop | Reason::PoolMiss),
                trace: trace_headers(msg),
            })
        });
    (
        request,
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
    dead_letters: &DeadLetters,
    settings: &WorkerSettings,
    batch: &[(Option<Request>, Position)],
) -> BatchReport {
    // Coalesced per template; the oldest request of each measures the lag.
    let mut templates: BTreeMap<TemplateId, Request> = BTreeMap::new();
    // The refill joins the trace of the oldest request that carried one.
    for r in batch.iter().filter_map(|(r, _)| r.clone()) {
        match templates.get_mut(&r.template) {
            Some(e) => {
                e.in_demand |= r.in_demand;
                if e.trace.is_empty()
                    || (!r.trace.is_empty() && r.requested_at_ms < e.requested_at_ms)
                {
                    e.trace = r.trace.clone();
                }
                if r.requested_at_ms < e.requested_at_ms {
                    e.requested_at_ms = r.requested_at_ms;
                    e.reason = r.reason;
                }
            }
            None => {
                templates.insert(r.template, r);
            }
        }
    }
    let invalid = batch.iter().filter(|(t, _)| t.is_none()).count();
    if invalid > 0 {
        tracing::warn!(invalid, "skipped undecodable warm-up messages");
    }
    // Past the batch budget no refill starts: the consumer must poll again
    // within `max.poll.interval.ms`. Skipped templates are not lost (the
    // messages are hints): the reconciler tops every pool up. The budget
    // counts from here, the owners' read included.
    let deadline = tokio::time::Instant::now() + settings.batch_budget();
    let requests = fair_order(refiller, templates.into_values().collect()).await;
    let attempts = settings.refill_attempts;
    // Owned futures (no borrowing closure inside the stream), run N at a time.
    let refills: Vec<_> = requests
        .into_iter()
        .map(|r| {
            let (refiller, dead_letters) = (refiller.clone(), dead_letters.clone());
            async move {
                if tokio::time::Instant::now() >= deadline {
                    refiller
                        .metrics
                        .refills
                        .with_label_values(&["deferred"])
                        .inc();
                    return None;
                }
                Some(refill_with_retry(refiller, dead_letters, attempts, r).await)
            }
        })
        .collect();
    let results: Vec<Option<bool>> = stream::iter(refills)
        .buffer_unordered(settings.refill_parallelism)
        .collect()
        .await;
    let failed = results.iter().filter(|r| **r == Some(false)).count();
    let deferred = results.iter().filter(|r| r.is_none()).count();
    if deferred > 0 {
        tracing::warn!(
            deferred,
            "batch budget spent; refills left to the reconciler"
        );
    }
    BatchReport {
        messages: batch.len(),
        templates: results.len(),
        invalid,
        failed_refills: failed,
        deferred_refills: deferred,
    }
}

/// The batch's requests in the order their refills start: round-robin over
/// the templates' owners, oldest request first ([`crate::fair_share`]). If
/// the owners cannot be read, oldest request first.
async fn fair_order(refiller: &Refiller, requests: Vec<Request>) -> Vec<Request> {
    let ids: Vec<TemplateId> = requests.iter().map(|r| r.template).collect();
    let owners = match refiller.db.conn().await {
        Ok(mut conn) => prewarm_store::db::templates::owners(&mut conn, &ids).await,
        Err(e) => Err(e),
    };
    let owners = owners.unwrap_or_else(|e| {
        tracing::warn!(error = %Chain(&e), "could not read the batch's owners; refilling oldest first");
        Default::default()
    });
    crate::fair_share::round_robin(
        requests,
        |r| owners.get(&r.template).copied(),
        |r| r.requested_at_ms,
    )
}

async fn refill_with_retry(
    refiller: Refiller,
    dead_letters: DeadLetters,
    attempts: u32,
    request: Request,
) -> bool {
    let template = request.template;
    // The refill joins the trace of a request that asked for it.
    let span = tracing::info_span!(
        "refill",
        otel.name = "warm-up refill",
        otel.kind = "consumer",
        template = %template,
        reason = request.reason,
        trace_id = tracing::field::Empty,
    );
    prewarm_service_kit::telemetry::extract(&span, &request.trace);
    prewarm_service_kit::telemetry::record_trace_id(&span);
    refill_traced(refiller, dead_letters, attempts, request)
        .instrument(span)
        .await
}

async fn refill_traced(
    refiller: Refiller,
    dead_letters: DeadLetters,
    attempts: u32,
    request: Request,
) -> bool {
    let template = request.template;
    let metrics = refiller.metrics.clone();
    let mut delay = Duration::from_millis(200);
    for attempt in 1..=attempts {
        match refiller.refill_for(template, request.in_demand).await {
            Ok(outcome) => {
                let label = match outcome {
                    Outcome::TemplateGone => "gone",
                    Outcome::Stopped => "stopped",
                    Outcome::Refilled { ready, .. } => {
                        tracing::debug!(%template, ready, "pool refilled");
                        "ok"
                    }
                };
                metrics.refills.with_label_values(&[label]).inc();
                // Only a refill that made items ready measures the lag to a
                // ready item: one that found nothing to copy (a pool
                // between its fill and hold levels, a duplicate ask) would
                // pull the refill-time estimate, and so the sizes, down.
                let copied = matches!(outcome, Outcome::Refilled { ready, .. } if ready > 0);
                let lag_ms = chrono::Utc::now().timestamp_millis() - request.requested_at_ms;
                if copied && request.requested_at_ms > 0 && lag_ms >= 0 {
                    refiller.estimates.observe_lag(lag_ms as f64 / 1000.0);
                    metrics
                        .refill_lag
                        .with_label_values(&[request.reason])
                        .observe(lag_ms as f64 / 1000.0);
                }
                return true;
            }
            // A stopping worker retries nothing: the reconciler of the next
            // one tops the pool up.
            Err(e) if refiller.stopping.is_cancelled() => {
                metrics.refills.with_label_values(&["failed"]).inc();
                tracing::warn!(%template, error = %Chain(&e), "refill failed while stopping; left to the reconciler");
                return false;
            }
            Err(e) if attempt < attempts => {
                metrics.refills.with_label_values(&["failed"]).inc();
                tracing::warn!(%template, attempt, error = %Chain(&e), "refill failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => {
                metrics.refills.with_label_values(&["dead_lettered"]).inc();
                tracing::error!(%template, attempts, error = %Chain(&e), "refill failed; dead-lettered");
                // A refill is for whatever version is current: none is
                // named (proto3's unset 0).
                let request = WarmupRequest {
                    template_id: template.to_string(),
                    template_version: 0,
                    reason: shared_domain::warmup::Reason::Unspecified as i32,
                    requested_at_ms: chrono::Utc::now().timestamp_millis(),
                };
                let reason = Chain(&e).to_string();
                if let Err(dl) = dead_letters
                    .publisher
                    .dead_letter(&dead_letters.topic, &request, &reason, attempts)
                    .await
                {
                    tracing::error!(%template, error = %Chain(&dl), "could not dead-letter a failed refill");
                }
            }
        }
    }
    false
}

/// The consumer's context: librdkafka's statistics (every
/// `statistics.interval.ms`) feed the consumer-lag gauge.
pub struct WorkerContext {
    pub metrics: std::sync::Arc<WorkerMetrics>,
}

impl rdkafka::client::ClientContext for WorkerContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        for topic in statistics.topics.values() {
            for (partition, p) in &topic.partitions {
                // -1 is librdkafka's "unknown" (no committed offset yet), and the
                // internal UA partition is not a real one.
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.metrics
                        .consumer_lag
                        .with_label_values(&[&partition.to_string()])
                        .set(p.consumer_lag);
                }
            }
        }
    }
}

impl rdkafka::consumer::ConsumerContext for WorkerContext {}
