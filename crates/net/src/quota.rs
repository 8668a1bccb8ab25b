//! Tenancy quotas: how many outgoing connections, accepted connections
//! and UDP sockets a guest may hold open at once.
//!
//! Operators who put many tenants on one machine bound each tenant's
//! share of the host's sockets, not only its memory and CPU. A [`Tally`]
//! counts what one scope holds (an instance under `warden run`; an app,
//! all its instances together, under `warden serve`), and a server may
//! add a second tally over every app (its ceiling). Taking a place
//! ([`take`]) counts it in both or in neither; the [`Held`] place is given
//! back when it is dropped, with the socket or connection that holds it.
//!
//! A quota is a limit, not a policy decision: audit mode does not lift
//! it. What happens past one (the interface's ordinary error, a reset
//! peer, one notice, an audit record) is the gate's (see
//! [`crate::Gate::quota`]); this module only counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// What a quota counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quota {
    /// Outgoing TCP connections (every ABI's connect, and HTTP egress).
    ConnsOut,
    /// Connections accepted on the guest's listeners.
    ConnsIn,
    /// UDP sockets.
    UdpSockets,
}

impl Quota {
    /// Every quota, in the order [`Tally`] keeps them.
    pub const ALL: [Quota; 3] = [Quota::ConnsOut, Quota::ConnsIn, Quota::UdpSockets];

    fn index(self) -> usize {
        self as usize
    }

    /// Its name in manifests and the audit log (`max_conns_out`, ...).
    pub fn key(self) -> &'static str {
        match self {
            Quota::ConnsOut => "max_conns_out",
            Quota::ConnsIn => "max_conns_in",
            Quota::UdpSockets => "max_udp_sockets",
        }
    }

    /// What it counts, in words (`outgoing connections`, ...).
    pub fn counts(self) -> &'static str {
        match self {
            Quota::ConnsOut => "outgoing connections",
            Quota::ConnsIn => "accepted connections",
            Quota::UdpSockets => "UDP sockets",
        }
    }
}

/// The quotas of one scope (each `None`: no quota of its own; the
/// descriptor table and the process's file limit still bound it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quotas {
    /// Outgoing connections open at once.
    pub conns_out: Option<u32>,
    /// Accepted connections open at once.
    pub conns_in: Option<u32>,
    /// UDP sockets open at once.
    pub udp_sockets: Option<u32>,
}

impl Quotas {
    /// The quota on `q`.
    pub fn get(&self, q: Quota) -> Option<u32> {
        match q {
            Quota::ConnsOut => self.conns_out,
            Quota::ConnsIn => self.conns_in,
            Quota::UdpSockets => self.udp_sockets,
        }
    }

    /// Whether no quota is set.
    pub fn is_empty(&self) -> bool {
        Quota::ALL.iter().all(|q| self.get(*q).is_none())
    }

    /// `self`, with each quota it does not set taken from `fallback`.
    pub fn or(self, fallback: Quotas) -> Quotas {
        Quotas {
            conns_out: self.conns_out.or(fallback.conns_out),
            conns_in: self.conns_in.or(fallback.conns_in),
            udp_sockets: self.udp_sockets.or(fallback.udp_sockets),
        }
    }
}

/// What one scope holds open, against its quotas.
#[derive(Debug, Default)]
pub struct Tally {
    quotas: Quotas,
    open: [AtomicU32; 3],
}

impl Tally {
    /// A tally with nothing open.
    pub fn new(quotas: Quotas) -> Arc<Tally> {
        Arc::new(Tally {
            quotas,
            open: Default::default(),
        })
    }

    /// Its quotas.
    pub fn quotas(&self) -> Quotas {
        self.quotas
    }

    /// How many of `q` are open now.
    pub fn open(&self, q: Quota) -> u32 {
        self.open[q.index()].load(Ordering::Relaxed)
    }

    /// Count one more of `q`, if it stays within its quota.
    fn try_add(&self, q: Quota) -> bool {
        let Some(max) = self.quotas.get(q) else {
            return true;
        };
        self.open[q.index()]
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    fn remove(&self, q: Quota) {
        if self.quotas.get(q).is_some() {
            self.open[q.index()].fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Which bound refused a place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The instance's (`run`) or the app's (`serve`) own quota.
    Own,
    /// The server's ceiling over every app.
    Server,
}

/// A place under a quota, given back when dropped.
#[derive(Debug)]
pub struct Held {
    quota: Quota,
    tallies: [Option<Arc<Tally>>; 2],
}

impl Drop for Held {
    fn drop(&mut self) {
        for t in self.tallies.iter().flatten() {
            t.remove(self.quota);
        }
    }
}

/// Take a place of `q` under `own` and, if there is one, `ceiling`:
/// `Ok(None)` when neither sets a quota on `q` (nothing to hold), the
/// place when both have room, and the bound that is full (with its
/// quota) otherwise, nothing counted.
pub fn take(
    q: Quota,
    own: &Arc<Tally>,
    ceiling: Option<&Arc<Tally>>,
) -> Result<Option<Held>, (Scope, u32)> {
    let ceiling = ceiling.filter(|c| c.quotas.get(q).is_some());
    let own = Some(own).filter(|o| o.quotas.get(q).is_some());
    if own.is_none() && ceiling.is_none() {
        return Ok(None);
    }
    if let Some(o) = own
        && !o.try_add(q)
    {
        return Err((Scope::Own, o.quotas.get(q).unwrap_or(0)));
    }
    if let Some(c) = ceiling
        && !c.try_add(q)
    {
        if let Some(o) = own {
            o.remove(q);
        }
        return Err((Scope::Server, c.quotas.get(q).unwrap_or(0)));
    }
    Ok(Some(Held {
        quota: q,
        tallies: [own.cloned(), ceiling.cloned()],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quotas(n: u32) -> Quotas {
        Quotas {
            conns_out: Some(n),
            ..Quotas::default()
        }
    }

    #[test]
    fn a_place_is_given_back_when_dropped() {
        let t = Tally::new(quotas(2));
        let a = take(Quota::ConnsOut, &t, None).unwrap();
        let b = take(Quota::ConnsOut, &t, None).unwrap();
        assert!(a.is_some() && b.is_some());
        assert_eq!(
            take(Quota::ConnsOut, &t, None).unwrap_err(),
            (Scope::Own, 2)
        );
        drop(a);
        assert_eq!(t.open(Quota::ConnsOut), 1);
        assert!(take(Quota::ConnsOut, &t, None).unwrap().is_some());
    }

    #[test]
    fn no_quota_holds_nothing() {
        let t = Tally::new(quotas(1));
        for _ in 0..10 {
            assert!(take(Quota::UdpSockets, &t, None).unwrap().is_none());
        }
        assert_eq!(t.open(Quota::UdpSockets), 0);
    }

    #[test]
    fn the_ceiling_bounds_every_scope_together() {
        let server = Tally::new(quotas(3));
        let (a, b) = (Tally::new(quotas(2)), Tally::new(quotas(2)));
        let _a1 = take(Quota::ConnsOut, &a, Some(&server)).unwrap();
        let _a2 = take(Quota::ConnsOut, &a, Some(&server)).unwrap();
        assert_eq!(
            take(Quota::ConnsOut, &a, Some(&server)).unwrap_err(),
            (Scope::Own, 2)
        );
        let b1 = take(Quota::ConnsOut, &b, Some(&server)).unwrap();
        // The server is full: b's own count is not left raised.
        assert_eq!(
            take(Quota::ConnsOut, &b, Some(&server)).unwrap_err(),
            (Scope::Server, 3)
        );
        assert_eq!(b.open(Quota::ConnsOut), 1);
        drop(b1);
        assert_eq!(server.open(Quota::ConnsOut), 2);
        assert_eq!(b.open(Quota::ConnsOut), 0);
    }

    #[test]
    fn a_ceiling_alone_is_enough() {
        let server = Tally::new(quotas(1));
        let own = Tally::new(Quotas::default());
        let held = take(Quota::ConnsOut, &own, Some(&server)).unwrap();
        assert!(held.is_some());
        assert!(take(Quota::ConnsOut, &own, Some(&server)).is_err());
    }

    #[test]
    fn concurrent_takers_never_exceed_the_quota() {
        let t = Tally::new(quotas(5));
        let held: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        (0..100)
                            .filter_map(|_| take(Quota::ConnsOut, &t, None).ok().flatten())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(held.len(), 5);
        assert_eq!(t.open(Quota::ConnsOut), 5);
    }
}
