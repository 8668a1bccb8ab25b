//! The addresses of denied names.
//!
//! A deny rule on an exact host name (`--deny secret.corp.test:*`) covers
//! the addresses that name resolves to, whatever name the guest reached
//! them by: the host resolves each such name itself (never on the guest's
//! behalf, so no guest lookup is involved), keeps the answers for their TTL
//! (between [`MIN_PIN`](crate::resolve::MIN_PIN) and [`MAX_KEEP`]), and the
//! gate hands them to the policy as [`Known::address_of`]
//! (warden_policy::Known). A deny on a `*.suffix` pattern cannot be
//! enumerated: it covers the names under the suffix, and the addresses the
//! guest resolved through those names.
//!
//! When a denied name cannot be resolved (no server answers), the gate
//! cannot tell which addresses are its, so traffic fails closed until it
//! can; the failure is kept for [`MIN_PIN`](crate::resolve::MIN_PIN), so a
//! broken resolver is asked again at that pace, not on every decision.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::resolve::{LookupError, MIN_PIN, Resolver};

/// The longest a denied name's answer is kept before it is asked again.
pub const MAX_KEEP: Duration = Duration::from_secs(300);

#[derive(Default)]
struct State {
    by_ip: HashMap<IpAddr, Vec<Arc<str>>>,
    /// When the answers must be refreshed; `None` before the first time.
    expires: Option<Instant>,
    /// Why the last refresh failed, if it did.
    failure: Option<String>,
}

/// The denied names' addresses, per instance.
pub(crate) struct DeniedNames {
    names: Vec<String>,
    state: Mutex<State>,
    refreshing: tokio::sync::Mutex<()>,
}

/// What the policy needs to know about one address.
pub(crate) struct Owners {
    pub(crate) names: Vec<Arc<str>>,
    pub(crate) unknown: Option<String>,
}

impl DeniedNames {
    pub(crate) fn new(names: Vec<String>) -> Self {
        DeniedNames {
            names,
            state: Mutex::new(State::default()),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// Whether the answers are there and current (or there are no denied
    /// names at all).
    pub(crate) fn is_fresh(&self) -> bool {
        self.fresh(Instant::now())
    }

    fn fresh(&self, now: Instant) -> bool {
        self.names.is_empty() || self.lock().expires.is_some_and(|e| e > now)
    }

    /// Resolve the denied names if their answers are missing or old.
    pub(crate) async fn refresh(&self, resolver: &Resolver) {
        if self.fresh(Instant::now()) {
            return;
        }
        let _one_at_a_time = self.refreshing.lock().await;
        let now = Instant::now();
        if self.fresh(now) {
            return;
        }
        let mut by_ip: HashMap<IpAddr, Vec<Arc<str>>> = HashMap::new();
        let mut expires = now + MAX_KEEP;
        let mut failure = None;
        for name in &self.names {
            match resolver.lookup(name).await {
                Ok((addrs, valid_until)) => {
                    let name: Arc<str> = name.as_str().into();
                    for ip in addrs {
                        by_ip
                            .entry(warden_policy::canonical_ip(ip))
                            .or_default()
                            .push(name.clone());
                    }
                    expires = expires.min(valid_until.max(now + MIN_PIN));
                }
                Err(LookupError::NotFound(_)) => {}
                Err(e) => {
                    failure = Some(e.to_string());
                    expires = now + MIN_PIN;
                }
            }
        }
        let mut state = self.lock();
        // Keep what was known for names that failed this time.
        if failure.is_some() {
            for (ip, names) in std::mem::take(&mut state.by_ip) {
                by_ip.entry(ip).or_insert(names);
            }
        }
        *state = State {
            by_ip,
            expires: Some(expires),
            failure,
        };
    }

    /// The denied names `ip` belongs to, or why that cannot be told.
    pub(crate) fn owners(&self, ip: IpAddr) -> Owners {
        if self.names.is_empty() {
            return Owners {
                names: Vec::new(),
                unknown: None,
            };
        }
        let state = self.lock();
        let unknown = match (&state.expires, &state.failure) {
            (None, _) => Some("the denied names were not resolved yet".to_string()),
            (_, Some(why)) => Some(why.clone()),
            _ => None,
        };
        Owners {
            names: state
                .by_ip
                .get(&warden_policy::canonical_ip(ip))
                .cloned()
                .unwrap_or_default(),
            unknown,
        }
    }
}
