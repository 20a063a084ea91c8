//! Cloud pairs: which of the CERs of one cloud site is the active capturer.
//!
//! Every CER of the site runs the site's capture mode, but only one may put
//! remote /32s on its NIC: two would move each address back and forth
//! through the provider API. The choice is made from BGP alone, so there is
//! no second election protocol to fail on its own: each CER advertises its
//! `capture.pair_preference` as the LOCAL_PREF of its marker route, and every
//! CER of the site elects the same one from the markers it sees:
//! - a partner is a candidate while its marker is present (it is alive as
//!   far as BGP and BFD can tell);
//! - this CER is a candidate while at least one of its BGP sessions is
//!   established: a CER cut off the WAN sees no partner marker and would
//!   otherwise elect itself while the partner, seeing its marker gone, does
//!   the same (split brain), and it could not deliver what it captured;
//! - the highest preference wins, ties go to the lower identity.
//!
//! The active one is preempted by a partner of higher preference that comes
//! back (as VRRP preempts by default): one provider mutation per /32 for the
//! move back. Intents carry the role, so an action planned under the other
//! role is fenced, never executed (see `cer_capture::reconciler`).

use cer_bgp::route::Community;
use serde::Serialize;
use std::time::SystemTime;

/// This CER's part in its cloud pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Captures every remote /32 the site needs.
    Active,
    /// Captures nothing; takes over when the active one's marker goes.
    Standby,
}

/// One CER the election considered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub identity: String,
    pub preference: u32,
    pub this_node: bool,
}

/// The election and its last outcome (`cerctl show capture`).
#[derive(Debug, Clone, Serialize)]
pub struct Pair {
    #[serde(skip)]
    me: Community,
    pub preference: u32,
    #[serde(skip)]
    partners: Vec<Community>,
    pub role: Role,
    /// The identity elected active (None: no candidate, e.g. this CER has no
    /// BGP session and sees no partner).
    pub active: Option<String>,
    pub candidates: Vec<Candidate>,
    /// Role changes of this CER since it started.
    pub changes: u64,
    pub changed_at: Option<SystemTime>,
}

impl Pair {
    /// A pair member with `preference`; `partners` are the other CERs of the
    /// site (`sam.site_identities`). Standby until the first election.
    pub fn new(me: Community, preference: u32, partners: Vec<Community>) -> Self {
        Pair {
            me,
            preference,
            partners,
            role: Role::Standby,
            active: None,
            candidates: Vec::new(),
            changes: 0,
            changed_at: None,
        }
    }

    /// Elects from what BGP says now: `wan_up`, this CER has an established
    /// session; `partner_preference`, the preference a partner's marker
    /// carries (None: its marker is absent). Returns true when this CER's
    /// role changed.
    pub fn elect(
        &mut self,
        wan_up: bool,
        partner_preference: impl Fn(Community) -> Option<u32>,
    ) -> bool {
        let mut c: Vec<(u32, Community)> = self
            .partners
            .iter()
            .filter_map(|p| partner_preference(*p).map(|pref| (pref, *p)))
            .collect();
        if wan_up {
            c.push((self.preference, self.me));
        }
        // Highest preference first, then the lower identity.
        c.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let winner = c.first().map(|(_, id)| *id);
        self.candidates = c
            .iter()
            .map(|(pref, id)| Candidate {
                identity: id.to_string(),
                preference: *pref,
                this_node: *id == self.me,
            })
            .collect();
        self.active = winner.map(|w| w.to_string());
        let role = if winner == Some(self.me) {
            Role::Active
        } else {
            Role::Standby
        };
        if role == self.role {
            return false;
        }
        log::warn!(
            "cloud pair: this CER ({}) is now {role:?}; active: {}",
            self.me,
            self.active.as_deref().unwrap_or("none")
        );
        self.role = role;
        self.changes += 1;
        self.changed_at = Some(SystemTime::now());
        true
    }

    pub fn is_active(&self) -> bool {
        self.role == Role::Active
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Community = Community(65000 << 16 | 1003);
    const B: Community = Community(65000 << 16 | 1006);

    fn pair(me: Community, pref: u32, partner: Community) -> Pair {
        Pair::new(me, pref, vec![partner])
    }

    #[test]
    fn both_members_elect_the_same_active() {
        let mut a = pair(A, 200, B);
        let mut b = pair(B, 100, A);
        // Both alive: A (200) on both.
        assert!(a.elect(true, |_| Some(100)));
        assert!(!b.elect(true, |_| Some(200)));
        assert_eq!(
            (a.role, b.role),
            (Role::Active, Role::Standby),
            "{a:?} {b:?}"
        );
        assert_eq!(b.active.as_deref(), Some("65000:1003"));
        // A's marker goes (frozen, BFD took its sessions down): B takes over.
        assert!(b.elect(true, |_| None));
        assert!(b.is_active());
        // A comes back: preempts, B steps down.
        assert!(b.elect(true, |_| Some(200)));
        assert_eq!(b.role, Role::Standby);
        assert_eq!(b.changes, 2);
    }

    #[test]
    fn equal_preferences_go_to_the_lower_identity() {
        let mut a = pair(A, 100, B);
        let mut b = pair(B, 100, A);
        a.elect(true, |_| Some(100));
        b.elect(true, |_| Some(100));
        assert!(a.is_active() && !b.is_active());
    }

    #[test]
    fn a_cer_without_bgp_never_elects_itself() {
        // Cut off the WAN: no session, and the partner's marker is gone from
        // its view too. It must not capture (the partner does).
        let mut a = pair(A, 200, B);
        a.elect(true, |_| Some(100));
        assert!(a.is_active());
        assert!(a.elect(false, |_| None));
        assert_eq!(a.role, Role::Standby);
        assert_eq!(a.active, None);
        assert!(a.candidates.is_empty());
    }
}
