//! The refill slots every batch in flight shares (`worker.refill_parallelism`)
//! and the refills waiting for one.
//!
//! A template has at most one refill waiting at a time: another batch's
//! request for it joins the one waiting (its `in_demand` is kept) and waits
//! until that refill has run, so its batch's offsets are stored only after
//! it -- whichever batch came first. If the refill it joined never runs (its
//! batch's budget ran out, or its task died), the joiner queues again with
//! its own budget. A popular template asked for in every batch costs one
//! refill per slot it gets, not one per batch. Once a refill has its slot
//! it leaves the queue: a request arriving while it copies queues a refill
//! of its own, which fills what was popped after the running one reserved.
//!
//! The consumer takes no more messages while [`RefillQueue::has_room`] is
//! false: `refill_parallelism x WAITING_PER_SLOT` refills waiting or about
//! to (a batch's messages count from the moment it is taken until its
//! templates are queued). A backlog then stays in Kafka, where the next
//! batches coalesce it, start it round-robin over companies and show it as
//! consumer lag, instead of queueing first come first served here behind
//! one company's flood.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use shared_domain::ids::TemplateId;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Refills that may wait for each slot before the consumer stops taking
/// messages.
pub const WAITING_PER_SLOT: usize = 4;

/// How a waiting refill ended, as its joiners see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ran {
    /// Still waiting or refilling.
    NotYet,
    /// It got its slot and finished (refilled, or failed after its retries).
    Yes,
    /// It never started.
    No,
}

struct Waiting {
    /// A design asked, in this request or a joined one.
    in_demand: bool,
    ran: Arc<watch::Sender<Ran>>,
}

pub struct RefillQueue {
    slots: Arc<Semaphore>,
    waiting: Mutex<HashMap<TemplateId, Waiting>>,
    /// Messages of batches taken whose templates are not queued yet.
    pending: AtomicUsize,
    most_waiting: usize,
    /// Told each time a refill leaves the queue or a batch's templates
    /// are queued.
    left: Notify,
}

/// A refill this caller runs: its slot and whether a design asked. Joiners
/// are told it ran when this is dropped (after the refill).
pub struct Turn {
    _slot: OwnedSemaphorePermit,
    pub in_demand: bool,
    ran: Arc<watch::Sender<Ran>>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        // A refill that panicked did not run to its end: joiners queue again.
        let ran = match std::thread::panicking() {
            true => Ran::No,
            false => Ran::Yes,
        };
        self.ran.send_replace(ran);
    }
}

/// What [`Ticket::wait`] gives a request.
pub enum Outcome {
    /// Its refill runs now; drop the turn when it is done.
    Run(Turn),
    /// A refill it joined ran meanwhile.
    Covered,
    /// No slot within its deadline.
    Deferred,
}

impl RefillQueue {
    pub fn new(parallelism: usize) -> Arc<Self> {
        let parallelism = parallelism.max(1);
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(parallelism)),
            waiting: Mutex::new(HashMap::new()),
            pending: AtomicUsize::new(0),
            most_waiting: parallelism * WAITING_PER_SLOT,
            left: Notify::new(),
        })
    }

    fn waiting(&self) -> MutexGuard<'_, HashMap<TemplateId, Waiting>> {
        // Nothing is left half-done under the lock: a poisoned map is whole.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts `messages` of a batch just taken against the room until the
    /// returned guard is dropped (once its templates are queued).
    pub fn taken(self: &Arc<Self>, messages: usize) -> Taken {
        self.pending.fetch_add(messages, Ordering::AcqRel);
        Taken {
            queue: self.clone(),
            messages,
        }
    }

    /// Queues a refill of `template`, or joins the one waiting; the ticket
    /// says when it has run ([`Ticket::wait`]).
    pub fn enqueue(self: &Arc<Self>, template: TemplateId, in_demand: bool) -> Ticket {
        let mut waiting = self.waiting();
        let place = match waiting.get_mut(&template) {
            Some(w) => {
                w.in_demand |= in_demand;
                Place::Joined(w.ran.subscribe())
            }
            None => {
                waiting.insert(
                    template,
                    Waiting {
                        in_demand,
                        ran: Arc::new(watch::channel(Ran::NotYet).0),
                    },
                );
                Place::Own(Leave {
                    queue: self.clone(),
                    template,
                    left: false,
                })
            }
        };
        Ticket {
            queue: self.clone(),
            template,
            in_demand,
            place,
        }
    }

    /// Fewer refills wait, or are about to, than the consumer may queue.
    pub fn has_room(&self) -> bool {
        self.waiting().len() + self.pending.load(Ordering::Acquire) < self.most_waiting
    }

    /// Resolves when a refill leaves the queue or a batch's templates are
    /// queued (or did since the last call).
    pub async fn room(&self) {
        self.left.notified().await
    }
}

/// A batch's messages counted against the room until it is dropped.
pub struct Taken {
    queue: Arc<RefillQueue>,
    messages: usize,
}

impl Drop for Taken {
    fn drop(&mut self) {
        self.queue
            .pending
            .fetch_sub(self.messages, Ordering::AcqRel);
        self.queue.left.notify_one();
    }
}

/// A queued refill: its own waiting entry, or the one it joined.
pub struct Ticket {
    queue: Arc<RefillQueue>,
    template: TemplateId,
    in_demand: bool,
    place: Place,
}

enum Place {
    Own(Leave),
    Joined(watch::Receiver<Ran>),
}

impl Ticket {
    /// Waits until the template has been refilled by this ticket's turn or
    /// by the refill it joined, or until `deadline` passes without a slot
    /// (none is taken past it, even a free one). A ticket whose joined
    /// refill never ran queues again.
    pub async fn wait(self, deadline: Instant) -> Outcome {
        let Ticket {
            queue,
            template,
            in_demand,
            mut place,
        } = self;
        loop {
            match place {
                Place::Own(mut leave) => {
                    let slot = match Instant::now() < deadline {
                        true => {
                            tokio::time::timeout_at(deadline, queue.slots.clone().acquire_owned())
                                .await
                                .ok()
                                .and_then(Result::ok)
                        }
                        false => None,
                    };
                    return match (slot, leave.leave()) {
                        (Some(slot), Some(w)) => Outcome::Run(Turn {
                            _slot: slot,
                            in_demand: w.in_demand,
                            ran: w.ran,
                        }),
                        (_, entry) => {
                            if let Some(w) = entry {
                                w.ran.send_replace(Ran::No);
                            }
                            Outcome::Deferred
                        }
                    };
                }
                Place::Joined(mut ran) => {
                    // A sender dropped unsent (its task died) never ran.
                    let ended = ran.wait_for(|r| *r != Ran::NotYet).await.map(|r| *r);
                    if matches!(ended, Ok(Ran::Yes)) {
                        return Outcome::Covered;
                    }
                    place = queue.enqueue(template, in_demand).place;
                }
            }
        }
    }
}

/// Takes a template out of the queue once, when its wait ends or is
/// dropped; joiners of a wait that was dropped are told it never ran.
struct Leave {
    queue: Arc<RefillQueue>,
    template: TemplateId,
    left: bool,
}

impl Leave {
    fn leave(&mut self) -> Option<Waiting> {
        self.left = true;
        let entry = self.queue.waiting().remove(&self.template);
        self.queue.left.notify_one();
        entry
    }
}

impl Drop for Leave {
    fn drop(&mut self) {
        if !self.left {
            if let Some(w) = self.leave() {
                w.ran.send_replace(Ran::No);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    fn owns(ticket: &Ticket) -> bool {
        matches!(ticket.place, Place::Own(_))
    }

    async fn run(ticket: Ticket, deadline: Instant) -> Turn {
        match ticket.wait(deadline).await {
            Outcome::Run(turn) => turn,
            _ => panic!("no turn"),
        }
    }

    /// The slot of a queue of one, held by another template's refill.
    async fn hold_the_slot(queue: &Arc<RefillQueue>) -> Turn {
        run(queue.enqueue(TemplateId::new(), false), far()).await
    }

    /// A queue of one whose slot another template's refill holds, and two
    /// requests for one template: the first queued, the second joining it.
    async fn two_requests_behind_a_busy_slot(
    ) -> (Arc<RefillQueue>, Turn, TemplateId, Ticket, Ticket) {
        let queue = RefillQueue::new(1);
        let busy = hold_the_slot(&queue).await;
        let t = TemplateId::new();
        let first = queue.enqueue(t, false);
        let second = queue.enqueue(t, true);
        (queue, busy, t, first, second)
    }

    async fn still_waiting<T>(task: &tokio::task::JoinHandle<T>) -> bool {
        tokio::time::sleep(Duration::from_millis(50)).await;
        !task.is_finished()
    }

    #[tokio::test]
    async fn a_later_request_joins_the_waiting_refill_and_waits_until_it_ran() {
        let (queue, busy, t, first, second) = two_requests_behind_a_busy_slot().await;
        assert!(owns(&first));
        assert!(!owns(&second), "a second refill of t was queued");
        let first = tokio::spawn(async move { run(first, far()).await });
        let second = tokio::spawn(second.wait(far()));
        drop(busy);
        let turn = first.await.unwrap();
        assert!(turn.in_demand, "the joined request's demand was lost");
        // Once it has its slot, a new request queues a refill of its own...
        assert!(owns(&queue.enqueue(t, false)));
        // ...and the joined one is covered only when the refill has run.
        assert!(
            still_waiting(&second).await,
            "covered before the refill ran"
        );
        drop(turn);
        assert!(matches!(second.await.unwrap(), Outcome::Covered));
    }

    #[tokio::test]
    async fn a_request_whose_joined_refill_never_ran_queues_again() {
        let (_queue, busy, _, first, second) = two_requests_behind_a_busy_slot().await;
        let second = tokio::spawn(async move { run(second, far()).await });
        // The first one's budget is spent before it gets a slot.
        assert!(matches!(
            first.wait(Instant::now()).await,
            Outcome::Deferred
        ));
        assert!(still_waiting(&second).await);
        drop(busy);
        let turn = second.await.unwrap();
        assert!(turn.in_demand);
    }

    #[tokio::test]
    async fn past_the_deadline_no_slot_is_given_and_the_template_leaves() {
        let queue = RefillQueue::new(1);
        let t = TemplateId::new();
        let ticket = queue.enqueue(t, true);
        assert!(matches!(
            ticket.wait(Instant::now()).await,
            Outcome::Deferred
        ));
        assert!(owns(&queue.enqueue(t, false)), "t stayed queued");
    }

    #[tokio::test]
    async fn a_dropped_wait_leaves_the_queue_and_frees_room() {
        let queue = RefillQueue::new(1);
        let _busy = hold_the_slot(&queue).await;
        let tickets: Vec<Ticket> = (0..WAITING_PER_SLOT)
            .map(|_| queue.enqueue(TemplateId::new(), false))
            .collect();
        assert!(!queue.has_room());
        let first = tickets.into_iter().next().unwrap();
        let timed_out = tokio::time::timeout(Duration::from_millis(20), first.wait(far())).await;
        assert!(timed_out.is_err());
        assert!(queue.has_room(), "a dropped wait kept its place");
        tokio::time::timeout(Duration::from_secs(1), queue.room())
            .await
            .expect("room was not told");
    }

    #[tokio::test]
    async fn a_batch_taken_counts_against_the_room_until_its_templates_are_queued() {
        let queue = RefillQueue::new(1);
        let taken = queue.taken(WAITING_PER_SLOT);
        assert!(!queue.has_room(), "a batch's messages were not counted");
        drop(taken);
        assert!(queue.has_room());
    }
}
