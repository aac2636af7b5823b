//! Each company's fair share of a batch's refills.
//!
//! The worker's copy capacity is shared by every tenant. A batch of warm-up
//! requests is refilled a few templates at a time (`worker.refill_parallelism`),
//! in the order this module gives: round-robin over the companies that own
//! the batch's templates, each company's templates oldest request first.
//! A company with one template waiting starts its refill within the first
//! round, however many templates another company queued; in arrival (or
//! id) order it would wait behind all of them. What one tenant's volume
//! costs another is then one refill per other company in the round, and
//! the copies already queued on the global limiter (a constant of the
//! settings), never the volume itself.

use std::collections::HashMap;
use std::hash::Hash;

/// `items` in round-robin order over their owners: each owner's first item,
/// then each owner's second, and so on. Owners take their turn in the order
/// of their earliest item (by `key`), and each owner's items keep `key`
/// order. An item with no known owner (`owner` answers `None`) is its own
/// group of one, so an unknown owner never stands for many.
pub fn round_robin<T, O, K>(
    mut items: Vec<T>,
    owner: impl Fn(&T) -> Option<O>,
    key: impl Fn(&T) -> K,
) -> Vec<T>
where
    O: Eq + Hash,
    K: Ord,
{
    items.sort_by_key(|item| key(item));
    let mut groups: Vec<Vec<T>> = Vec::new();
    let mut group_of: HashMap<O, usize> = HashMap::new();
    for item in items {
        match owner(&item) {
            Some(o) => {
                let next = groups.len();
                let at = *group_of.entry(o).or_insert(next);
                if at == next {
                    groups.push(Vec::new());
                }
                groups[at].push(item);
            }
            None => groups.push(vec![item]),
        }
    }
    let total = groups.iter().map(Vec::len).sum();
    let mut queues: Vec<std::vec::IntoIter<T>> = groups.into_iter().map(Vec::into_iter).collect();
    let mut ordered = Vec::with_capacity(total);
    while ordered.len() < total {
        for queue in &mut queues {
            if let Some(item) = queue.next() {
                ordered.push(item);
            }
        }
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::round_robin;
    use proptest::prelude::*;

    #[test]
    fn a_company_with_one_template_goes_in_the_first_round() {
        // (owner, requested at): company 1 queued 20, company 2 one, last.
        let mut items: Vec<(u8, u32)> = (0..20).map(|t| (1, t)).collect();
        items.push((2, 100));
        let ordered = round_robin(items, |i| Some(i.0), |i| i.1);
        assert_eq!(ordered[0], (1, 0));
        assert_eq!(ordered[1], (2, 100), "{ordered:?}");
        assert_eq!(ordered.len(), 21);
    }

    #[test]
    fn unknown_owners_are_groups_of_one() {
        let items = vec![(None, 0), (None, 1), (Some(1), 2), (Some(1), 3)];
        let ordered = round_robin(items, |i| i.0, |i| i.1);
        assert_eq!(ordered, [(None, 0), (None, 1), (Some(1), 2), (Some(1), 3)]);
    }

    proptest! {
        /// A permutation; each owner's items keep their order; and before
        /// any owner's k-th item, every owner with at least k items has had
        /// k - 1 turns (no owner gets two turns while another waits).
        #[test]
        fn round_robin_is_a_fair_permutation(items in prop::collection::vec((0u8..5, 0u32..1000), 0..60)) {
            let ordered = round_robin(items.clone(), |i| Some(i.0), |i| i.1);
            let mut sorted_in = items.clone();
            sorted_in.sort();
            let mut sorted_out = ordered.clone();
            sorted_out.sort();
            prop_assert_eq!(sorted_in, sorted_out);
            let mut seen = std::collections::HashMap::<u8, usize>::new();
            let total = |o: u8| items.iter().filter(|i| i.0 == o).count();
            for (at, item) in ordered.iter().enumerate() {
                let k = *seen.get(&item.0).unwrap_or(&0);
                for owner in 0u8..5 {
                    let had = ordered[..at].iter().filter(|i| i.0 == owner).count();
                    prop_assert!(had >= k.min(total(owner)), "{:?}", ordered);
                }
                let before: Vec<u32> = ordered[..at].iter().filter(|i| i.0 == item.0).map(|i| i.1).collect();
                prop_assert!(before.iter().all(|b| *b <= item.1));
                *seen.entry(item.0).or_default() += 1;
            }
        }
    }
}
