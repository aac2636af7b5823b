//! Warm-up requests, coalesced per template version.
//!
//! Every warm design asks the worker to top its template's pool up, but a
//! refill fills the gap the ledger shows whatever the number of asks, so a
//! template version gets about one Kafka message per
//! `serving.warmup_coalesce_ms`. The first ask after a quiet window is sent
//! at once (a template popped now and then gets its refill without waiting
//! for a window: the window is part of the time in which its next design
//! finds the list empty); the asks that follow it travel as one message at
//! the task's next pass, at most a window later (the first of them's
//! reason, time and trace). A popular template popped a thousand times a second costs a
//! message a window, not a thousand produces, broker writes and consumer
//! records.
//!
//! Nothing on the request path waits: an ask is a map insert, or a send
//! into the producer's queue. A task sends what is pending once a window
//! has passed since it started, and forgets the versions quiet for a whole
//! window (no timer runs while the map is empty);
//! [`WarmupRequests::send_pending`] sends the rest at shutdown. Asks lost in
//! a crash within a window are healed by the reconciler, as lost Kafka
//! messages are. A window of 0 sends one message per ask.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prewarm_store::warmup_topic::WarmupPublisher;
use shared_domain::pool::PoolKey;
use shared_domain::warmup::{Reason, WarmupRequest};
use tokio::sync::Notify;

/// The first ask of a window, with the trace it was made in.
struct Pending {
    request: WarmupRequest,
    trace: Vec<(String, String)>,
}

/// One template version within a window of its last message.
struct Recent {
    /// When its last message was sent.
    sent: Instant,
    /// Asks since then, to go as one message when the window ends.
    pending: Option<Pending>,
}

pub struct WarmupRequests {
    publisher: WarmupPublisher,
    window: Duration,
    recent: Mutex<HashMap<PoolKey, Recent>>,
    /// Told when the map goes from empty to not empty.
    first_ask: Notify,
}

impl WarmupRequests {
    /// Coalesces over `window` (zero: none), and starts the task that sends
    /// on `background` (what it holds when that stops goes with
    /// [`WarmupRequests::send_pending`]). Must be called within a tokio
    /// runtime.
    pub fn start(
        publisher: WarmupPublisher,
        window: Duration,
        background: &crate::background::Background,
    ) -> Arc<Self> {
        let requests = Arc::new(Self {
            publisher,
            window,
            recent: Mutex::new(HashMap::new()),
            first_ask: Notify::new(),
        });
        if !window.is_zero() {
            background.until_stopped(Arc::clone(&requests).send_each_window());
        }
        requests
    }

    pub fn publisher(&self) -> &WarmupPublisher {
        &self.publisher
    }

    /// Asks the worker to top `pool` up; never waits for Kafka.
    pub fn ask(&self, pool: PoolKey, reason: Reason) {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let request = WarmupRequest::new(pool, reason, now_ms);
        if self.window.is_zero() {
            self.publisher.publish(&request);
            return;
        }
        let Ok(mut recent) = self.recent.lock() else {
            // Poisoned only if a holder panicked; send at once instead.
            self.publisher.publish(&request);
            return;
        };
        let first = recent.is_empty();
        let now = Instant::now();
        // Taken by a pending slot; what is left is sent now.
        let mut request = Some(request);
        match recent.entry(pool) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(Recent {
                    sent: now,
                    pending: None,
                });
            }
            std::collections::hash_map::Entry::Occupied(mut slot) => {
                let slot = slot.get_mut();
                match &slot.pending {
                    Some(_) => {
                        self.publisher.count_coalesced();
                        request = None;
                    }
                    // Its last message is a window old: the task has not
                    // come by to forget it yet.
                    None if now.duration_since(slot.sent) >= self.window => slot.sent = now,
                    None => {
                        slot.pending = request.take().map(|request| Pending {
                            request,
                            trace: prewarm_service_kit::telemetry::inject(),
                        });
                    }
                }
            }
        }
        drop(recent);
        if let Some(request) = request {
            self.publisher.publish(&request);
        }
        if first {
            self.first_ask.notify_one();
        }
    }

    /// Sends every pending request now (shutdown).
    pub fn send_pending(&self) {
        let taken = match self.recent.lock() {
            Ok(mut recent) => std::mem::take(&mut *recent),
            Err(_) => return,
        };
        for (_, recent) in taken {
            if let Some(Pending { request, trace }) = recent.pending {
                self.publisher.publish_traced(&request, trace);
            }
        }
    }

    /// Once a window: sends what is pending, and forgets the versions that
    /// had nothing to send (their next ask goes at once).
    fn send_window(&self) {
        let mut due = Vec::new();
        if let Ok(mut recent) = self.recent.lock() {
            let now = Instant::now();
            recent.retain(|_, slot| match slot.pending.take() {
                Some(pending) => {
                    due.push(pending);
                    slot.sent = now;
                    true
                }
                None => now.duration_since(slot.sent) < self.window,
            });
        }
        for Pending { request, trace } in due {
            self.publisher.publish_traced(&request, trace);
        }
    }

    fn is_idle(&self) -> bool {
        self.recent.lock().map_or(true, |r| r.is_empty())
    }

    async fn send_each_window(self: Arc<Self>) {
        loop {
            // A permit stored by an ask made while this task slept is taken
            // at once: no first ask is missed.
            if self.is_idle() {
                self.first_ask.notified().await;
            }
            tokio::time::sleep(self.window).await;
            self.send_window();
        }
    }
}
