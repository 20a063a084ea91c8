//! Interned (hash-consed) path attribute sets: one `Arc` per distinct
//! value, which every table that holds the value points at. The speaker
//! keeps two: the attribute sets it imported (the Adj-RIB-In and Loc-RIB
//! paths of every peer share them: many UPDATEs, and many peers' copies of
//! a reflected route, carry the same set) and the ones it exported (every
//! update group's Adj-RIB-Out, and the UPDATEs queued to the sessions).
//!
//! An entry that only the interner still holds is dropped by `sweep`, which
//! does the work only once the set has doubled since its last sweep, so the
//! cost is amortized O(1) per interned value.

use crate::route::{FastSet, PathAttrs};
use std::sync::Arc;

/// The set is swept no earlier than at this size.
const SWEEP_MIN: usize = 1024;

#[derive(Debug)]
pub struct Interner {
    set: FastSet<Arc<PathAttrs>>,
    sweep_at: usize,
}

impl Default for Interner {
    fn default() -> Self {
        Interner {
            set: FastSet::default(),
            sweep_at: SWEEP_MIN,
        }
    }
}

impl Interner {
    /// The shared instance of `attrs`.
    pub fn intern(&mut self, attrs: PathAttrs) -> Arc<PathAttrs> {
        if let Some(a) = self.set.get(&attrs) {
            return Arc::clone(a);
        }
        let a = Arc::new(attrs);
        self.set.insert(Arc::clone(&a));
        a
    }

    /// The shared instance of the value `attrs` points at: `attrs` itself
    /// when it is the first of its value.
    pub fn intern_arc(&mut self, attrs: Arc<PathAttrs>) -> Arc<PathAttrs> {
        if let Some(a) = self.set.get(&attrs) {
            return Arc::clone(a);
        }
        self.set.insert(Arc::clone(&attrs));
        attrs
    }

    /// Distinct values held.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Drops the values nothing but the interner refers to, once the set
    /// has doubled since the last sweep.
    pub fn sweep(&mut self) {
        if self.set.len() >= self.sweep_at {
            self.set.retain(|a| Arc::strong_count(a) > 1);
            self.sweep_at = (self.set.len() * 2).max(SWEEP_MIN);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::NextHop;
    use std::net::Ipv4Addr;

    fn attrs(med: u32) -> PathAttrs {
        let mut a = PathAttrs::local(NextHop::V4 {
            addr: Ipv4Addr::new(192, 0, 2, 1),
        });
        a.med = Some(med);
        a
    }

    #[test]
    fn equal_values_share_one_arc() {
        let mut i = Interner::default();
        let a = i.intern(attrs(1));
        let b = i.intern(attrs(1));
        let c = i.intern_arc(Arc::new(attrs(1)));
        assert!(Arc::ptr_eq(&a, &b) && Arc::ptr_eq(&a, &c));
        let d = i.intern(attrs(2));
        assert!(!Arc::ptr_eq(&a, &d));
        assert_eq!(i.len(), 2);
        // The first Arc of a value is the one kept.
        let e = Arc::new(attrs(3));
        assert!(Arc::ptr_eq(&i.intern_arc(Arc::clone(&e)), &e));
    }

    #[test]
    fn sweep_drops_only_unused_values_and_only_when_doubled() {
        let mut i = Interner::default();
        let kept: Vec<Arc<PathAttrs>> = (0..10).map(|n| i.intern(attrs(n))).collect();
        for n in 10..SWEEP_MIN as u32 - 1 {
            i.intern(attrs(n));
        }
        i.sweep();
        assert_eq!(i.len(), SWEEP_MIN - 1, "below the threshold: no sweep");
        i.intern(attrs(5000));
        i.sweep();
        assert_eq!(i.len(), 10, "only the values still held elsewhere stay");
        assert!(kept.iter().all(|a| Arc::strong_count(a) == 2));
        // The next sweep waits until the set has doubled again (to the minimum).
        for n in 6000..6100 {
            i.intern(attrs(n));
        }
        i.sweep();
        assert_eq!(i.len(), 110);
    }
}
