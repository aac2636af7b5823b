//! The refill slots every batch in flight shares (`worker.refill_parallelism`)
//! and the refills waiting for one.
//!
//! A template has at most one refill waiting at a time: a later batch's
//! request for it joins the one already waiting (its `in_demand` is kept),
//! so a popular template asked for in every batch costs one refill per slot
//! it gets, not one per batch. The earlier batch's offsets are stored before
//! the later one's (`consumer::run`), so the joined message is covered.
//! Once a refill has its slot it leaves the queue: a request arriving while
//! it copies queues a refill of its own, which fills what was popped after
//! the running one reserved.
//!
//! The consumer takes no more messages while [`RefillQueue::has_room`] is
//! false (`refill_parallelism x WAITING_PER_SLOT` refills waiting): a
//! backlog stays in Kafka, where the next batches coalesce it, start it
//! round-robin over companies and show it as consumer lag, instead of
//! queueing first come first served here behind one company's flood.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use shared_domain::ids::TemplateId;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Refills that may wait for each slot before the consumer stops taking
/// messages.
pub const WAITING_PER_SLOT: usize = 4;

pub struct RefillQueue {
    slots: Arc<Semaphore>,
    /// Templates whose refill waits for a slot, with whether a design asked.
    waiting: Mutex<HashMap<TemplateId, bool>>,
    most_waiting: usize,
    /// Told each time a refill leaves the queue.
    left: Notify,
}

impl RefillQueue {
    pub fn new(parallelism: usize) -> Arc<Self> {
        let parallelism = parallelism.max(1);
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(parallelism)),
            waiting: Mutex::new(HashMap::new()),
            most_waiting: parallelism * WAITING_PER_SLOT,
            left: Notify::new(),
        })
    }

    fn waiting(&self) -> MutexGuard<'_, HashMap<TemplateId, bool>> {
        // Nothing is left half-done under the lock: a poisoned map is whole.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a refill of `template`, or joins the one waiting: true when
    /// the caller is to run it ([`RefillQueue::slot`]).
    pub fn enqueue(&self, template: TemplateId, in_demand: bool) -> bool {
        let mut waiting = self.waiting();
        match waiting.get_mut(&template) {
            Some(asked) => {
                *asked |= in_demand;
                false
            }
            None => {
                waiting.insert(template, in_demand);
                true
            }
        }
    }

    /// Waits for a slot until `deadline` (none past it, even a free one).
    /// The template leaves the queue either way, also if this future is
    /// dropped: the slot, and whether any request it stood for was a
    /// design's.
    pub async fn slot(
        &self,
        template: TemplateId,
        deadline: Instant,
    ) -> Option<(OwnedSemaphorePermit, bool)> {
        let mut leave = Leave {
            queue: self,
            template,
            left: false,
        };
        let permit = match Instant::now() < deadline {
            true => tokio::time::timeout_at(deadline, self.slots.clone().acquire_owned())
                .await
                .ok()
                .and_then(Result::ok),
            false => None,
        };
        let in_demand = leave.leave();
        permit.map(|p| (p, in_demand))
    }

    /// Fewer refills wait than the consumer may queue.
    pub fn has_room(&self) -> bool {
        self.waiting().len() < self.most_waiting
    }

    /// Resolves when a refill leaves the queue (or has left since the last
    /// call).
    pub async fn room(&self) {
        self.left.notified().await
    }
}

/// Takes a template out of the queue once, when its wait ends or is dropped.
struct Leave<'a> {
    queue: &'a RefillQueue,
    template: TemplateId,
    left: bool,
}

impl Leave<'_> {
    fn leave(&mut self) -> bool {
        self.left = true;
        let in_demand = self.queue.waiting().remove(&self.template).unwrap_or(false);
        self.queue.left.notify_one();
        in_demand
    }
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        if !self.left {
            self.leave();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_later_request_joins_the_waiting_refill_and_keeps_its_demand() {
        let queue = RefillQueue::new(1);
        let (busy, t) = (TemplateId::new(), TemplateId::new());
        let far = Instant::now() + Duration::from_secs(5);
        assert!(queue.enqueue(busy, false));
        let (held, _) = queue.slot(busy, far).await.expect("a free slot");
        assert!(queue.enqueue(t, false));
        assert!(!queue.enqueue(t, true), "a second refill of t was queued");
        let waiter = {
            let queue = queue.clone();
            tokio::spawn(async move { queue.slot(t, far).await.map(|(_, asked)| asked) })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!queue.enqueue(t, false), "t left the queue before its slot");
        drop(held);
        assert_eq!(waiter.await.unwrap(), Some(true));
        // Once it has its slot, the next request queues a refill of its own.
        assert!(queue.enqueue(t, false));
    }

    #[tokio::test]
    async fn past_the_deadline_no_slot_is_given_and_the_template_leaves() {
        let queue = RefillQueue::new(1);
        let t = TemplateId::new();
        assert!(queue.enqueue(t, true));
        assert!(queue.slot(t, Instant::now()).await.is_none());
        assert!(
            queue.enqueue(t, false),
            "t stayed queued after its deadline"
        );
    }

    #[tokio::test]
    async fn a_dropped_wait_leaves_the_queue_and_frees_room() {
        let queue = RefillQueue::new(1);
        let far = Instant::now() + Duration::from_secs(5);
        let busy = TemplateId::new();
        assert!(queue.enqueue(busy, false));
        let _held = queue.slot(busy, far).await.expect("a free slot");
        let ts: Vec<TemplateId> = (0..WAITING_PER_SLOT).map(|_| TemplateId::new()).collect();
        for t in &ts {
            assert!(queue.enqueue(*t, false));
        }
        assert!(!queue.has_room());
        let wait = queue.slot(ts[0], far);
        let timed_out = tokio::time::timeout(Duration::from_millis(20), wait).await;
        assert!(timed_out.is_err());
        assert!(queue.has_room(), "a dropped wait kept its place");
        tokio::time::timeout(Duration::from_secs(1), queue.room())
            .await
            .expect("room was not told");
    }
}
