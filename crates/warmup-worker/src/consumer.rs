//! The Kafka loop: take a batch of warm-up requests (the messages of
//! `worker.batch_window_ms`), coalesce them per template and refill each
//! template once, on a task of the batch's own; then store the batch's
//! offsets (committed by librdkafka's auto-commit).
//!
//! Batches overlap: the loop keeps taking messages while earlier batches
//! copy, and their refills share `worker.refill_parallelism` slots
//! ([`crate::refill_queue`]), so a request waits for a free slot, never for
//! the slowest refill of the batch before it. A template has at most one
//! refill waiting for a slot (another batch's request joins it and waits
//! until it has run); one refilling while another batch asks again is
//! refilled again, and the ledger's reservation (under the template's
//! advisory lock) gives the second only what the first left of the gap.
//! Past a bound on waiting refills the loop takes no more messages, so a
//! backlog stays in Kafka.
//!
//! Offsets are stored in the order the batches were taken, each only after
//! its refills and every earlier batch's finished, so a crash replays what
//! was not done -- harmless, since a refill only fills the gap the ledger
//! shows. From the first batch that ended while the worker was stopping,
//! none is stored: its refills may have been skipped, and the next
//! consumer replays them.

use shared_domain::error::Chain;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesOrdered, StreamExt};
use prewarm_store::warmup_topic::WarmupPublisher;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use shared_domain::ids::TemplateId;
use shared_domain::warmup::Reason;
use shared_domain::warmup::WarmupRequest;
use tracing::Instrument;

use crate::metrics::WorkerMetrics;
use crate::refill::{Outcome, Refiller};
use crate::refill_queue::{self, RefillQueue, Taken};
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

/// Messages taken together: requests for one template in a batch are
/// coalesced into one refill.
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
    /// Templates refilled by a refill another batch had waiting.
    pub joined: usize,
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

/// Most batches whose refills run at once. Past it (or past the waiting
/// refills' bound) the loop waits before it takes more messages, which
/// bounds what a stalled store holds in memory (this many batches of at
/// most `worker.batch_max` messages); every batch ends within its budget
/// plus one refill, so the poll is never held longer than a batch of the
/// sequential loop held it.
pub const BATCHES_IN_FLIGHT: usize = 64;

pub async fn run(
    consumer: ClosingConsumer,
    refiller: Refiller,
    dead_letters: DeadLetters,
    settings: WorkerSettings,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let closing = consumer;
    let consumer: &StreamConsumer<WorkerContext> = &closing;
    let work = Work {
        refiller,
        dead_letters,
        settings: settings.clone(),
        queue: RefillQueue::new(settings.refill_parallelism),
    };
    // Batches in the order they were taken: each yields its messages'
    // positions once its refills are done, so an offset is stored only
    // after its message and every earlier one were handled.
    let mut in_flight = FuturesOrdered::new();
    let mut building: Batch = Vec::new();
    let mut window = None;
    // After a failed receive: when to try again.
    let mut retry_at = None;
    let mut storing = true;
    let mut done = |consumer: &StreamConsumer<WorkerContext>, batch: Done| {
        // Once a batch ended while stopping, later ones are not stored
        // either: an offset stored past it would commit its messages.
        storing &= !batch.stopping;
        if storing {
            store_offsets(consumer, batch.positions);
        }
    };
    tokio::pin!(shutdown);
    loop {
        let room = work.queue.has_room();
        let taking = in_flight.len() < BATCHES_IN_FLIGHT && room && retry_at.is_none();
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some(batch) = in_flight.next(), if !in_flight.is_empty() => done(consumer, batch),
            _ = sleep_until_or_never(window), if window.is_some() => {
                in_flight.push_back(work.start(std::mem::take(&mut building)));
                window = None;
            }
            _ = work.queue.room(), if !room => {}
            _ = sleep_until_or_never(retry_at), if retry_at.is_some() => retry_at = None,
            received = recv(consumer), if taking => match received {
                Ok(message) => {
                    if building.is_empty() {
                        window = Some(tokio::time::Instant::now() + settings.batch_window());
                    }
                    building.push(message);
                    if building.len() >= settings.batch_max {
                        in_flight.push_back(work.start(std::mem::take(&mut building)));
                        window = None;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %Chain(&e), "kafka receive failed; retrying");
                    retry_at = Some(tokio::time::Instant::now() + Duration::from_millis(500));
                }
            },
        }
    }
    // Graceful stop: the batches started are finished (a stopping refiller
    // starts nothing new); the offsets of those that ended before the stop
    // are committed. The messages of the batch still filling, and of every
    // batch that ended while stopping, are left to the next consumer.
    while let Some(batch) = in_flight.next().await {
        done(consumer, batch);
    }
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        tracing::debug!(error = %Chain(&e), "final commit (nothing stored, or broker gone)");
    }
    Ok(())
}

async fn sleep_until_or_never(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn store_offsets(consumer: &StreamConsumer<WorkerContext>, positions: Vec<Position>) {
    for pos in &positions {
        if let Err(e) = consumer.store_offset(&pos.topic, pos.partition, pos.offset) {
            tracing::warn!(error = %Chain(&e), "could not store offset");
        }
    }
}

/// What every batch's task needs, shared by all of them.
#[derive(Clone)]
struct Work {
    refiller: Refiller,
    dead_letters: DeadLetters,
    settings: WorkerSettings,
    queue: Arc<RefillQueue>,
}

/// A batch whose refills are done.
struct Done {
    positions: Vec<Position>,
    /// It ended after the worker began to stop.
    stopping: bool,
}

impl Work {
    /// Starts a batch's refills on a task of its own; the future yields the
    /// batch's positions when they are done.
    fn start(&self, batch: Batch) -> impl Future<Output = Done> + Send + 'static {
        let (requests, positions): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let work = self.clone();
        let taken = self.queue.taken(requests.len());
        let task = tokio::spawn(async move {
            let report = process_batch(&work, requests, taken).await;
            tracing::debug!(?report, "batch done");
        });
        let stopping = self.refiller.stopping.clone();
        async move {
            if let Err(e) = task.await {
                // Its messages are hints: the reconciler tops the pools up.
                tracing::error!(error = %e, "a batch's task failed; its offsets are stored anyway");
            }
            Done {
                positions,
                stopping: stopping.is_cancelled(),
            }
        }
    }
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
async fn process_batch(work: &Work, batch: Vec<Option<Request>>, taken: Taken) -> BatchReport {
    let Work {
        refiller,
        dead_letters,
        settings,
        queue,
    } = work;
    // Coalesced per template; the oldest request of each measures the lag.
    let mut templates: BTreeMap<TemplateId, Request> = BTreeMap::new();
    // The refill joins the trace of the oldest request that carried one.
    for r in batch.iter().flatten().cloned() {
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
    let invalid = batch.iter().filter(|r| r.is_none()).count();
    if invalid > 0 {
        tracing::warn!(invalid, "skipped undecodable warm-up messages");
    }
    // Past the batch budget no refill starts: a batch must end, or the
    // loop, which takes no more batches than `BATCHES_IN_FLIGHT`, could stop
    // polling past `max.poll.interval.ms`. Skipped templates are not lost
    // (the messages are hints): the reconciler tops every pool up. The
    // budget counts from here, the owners' read included.
    let deadline = tokio::time::Instant::now() + settings.batch_budget();
    let requests = fair_order(refiller, templates.into_values().collect()).await;
    // Queued in fair order (a template already waiting is joined), then no
    // longer counted as messages taken.
    let tickets: Vec<_> = requests
        .into_iter()
        .map(|r| (queue.enqueue(r.template, r.in_demand), r))
        .collect();
    drop(taken);
    let attempts = settings.refill_attempts;
    let refills: Vec<_> = tickets
        .into_iter()
        .map(|(ticket, mut r)| {
            let (refiller, dead_letters) = (refiller.clone(), dead_letters.clone());
            async move {
                match ticket.wait(deadline).await {
                    refill_queue::Outcome::Run(turn) => {
                        r.in_demand = turn.in_demand;
                        let ok = refill_with_retry(refiller, dead_letters, attempts, r).await;
                        // Joiners are told it ran once it has.
                        drop(turn);
                        Ended::Refilled { ok }
                    }
                    refill_queue::Outcome::Covered => Ended::Joined,
                    refill_queue::Outcome::Deferred => {
                        refiller
                            .metrics
                            .refills
                            .with_label_values(&["deferred"])
                            .inc();
                        Ended::Deferred
                    }
                }
            }
        })
        .collect();
    // All of them wait for slots at once, queued in this order behind the
    // earlier batches' (the semaphore is first come first served).
    let results: Vec<Ended> = futures::future::join_all(refills).await;
    let count = |e: Ended| results.iter().filter(|r| **r == e).count();
    let failed = count(Ended::Refilled { ok: false });
    let deferred = count(Ended::Deferred);
    if deferred > 0 {
        tracing::warn!(
            deferred,
            "batch budget spent; refills left to the reconciler"
        );
    }
    BatchReport {
        messages: batch.len(),
        templates: results.len(),
        joined: count(Ended::Joined),
        invalid,
        failed_refills: failed,
        deferred_refills: deferred,
    }
}

/// How one template's request in a batch ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ended {
    Refilled {
        ok: bool,
    },
    /// Refilled by the refill another batch had waiting.
    Joined,
    /// Its batch's budget ran out before it got a slot.
    Deferred,
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
