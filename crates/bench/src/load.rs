//! Load generators recording latency into HdrHistograms (microseconds).
//!
//! - [`closed_loop`]: N clients, each sending its next request when the last
//!   one answered -- measures throughput and latency under queueing.
//! - [`open_loop`]: requests scheduled at a constant rate regardless of how
//!   fast answers come; latency runs from the *scheduled* send time, so a
//!   stall is charged to every request it delayed (no coordinated omission).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// What one request did.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub ok: bool,
    /// Served from the pool (for design requests).
    pub warm: bool,
}

/// The result of one run.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub hist: Histogram<u64>,
    pub ok: u64,
    pub errors: u64,
    pub warm: u64,
    pub elapsed: Duration,
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

impl RunResult {
    pub fn empty() -> Self {
        Self {
            hist: histogram(),
            ok: 0,
            errors: 0,
            warm: 0,
            elapsed: Duration::ZERO,
        }
    }

    fn record(&mut self, latency: Duration, outcome: Outcome) {
        let us = (latency.as_micros() as u64).clamp(1, 600_000_000);
        // Saturated above 10 min, which no run here reaches.
        let _ = self.hist.record(us);
        if outcome.ok {
            self.ok += 1;
            if outcome.warm {
                self.warm += 1;
            }
        } else {
            self.errors += 1;
        }
    }

    fn merge(&mut self, other: &RunResult) {
        let _ = self.hist.add(&other.hist);
        self.ok += other.ok;
        self.errors += other.errors;
        self.warm += other.warm;
    }

    /// Adds `other`'s requests and time to this run's: a run made of chunks.
    pub fn append(&mut self, other: &RunResult) {
        self.merge(other);
        self.elapsed += other.elapsed;
    }

    /// Latency at quantile `q` (0..1), milliseconds.
    pub fn ms(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn count(&self) -> u64 {
        self.ok + self.errors
    }

    pub fn throughput(&self) -> f64 {
        self.count() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Share of successful requests served from the pool.
    pub fn warm_share(&self) -> f64 {
        if self.ok == 0 {
            0.0
        } else {
            self.warm as f64 / self.ok as f64
        }
    }
}

/// `clients` concurrent loops sharing `total` requests.
pub async fn closed_loop<F, Fut>(clients: usize, total: usize, op: F) -> RunResult
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let op = op.clone();
            let next = next.clone();
            tokio::spawn(async move {
                let mut result = RunResult::empty();
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    let t0 = Instant::now();
                    let outcome = op().await;
                    result.record(t0.elapsed(), outcome);
                }
                result
            })
        })
        .collect();
    let mut total_result = RunResult::empty();
    for t in tasks {
        if let Ok(r) = t.await {
            total_result.merge(&r);
        }
    }
    total_result.elapsed = started.elapsed();
    total_result
}

/// `rate` requests per second for `duration`, each timed from its scheduled start.
pub async fn open_loop<F, Fut>(rate: f64, duration: Duration, op: F) -> RunResult
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let op = Arc::new(op);
    let n = (rate * duration.as_secs_f64()).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(n as usize);
    for i in 0..n {
        let scheduled = start + interval.mul_f64(i as f64);
        dispatch_at(scheduled).await;
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let outcome = op().await;
            (scheduled.elapsed(), outcome)
        }));
    }
    let mut result = RunResult::empty();
    for t in tasks {
        if let Ok((latency, outcome)) = t.await {
            result.record(latency, outcome);
        }
    }
    result.elapsed = start.elapsed();
    result
}

/// Waits until `at`, to within microseconds. Tokio's timer has millisecond
/// ticks and fires up to a tick late; an open loop charges that lateness to
/// the request (latency runs from the intended send time), which at a low
/// rate added up to a millisecond to every request of the system under test.
/// So: sleep until 2 ms before, then yield until the instant passes (at most
/// 2 ms of a core per request, a few percent of one at 20 requests/s).
async fn dispatch_at(at: tokio::time::Instant) {
    let early = at.checked_sub(Duration::from_millis(2)).unwrap_or(at);
    tokio::time::sleep_until(early).await;
    while tokio::time::Instant::now() < at {
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn closed_loop_runs_exactly_total_requests() {
        let r = closed_loop(4, 100, || async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Outcome {
                ok: true,
                warm: true,
            }
        })
        .await;
        assert_eq!(r.count(), 100);
        assert_eq!(r.warm_share(), 1.0);
        assert!(r.ms(0.5) >= 1.0);
    }

    #[tokio::test]
    async fn open_loop_charges_a_stall_to_every_request_it_delays() {
        // One slow request at the start of a single-connection pipeline is
        // invisible in a closed loop but not here: requests are timed from
        // their schedule, so the ones queued behind the stall show it.
        let gate = Arc::new(tokio::sync::Mutex::new(()));
        let first = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let r = open_loop(200.0, Duration::from_millis(250), move || {
            let gate = gate.clone();
            let first = first.clone();
            async move {
                let _serial = gate.lock().await;
                if first.swap(false, Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Outcome {
                    ok: true,
                    warm: false,
                }
            }
        })
        .await;
        assert_eq!(r.count(), 50);
        // About 20 requests were scheduled during the 100 ms stall; those in
        // its first 80 ms waited over 20 ms. A closed loop would show one.
        let delayed = r.hist.count_between(20_000, u64::MAX);
        assert!(
            delayed >= 10,
            "only {delayed} requests charged with the stall"
        );
        assert!(r.ms(0.9) > 40.0, "p90 {} ms", r.ms(0.9));
    }
}
