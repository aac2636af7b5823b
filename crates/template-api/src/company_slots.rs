//! A bound on one kind of work each company may have in flight in this
//! process: here, designs made by copy (`serving.cold_designs_per_company`).
//!
//! Cold designs of every company share the process's copy permits
//! (`serving.cold_copy_global_limit`, first come first served). Without a
//! bound per company, one company's misses -- a private template of 200
//! images it keeps cold, requests it abandons (the work is detached) --
//! would queue copies faster than they finish, and every other company's
//! cold design would wait behind a queue that grows as long as it keeps
//! going. With it, the others wait behind at most `max` designs' copies
//! (`max x cold_copy_parallelism` copy futures) per such company: a
//! constant. A company over its bound is answered 503 `busy` at once,
//! before anything is copied or announced.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use shared_domain::ids::CompanyId;

/// Counts of work in flight per company; a company's entry goes when its
/// count returns to zero, so the map holds only companies with work in
/// flight.
#[derive(Debug)]
pub struct CompanySlots {
    max: usize,
    taken: Arc<Mutex<HashMap<CompanyId, usize>>>,
}

/// One piece of work's slot, held until dropped.
#[derive(Debug)]
pub struct Slot {
    company: CompanyId,
    taken: Arc<Mutex<HashMap<CompanyId, usize>>>,
}

impl CompanySlots {
    /// At most `max` (>= 1) slots per company.
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            taken: Arc::default(),
        }
    }

    /// A slot for `company`, or `None` when it holds `max` already.
    pub fn try_take(&self, company: CompanyId) -> Option<Slot> {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        let count = taken.entry(company).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Slot {
            company,
            taken: self.taken.clone(),
        })
    }

    /// Slots `company` holds now.
    #[cfg(test)]
    fn held(&self, company: CompanyId) -> usize {
        let taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        taken.get(&company).copied().unwrap_or(0)
    }

    /// Companies holding a slot now.
    #[cfg(test)]
    fn companies(&self) -> usize {
        self.taken.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = taken.get_mut(&self.company) {
            *count -= 1;
            if *count == 0 {
                taken.remove(&self.company);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_company_holds_at_most_max_and_others_are_unaffected() {
        let slots = CompanySlots::new(2);
        let (a, b) = (CompanyId::new(), CompanyId::new());
        let first = slots.try_take(a).expect("first");
        let second = slots.try_take(a).expect("second");
        assert!(slots.try_take(a).is_none(), "a third slot for one company");
        let other = slots
            .try_take(b)
            .expect("another company is not bounded by the first");
        assert_eq!((slots.held(a), slots.held(b)), (2, 1));
        drop(first);
        let again = slots.try_take(a).expect("a slot given back is free again");
        drop((second, again, other));
        assert_eq!(
            slots.companies(),
            0,
            "entries of idle companies are dropped"
        );
    }
}
