//! Warm-up requests, coalesced per template version.
//!
//! Every warm design asks the worker to top its template's pool up, but a
//! refill fills the gap the ledger shows whatever the number of asks, so the
//! asks for one template version within `serving.warmup_coalesce_ms` travel as
//! one Kafka message (the first ask's reason, time and trace). A popular
//! template popped a thousand times a second costs a few messages a second,
//! not a thousand produces, broker writes and consumer records.
//!
//! Nothing on the request path waits: an ask is a map insert. A task sends
//! what is pending once the window has passed since the first ask (no timer
//! runs while nothing is pending), and [`WarmupRequests::send_pending`] sends
//! the rest at shutdown. Asks lost in a crash within a window are healed by
//! the reconciler, as lost Kafka messages are. A window of 0 sends one
//! message per ask.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prewarm_store::warmup_topic::WarmupPublisher;
use shared_domain::pool::PoolKey;
use shared_domain::warmup::{Reason, WarmupRequest};
use tokio::sync::Notify;

/// The first ask of a window, with the trace it was made in.
struct Pending {
    request: WarmupRequest,
    trace: Vec<(String, String)>,
}

pub struct WarmupRequests {
    publisher: WarmupPublisher,
    window: Duration,
    pending: Mutex<HashMap<PoolKey, Pending>>,
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
            pending: Mutex::new(HashMap::new()),
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
        let Ok(mut pending) = self.pending.lock() else {
            // Poisoned only if a holder panicked; send at once instead.
            self.publisher.publish(&request);
            return;
        };
        let first = pending.is_empty();
        match pending.entry(pool) {
            std::collections::hash_map::Entry::Occupied(_) => self.publisher.count_coalesced(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(Pending {
                    request,
                    trace: prewarm_service_kit::telemetry::inject(),
                });
            }
        }
        drop(pending);
        if first {
            self.first_ask.notify_one();
        }
    }

    /// Sends every pending request now (the task, and shutdown).
    pub fn send_pending(&self) {
        let taken = match self.pending.lock() {
            Ok(mut pending) => std::mem::take(&mut *pending),
            Err(_) => return,
        };
        for (_, Pending { request, trace }) in taken {
            self.publisher.publish_traced(&request, trace);
        }
    }

    async fn send_each_window(self: Arc<Self>) {
        loop {
            // A permit stored by an ask made while this task slept is taken
            // at once: no first ask is missed.
            self.first_ask.notified().await;
            tokio::time::sleep(self.window).await;
            self.send_pending();
        }
    }
}
