//! The offline optimum of a warm pool: how many designs of a known trace
//! could have been served warm at all, with the same copy capacity and the
//! same object budget as the worker. The catalogue scenario
//! (`scenarios::catalogue`) compares each sizing strategy with it.
//!
//! # The model
//!
//! Templates `i` hold `images[i]` objects per pool item. Every template
//! starts with one ready item at `t = 0` (the adaptive strategies' idle
//! state, `pool.min` = 1), which the sum of all templates' images must fit
//! in the budget. A request `(t, i)` is warm when a ready item of `i`
//! exists at `t`; it takes the item. An item of `o` images needs `o`
//! copies, each occupying one of `slots` copy slots for `copy_us`
//! (`worker.copy_concurrency` concurrent CopyObject calls of the measured
//! duration), none starting before `t = 0`; the item is ready when its last
//! copy is done. The pooled objects -- ready items' objects plus the copies
//! done for items not yet ready -- never exceed `budget`. Discarding is
//! allowed but never needed below.
//!
//! # The two bounds
//!
//! The optimum (most warm requests) lies between two numbers computed here:
//!
//! - **Lower bound, [`feasible`]**: a schedule that obeys every constraint,
//!   so the optimum is at least its count. Each template's initial item
//!   serves its first request. The other requests are taken latest first
//!   (smaller items first at equal times); each one's copies are placed as
//!   late as possible on the slots (each slot's copies end at the request or
//!   where the slot's next copy starts, so the objects are held the least
//!   time), and the request is a miss if a copy would start before 0 or the
//!   pooled objects would exceed the budget anywhere (checked on a 1 ms grid
//!   on which every holding interval is rounded outwards, so the check is
//!   conservative). Latest-first with a frontier per slot is exact
//!   bookkeeping: a slot's idle time after a request's deadline is of no
//!   use to the earlier requests still to place.
//! - **Upper bound, [`upper_bound`]**: the smaller of two relaxations, each
//!   at least the optimum.
//!   - *Capacity, budget dropped.* In any schedule, one template's items
//!     are interchangeable, so the initial item may be taken to serve the
//!     template's first served request (swapping items keeps every copy and
//!     every deadline met); every other warm request needs `o` copies done
//!     by its time `t`, and the slots complete at most `slots x
//!     floor(t / copy_us)` copies in `[0, t]`. So the warm requests other
//!     than the first of each template form a set whose sizes, taken in
//!     order of time, never exceed that cumulative capacity. The largest
//!     such set is found exactly by Moore-Hodgson (add each request in order
//!     of time; when the sum exceeds the capacity at its time, drop the
//!     largest taken): these are the prefix constraints of one machine with
//!     due dates, for which that greedy is optimal (its proof needs only the
//!     capacities to be nondecreasing in time).
//!   - *Budget, capacity dropped* (copies instantaneous). Requests arriving
//!     at the same instant are served by items all ready at that instant, so
//!     their objects fit in the budget together; the most requests that fit
//!     is found by taking the smallest items first. Summed over instants.
//!
//!   Restricted to a subset of the requests (a window), each relaxation
//!   bounds how many of that subset any schedule serves warm: the requests
//!   outside it only compete for the same slots and budget.
//!
//! Per window, the lower bound's figure is the share of that window the
//! feasible schedule serves (a schedule built for the whole trace, not for
//! the window), the upper bound's is the relaxation restricted to the window.

use std::collections::{BinaryHeap, HashMap};

/// The holding grid of the budget check, microseconds.
const GRID_US: i64 = 1_000;

/// One instance of the offline problem.
#[derive(Debug, Clone, Copy)]
pub struct Problem<'a> {
    /// (arrival, template) in microseconds from the start, in any order.
    pub requests: &'a [(i64, usize)],
    /// Objects one item of each template holds (at least 1 each).
    pub images: &'a [u32],
    /// Copies in flight at once.
    pub slots: usize,
    /// How long one copy occupies its slot, microseconds.
    pub copy_us: i64,
    /// Most pooled objects at any time.
    pub budget: u64,
    /// End of the run, microseconds (pooled objects are averaged to it).
    pub horizon_us: i64,
}

/// A feasible schedule: which requests it serves warm, and what it holds.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Warm or not, by request (in the problem's order).
    pub warm: Vec<bool>,
    /// Copies made for the items it makes (each item is used: none wasted).
    pub copies: u64,
    /// Pooled objects at the start, their mean over the run, and their peak.
    pub start_objects: u64,
    pub mean_objects: f64,
    pub peak_objects: u64,
}

impl Problem<'_> {
    /// The objects of the starting state: one item of every template.
    pub fn start_objects(&self) -> u64 {
        self.images.iter().map(|&o| u64::from(o)).sum()
    }

    fn objects(&self, request: usize) -> u32 {
        self.images[self.requests[request].1].max(1)
    }

    /// Each template's first request (by time): the one its initial item serves.
    fn firsts(&self, include: &dyn Fn(usize) -> bool) -> Vec<bool> {
        let mut order: Vec<usize> = (0..self.requests.len()).filter(|&j| include(j)).collect();
        order.sort_by_key(|&j| (self.requests[j].0, j));
        let mut seen = vec![false; self.images.len()];
        let mut first = vec![false; self.requests.len()];
        for j in order {
            let t = self.requests[j].1;
            if !seen[t] {
                seen[t] = true;
                first[j] = true;
            }
        }
        first
    }
}

/// The lower bound: a schedule that keeps every constraint (see the module
/// docs). Fails if the starting state alone exceeds the budget.
pub fn feasible(p: &Problem) -> anyhow::Result<Schedule> {
    anyhow::ensure!(
        p.start_objects() <= p.budget,
        "the starting state ({} objects) exceeds the budget ({})",
        p.start_objects(),
        p.budget
    );
    anyhow::ensure!(p.slots > 0 && p.copy_us > 0, "no copy capacity");
    let end = p
        .requests
        .iter()
        .map(|r| r.0)
        .max()
        .unwrap_or(0)
        .max(p.horizon_us);
    let cells = (end / GRID_US + 2) as usize;
    let mut held = MaxTree::new(cells);
    let cell = |us: i64| ((us.max(0) / GRID_US) as usize).min(cells - 1);
    let cell_up = |us: i64| (((us.max(0) + GRID_US - 1) / GRID_US) as usize).min(cells - 1);

    // The initial items, held until their template's first request.
    let first = p.firsts(&|_| true);
    let mut first_at: HashMap<usize, i64> = HashMap::new();
    for (j, &(t, template)) in p.requests.iter().enumerate() {
        if first[j] {
            first_at.insert(template, t);
        }
    }
    for (template, &o) in p.images.iter().enumerate() {
        let until = first_at.get(&template).map_or(cells - 1, |&t| cell_up(t));
        held.add(0, until, i64::from(o));
    }

    let mut warm = first.clone();
    let mut copies = 0u64;
    let mut frontier = vec![i64::MAX; p.slots];
    let mut rest: Vec<usize> = (0..p.requests.len()).filter(|&j| !first[j]).collect();
    rest.sort_by_key(|&j| (std::cmp::Reverse(p.requests[j].0), p.objects(j), j));
    for j in rest {
        let t = p.requests[j].0;
        let o = p.objects(j);
        // Place each copy on the slot where it can end latest.
        let mut slots = frontier.clone();
        let mut ends = Vec::with_capacity(o as usize);
        for _ in 0..o {
            let (s, f) = slots
                .iter()
                .copied()
                .enumerate()
                .max_by_key(|&(_, f)| f)
                .unwrap_or((0, 0));
            let done = f.min(t);
            if done - p.copy_us < 0 {
                break;
            }
            slots[s] = done - p.copy_us;
            ends.push(done);
        }
        if ends.len() < o as usize {
            continue;
        }
        // Each copy holds one object from its end until the request.
        let until = cell_up(t);
        for &e in &ends {
            held.add(cell(e), until, 1);
        }
        let from = ends.iter().map(|&e| cell(e)).min().unwrap_or(until);
        if held.max(from, until) > p.budget as i64 {
            for &e in &ends {
                held.add(cell(e), until, -1);
            }
            continue;
        }
        frontier = slots;
        warm[j] = true;
        copies += u64::from(o);
    }

    let profile = held.values();
    let run = ((p.horizon_us.max(GRID_US) / GRID_US) as usize).min(cells);
    let in_run = &profile[..run];
    Ok(Schedule {
        warm,
        copies,
        start_objects: profile.first().copied().unwrap_or(0).max(0) as u64,
        mean_objects: in_run.iter().sum::<i64>() as f64 / in_run.len().max(1) as f64,
        peak_objects: in_run.iter().copied().max().unwrap_or(0).max(0) as u64,
    })
}

/// The upper bound on how many of the requests `include` selects any
/// schedule serves warm: the smaller of the two relaxations (module docs).
pub fn upper_bound(p: &Problem, include: &dyn Fn(usize) -> bool) -> usize {
    capacity_bound(p, include).min(budget_bound(p, include))
}

/// The budget dropped: each template's first selected request is served by
/// its initial item, the rest by Moore-Hodgson against the slots' cumulative
/// capacity `slots x floor(t / copy_us)` copies by time `t`.
pub fn capacity_bound(p: &Problem, include: &dyn Fn(usize) -> bool) -> usize {
    let first = p.firsts(include);
    let free = first.iter().filter(|&&f| f).count();
    let mut jobs: Vec<(i64, u32)> = (0..p.requests.len())
        .filter(|&j| include(j) && !first[j])
        .map(|j| (p.requests[j].0, p.objects(j)))
        .collect();
    jobs.sort_unstable();
    let mut taken = BinaryHeap::new();
    let mut sum = 0u64;
    for (t, o) in jobs {
        taken.push(o);
        sum += u64::from(o);
        let capacity = p.slots as u64 * (t.max(0) / p.copy_us.max(1)) as u64;
        if sum > capacity {
            sum -= u64::from(taken.pop().unwrap_or(0));
        }
    }
    free + taken.len()
}

/// The copy capacity dropped: per instant, the most selected requests whose
/// items fit in the budget together (smallest first).
pub fn budget_bound(p: &Problem, include: &dyn Fn(usize) -> bool) -> usize {
    let mut by_instant: HashMap<i64, Vec<u32>> = HashMap::new();
    for j in (0..p.requests.len()).filter(|&j| include(j)) {
        by_instant
            .entry(p.requests[j].0)
            .or_default()
            .push(p.objects(j));
    }
    by_instant
        .into_values()
        .map(|mut sizes| {
            sizes.sort_unstable();
            let mut left = p.budget;
            sizes
                .into_iter()
                .take_while(|&o| {
                    let fits = u64::from(o) <= left;
                    left = left.saturating_sub(u64::from(o));
                    fits
                })
                .count()
        })
        .sum()
}

/// Range add, range max over `0..n` (a segment tree whose nodes keep their
/// own pending add, so nothing is pushed down).
struct MaxTree {
    n: usize,
    max: Vec<i64>,
    add: Vec<i64>,
}

impl MaxTree {
    fn new(n: usize) -> Self {
        MaxTree {
            n: n.max(1),
            max: vec![0; 4 * n.max(1)],
            add: vec![0; 4 * n.max(1)],
        }
    }

    /// Adds `v` to every cell of `l..=r`.
    fn add(&mut self, l: usize, r: usize, v: i64) {
        if l <= r {
            self.add_in(1, 0, self.n - 1, l, r, v);
        }
    }

    fn add_in(&mut self, node: usize, lo: usize, hi: usize, l: usize, r: usize, v: i64) {
        if r < lo || hi < l {
            return;
        }
        if l <= lo && hi <= r {
            self.max[node] += v;
            self.add[node] += v;
            return;
        }
        let mid = (lo + hi) / 2;
        self.add_in(2 * node, lo, mid, l, r, v);
        self.add_in(2 * node + 1, mid + 1, hi, l, r, v);
        self.max[node] = self.max[2 * node].max(self.max[2 * node + 1]) + self.add[node];
    }

    /// The largest cell of `l..=r`.
    fn max(&self, l: usize, r: usize) -> i64 {
        if l > r {
            return i64::MIN;
        }
        self.max_in(1, 0, self.n - 1, l, r)
    }

    fn max_in(&self, node: usize, lo: usize, hi: usize, l: usize, r: usize) -> i64 {
        if r < lo || hi < l {
            return i64::MIN;
        }
        if l <= lo && hi <= r {
            return self.max[node];
        }
        let mid = (lo + hi) / 2;
        let below =
            self.max_in(2 * node, lo, mid, l, r)
                .max(self.max_in(2 * node + 1, mid + 1, hi, l, r));
        below.saturating_add(self.add[node])
    }

    /// Every cell's value.
    fn values(&self) -> Vec<i64> {
        let mut out = Vec::with_capacity(self.n);
        self.values_in(1, 0, self.n - 1, 0, &mut out);
        out
    }

    fn values_in(&self, node: usize, lo: usize, hi: usize, above: i64, out: &mut Vec<i64>) {
        let acc = above + self.add[node];
        if lo == hi {
            out.push(acc);
            return;
        }
        let mid = (lo + hi) / 2;
        self.values_in(2 * node, lo, mid, acc, out);
        self.values_in(2 * node + 1, mid + 1, hi, acc, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    const MS: i64 = 1_000;
    const S: i64 = 1_000_000;

    fn problem<'a>(
        requests: &'a [(i64, usize)],
        images: &'a [u32],
        slots: usize,
        budget: u64,
    ) -> Problem<'a> {
        Problem {
            requests,
            images,
            slots,
            copy_us: 150 * MS,
            budget,
            horizon_us: 20 * S,
        }
    }

    fn warm(s: &Schedule) -> usize {
        s.warm.iter().filter(|&&w| w).count()
    }

    #[test]
    fn without_contention_every_request_is_warm() {
        // Three templates, a request every 500 ms round robin: each item is
        // remade well within the gap.
        let requests: Vec<(i64, usize)> =
            (0..30).map(|k| (k * 500 * MS, (k % 3) as usize)).collect();
        let p = problem(&requests, &[1, 4, 8], 64, 1_000);
        let s = feasible(&p).unwrap();
        assert_eq!(warm(&s), 30);
        assert_eq!(upper_bound(&p, &|_| true), 30);
        // The first request of each template took its initial item; the
        // other 27 items were made.
        assert_eq!(s.copies, 9 + 9 * 4 + 9 * 8);
        assert_eq!(s.start_objects, 13);
    }

    #[test]
    fn a_burst_beyond_capacity_times_lead_time_gets_what_the_slots_can_make() {
        // 30 at once at 1 s on a 1-image template, 4 slots of 150 ms: each
        // slot finishes 6 copies in [0, 1 s] (the 7th would start at -50 ms),
        // so 24 items plus the initial one: 25, by hand.
        let requests = vec![(S, 0usize); 30];
        let p = problem(&requests, &[1], 4, 1_000);
        assert_eq!(warm(&feasible(&p).unwrap()), 25);
        assert_eq!(capacity_bound(&p, &|_| true), 25);
        assert_eq!(upper_bound(&p, &|_| true), 25);
        // With 8 images an item takes 8 copies: 24 copies make 3 items.
        let p8 = problem(&requests, &[8], 4, 1_000);
        assert_eq!(warm(&feasible(&p8).unwrap()), 4);
        assert_eq!(upper_bound(&p8, &|_| true), 4);
    }

    #[test]
    fn a_budget_that_binds_caps_what_is_held_at_once() {
        // 5 at once at 10 s on a 4-image template, budget 8 objects: two
        // items fit at that instant (the initial one and one more): 2, by
        // hand, though the slots could make all of them.
        let requests = vec![(10 * S, 0usize); 5];
        let p = problem(&requests, &[4], 64, 8);
        let s = feasible(&p).unwrap();
        assert_eq!(warm(&s), 2);
        assert_eq!(capacity_bound(&p, &|_| true), 5);
        assert_eq!(budget_bound(&p, &|_| true), 2);
        assert_eq!(upper_bound(&p, &|_| true), 2);
        assert!(s.peak_objects <= 8, "{s:?}");
    }

    #[test]
    fn the_budget_shifts_copies_late_and_spreads_them_over_time() {
        // Two 4-image requests 1 s apart after the initial item's, budget 8:
        // each extra item is copied just before its request, so they never
        // coexist with more than one other item.
        let requests = vec![(S, 0usize), (2 * S, 0), (3 * S, 0)];
        let p = problem(&requests, &[4], 64, 8);
        let s = feasible(&p).unwrap();
        assert_eq!(warm(&s), 3);
        assert!(s.peak_objects <= 8, "{s:?}");
    }

    #[test]
    fn a_window_is_bounded_alone() {
        // A burst of 10 on template 1 at 300 ms with 2 slots: 2 slots x 2
        // copies by 300 ms = 4 items + the initial one.
        let mut requests = vec![(300 * MS, 1usize); 10];
        requests.push((5 * S, 0));
        let p = problem(&requests, &[1, 1], 2, 100);
        let burst = |j: usize| j < 10;
        assert_eq!(upper_bound(&p, &burst), 5);
        let s = feasible(&p).unwrap();
        assert_eq!((0..10).filter(|&j| s.warm[j]).count(), 5);
        assert!(s.warm[10]);
    }

    #[test]
    fn the_starting_state_must_fit_the_budget() {
        let p = problem(&[], &[4, 4], 4, 7);
        assert!(feasible(&p).is_err());
    }

    #[test]
    fn the_feasible_schedule_never_beats_the_relaxations_nor_breaks_the_budget() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let templates = rng.random_range(1..5);
            let images: Vec<u32> = (0..templates).map(|_| rng.random_range(1..=8)).collect();
            let start: u64 = images.iter().map(|&o| u64::from(o)).sum();
            let n = rng.random_range(0..40);
            let requests: Vec<(i64, usize)> = (0..n)
                .map(|_| (rng.random_range(0..3 * S), rng.random_range(0..templates)))
                .collect();
            let budget = start + rng.random_range(0..40);
            let p = Problem {
                requests: &requests,
                images: &images,
                slots: rng.random_range(1..8),
                copy_us: rng.random_range(50..400) * MS,
                budget,
                horizon_us: 3 * S,
            };
            let s = feasible(&p).unwrap();
            let upper = upper_bound(&p, &|_| true);
            assert!(warm(&s) <= upper, "{} > {upper}: {p:?}", warm(&s));
            assert!(s.peak_objects <= budget, "{s:?} over {budget}");
            // Per window too: the first half of the run.
            let half = |j: usize| requests[j].0 < p.horizon_us / 2;
            let lower_half = (0..n).filter(|&j| half(j) && s.warm[j]).count();
            assert!(lower_half <= upper_bound(&p, &half));
        }
    }

    #[test]
    fn the_tree_adds_and_maxes_ranges() {
        let mut t = MaxTree::new(10);
        t.add(2, 5, 3);
        t.add(4, 9, 2);
        assert_eq!(t.max(0, 1), 0);
        assert_eq!(t.max(0, 3), 3);
        assert_eq!(t.max(0, 9), 5);
        assert_eq!(t.max(6, 9), 2);
        t.add(4, 5, -5);
        assert_eq!(t.max(0, 9), 3);
        assert_eq!(t.values(), vec![0, 0, 3, 3, 0, 0, 2, 2, 2, 2]);
    }
}
