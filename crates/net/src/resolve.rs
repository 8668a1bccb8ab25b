//! Host-side name resolution, and the pins it leaves behind.
//!
//! Names are resolved with hickory-resolver: the system's configuration
//! (`/etc/resolv.conf`, read at the first lookup) or one server the operator
//! names. Its cache is off: Warden keeps its own record of what each
//! permitted name resolved to (a *pin*), for the answer's TTL, at least
//! [`MIN_PIN`]. While a pin lives, a lookup of that name answers from it, so
//! a server that changes its answer (DNS rebinding) cannot widen what the
//! guest may reach; and an address is reachable through a name's grant only
//! while it is pinned to that name.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfigGroup, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;

/// The shortest time an answer stays pinned, whatever its TTL, so that a
/// guest can connect to what it was just told.
pub const MIN_PIN: Duration = Duration::from_secs(10);

/// At most this many names are pinned at once; expired pins go first, then
/// the oldest.
pub const MAX_PINS: usize = 4096;

/// At most this many addresses of one answer are kept (and given to the
/// guest): a DNS answer can hold thousands.
pub const MAX_PIN_ADDRS: usize = 64;

/// At most this many lookups are in flight at once per instance.
pub const MAX_IN_FLIGHT: usize = 64;

/// At most this many lookups wait for one of those places; past that a
/// lookup fails at once with a transient error.
pub const MAX_WAITING: usize = 1024;

/// Lookups that reach a DNS server start at this rate at most, per
/// instance (a burst of as many is allowed); pinned answers are free.
pub const LOOKUPS_PER_SECOND: u32 = 100;

/// Which DNS servers to ask.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DnsConfig {
    /// The system's configuration.
    #[default]
    System,
    /// This server only (UDP, then TCP for truncated answers).
    Server(SocketAddr),
}

/// Why a name did not resolve.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// The name does not exist, or has no addresses.
    #[error("{0} has no addresses")]
    NotFound(String),
    /// The resolver failed (no server answered, a bad configuration).
    #[error("cannot resolve {name}: {reason}")]
    Failed {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// Too many lookups are waiting already; try again later.
    #[error("too many name lookups at once ({MAX_IN_FLIGHT} in flight, {MAX_WAITING} waiting)")]
    Busy,
}

pub(crate) struct Resolver {
    config: DnsConfig,
    inner: tokio::sync::OnceCell<Result<TokioResolver, String>>,
    in_flight: tokio::sync::Semaphore,
    waiting: std::sync::atomic::AtomicUsize,
    pace: std::sync::Mutex<Pace>,
}

/// A token bucket: [`LOOKUPS_PER_SECOND`] tokens a second, as many at most.
struct Pace {
    tokens: f64,
    at: Instant,
}

impl Pace {
    /// Take a token, or say how long until one is there.
    fn take(&mut self, now: Instant) -> Option<Duration> {
        let rate = f64::from(LOOKUPS_PER_SECOND);
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }
}

impl Resolver {
    pub(crate) fn new(config: DnsConfig) -> Self {
        Resolver {
            config,
            inner: tokio::sync::OnceCell::new(),
            in_flight: tokio::sync::Semaphore::new(MAX_IN_FLIGHT),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            pace: std::sync::Mutex::new(Pace {
                tokens: f64::from(LOOKUPS_PER_SECOND),
                at: Instant::now(),
            }),
        }
    }

    /// Wait for a place among the lookups in flight and for the pace, or
    /// fail at once when too many wait already.
    async fn admit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, LookupError> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        /// Counts a waiter until it is dropped, even when the lookup is
        /// abandoned while it waits.
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let waiting = Waiting(&self.waiting);
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= MAX_WAITING {
            return Err(LookupError::Busy);
        }
        let permit = self.in_flight.acquire().await;
        loop {
            let wait = crate::sync::lock(&self.pace).take(Instant::now());
            match wait {
                None => break,
                Some(d) => tokio::time::sleep(d).await,
            }
        }
        drop(waiting);
        permit.map_err(|_| LookupError::Busy)
    }

    async fn get(&self) -> Result<&TokioResolver, String> {
        let r = self
            .inner
            .get_or_init(|| async {
                let mut builder = match &self.config {
                    DnsConfig::System => TokioResolver::builder_tokio()
                        .map_err(|e| format!("reading the system DNS configuration: {e}"))?,
                    DnsConfig::Server(addr) => {
                        let group =
                            NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
                        TokioResolver::builder_with_config(
                            ResolverConfig::from_parts(None, vec![], group),
                            TokioConnectionProvider::default(),
                        )
                    }
                };
                let opts: &mut ResolverOpts = builder.options_mut();
                opts.cache_size = 0;
                opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
                opts.timeout = Duration::from_secs(5);
                opts.attempts = 2;
                Ok(builder.build())
            })
            .await;
        r.as_ref().map_err(Clone::clone)
    }

    /// Resolve `name` (already normalised): its addresses and when the
    /// answer expires.
    pub(crate) async fn lookup(&self, name: &str) -> Result<(Vec<IpAddr>, Instant), LookupError> {
        let failed = |reason: String| LookupError::Failed {
            name: name.to_string(),
            reason,
        };
        let _admitted = self.admit().await?;
        let resolver = self.get().await.map_err(failed)?;
        // A trailing dot: the name is absolute, no search domains.
        match resolver.lookup_ip(format!("{name}.")).await {
            Ok(found) => {
                let addrs: Vec<IpAddr> = found.iter().take(MAX_PIN_ADDRS).collect();
                if addrs.is_empty() {
                    return Err(LookupError::NotFound(name.to_string()));
                }
                Ok((addrs, found.valid_until()))
            }
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => {
                Err(LookupError::NotFound(name.to_string()))
            }
            Err(e) => Err(failed(e.to_string())),
        }
    }
}

struct Pin {
    addrs: Vec<IpAddr>,
    expires: Instant,
    made: Instant,
}

/// Names and the addresses they resolved to, while the answers live.
#[derive(Default)]
pub(crate) struct Pins {
    by_name: HashMap<String, Pin>,
}

impl Pins {
    /// The live pin for `name`, if any.
    pub(crate) fn get(&self, name: &str, now: Instant) -> Option<Vec<IpAddr>> {
        self.by_name
            .get(name)
            .filter(|p| p.expires > now)
            .map(|p| p.addrs.clone())
    }

    /// Pin `addrs` to `name` until `valid_until` (at least [`MIN_PIN`]).
    pub(crate) fn insert(
        &mut self,
        name: &str,
        addrs: Vec<IpAddr>,
        valid_until: Instant,
        now: Instant,
    ) {
        if self.by_name.len() >= MAX_PINS && !self.by_name.contains_key(name) {
            self.by_name.retain(|_, p| p.expires > now);
            if self.by_name.len() >= MAX_PINS {
                let oldest = self
                    .by_name
                    .iter()
                    .min_by_key(|(_, p)| p.made)
                    .map(|(n, _)| n.clone());
                if let Some(n) = oldest {
                    self.by_name.remove(&n);
                }
            }
        }
        let expires = valid_until.max(now + MIN_PIN);
        self.by_name.insert(
            name.to_string(),
            Pin {
                addrs,
                expires,
                made: now,
            },
        );
    }

    /// The names `ip` is pinned to now.
    pub(crate) fn names_for(&self, ip: IpAddr, now: Instant) -> Vec<String> {
        let ip = warden_policy::canonical_ip(ip);
        let mut names: Vec<String> = self
            .by_name
            .iter()
            .filter(|(_, p)| {
                p.expires > now
                    && p.addrs
                        .iter()
                        .any(|a| warden_policy::canonical_ip(*a) == ip)
            })
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_live_for_their_ttl_but_at_least_the_minimum() {
        let now = Instant::now();
        let mut pins = Pins::default();
        let a: IpAddr = "127.0.0.5".parse().unwrap();
        pins.insert("api.test", vec![a], now, now);
        assert_eq!(pins.get("api.test", now + MIN_PIN / 2), Some(vec![a]));
        assert_eq!(pins.get("api.test", now + MIN_PIN), None);
        assert_eq!(
            pins.names_for("::ffff:127.0.0.5".parse().unwrap(), now),
            ["api.test"]
        );
        assert!(pins.names_for(a, now + MIN_PIN).is_empty());
        pins.insert("long.test", vec![a], now + Duration::from_secs(600), now);
        assert_eq!(
            pins.names_for(a, now + Duration::from_secs(300)),
            ["long.test"]
        );
    }

    #[test]
    fn the_pin_table_is_bounded() {
        let now = Instant::now();
        let mut pins = Pins::default();
        let a: IpAddr = "127.0.0.5".parse().unwrap();
        for i in 0..MAX_PINS + 10 {
            pins.insert(
                &format!("n{i}.test"),
                vec![a],
                now + Duration::from_secs(60),
                now,
            );
        }
        assert_eq!(pins.by_name.len(), MAX_PINS);
    }
}
