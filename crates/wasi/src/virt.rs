//! Virtual time and randomness: the clocks and random streams a guest
//! reads, as the operator set them (`--wall-clock`, `--monotonic-clock`,
//! `--random-seed`). One place gives them to every ABI: preview1,
//! WASI 0.2 and 0.3 all read the clocks and random sources of the
//! wasmtime-wasi context built here, and Warden's own preview1
//! `poll_oneoff` reads its clocks through that context too.
//!
//! The monotonic clock always advances at the real rate: sleeps are real
//! time in wasmtime-wasi (a 0.2 `subscribe-instant` sleeps `when - now`),
//! so a clock that stood still would make a "sleep until" loop spin.

use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

/// What the guest's wall clock (`wasi:clocks/wall-clock`, preview1's
/// `CLOCK_REALTIME`) reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WallClock {
    /// The host's clock.
    #[default]
    Real,
    /// Always this time, counted from the Unix epoch.
    Frozen(Duration),
    /// This time when the instance starts, then advancing at the real
    /// rate.
    Start(Duration),
}

/// What the guest's monotonic clock reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MonotonicClock {
    /// Nanoseconds since the instance started (wasmtime's own clock): the
    /// guest learns nothing of the host's uptime.
    #[default]
    Virtual,
    /// The host's `CLOCK_MONOTONIC` (time since boot), for a guest whose
    /// readings must line up with the host's.
    Real,
}

/// The clocks and random streams a guest gets. The default is the host's
/// wall clock, a monotonic clock from the instance's start, and the
/// host's random sources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Virtual {
    /// The wall clock.
    pub wall: WallClock,
    /// The monotonic clock.
    pub monotonic: MonotonicClock,
    /// When set, every random source the guest can reach (secure,
    /// insecure, the hash-map seed) is a fixed stream derived from it.
    pub random_seed: Option<u64>,
}

impl Virtual {
    /// Set the clocks and random sources of `b` as `self` says.
    pub(crate) fn apply(&self, b: &mut WasiCtxBuilder) {
        match self.wall {
            WallClock::Real => {}
            WallClock::Frozen(at) => {
                b.wall_clock(Frozen(at));
            }
            WallClock::Start(at) => {
                b.wall_clock(Started {
                    at,
                    since: Instant::now(),
                });
            }
        }
        if self.monotonic == MonotonicClock::Real {
            b.monotonic_clock(HostMonotonic);
        }
        if let Some(seed) = self.random_seed {
            // One stream from the seed gives the seeds of the three, so each
            // differs from the others and all follow from `seed` alone.
            let mut root = rand::rngs::ChaCha20Rng::seed_from_u64(seed);
            let secure = rand::rngs::ChaCha20Rng::from_seed(root.random());
            let insecure = rand::rngs::ChaCha20Rng::from_seed(root.random());
            let insecure_seed: u128 = root.random();
            b.secure_random(secure)
                .insecure_random(insecure)
                .insecure_random_seed(insecure_seed);
        }
    }
}

/// A wall clock that stands still.
struct Frozen(Duration);

impl HostWallClock for Frozen {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        self.0
    }
}

/// A wall clock that starts at a given time.
struct Started {
    at: Duration,
    since: Instant,
}

impl HostWallClock for Started {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        self.at.saturating_add(self.since.elapsed())
    }
}

/// The host's `CLOCK_MONOTONIC`.
struct HostMonotonic;

impl HostMonotonicClock for HostMonotonic {
    fn resolution(&self) -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_getres writes one timespec; on a failure it stays
        // zero and the resolution reads as 1 ns.
        unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC, &mut ts) };
        nanos(&ts).max(1)
    }

    fn now(&self) -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec; CLOCK_MONOTONIC always
        // exists on Linux.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        nanos(&ts)
    }
}

fn nanos(ts: &libc::timespec) -> u64 {
    u64::try_from(ts.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(ts.tv_nsec).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(rng: &mut impl rand::RngExt) -> [u8; 16] {
        rng.random()
    }

    #[test]
    fn a_seed_gives_the_same_stream_and_another_seed_another() {
        let stream = |seed| {
            let mut root = rand::rngs::ChaCha20Rng::seed_from_u64(seed);
            let mut secure = rand::rngs::ChaCha20Rng::from_seed(root.random());
            bytes(&mut secure)
        };
        assert_eq!(stream(7), stream(7));
        assert_ne!(stream(7), stream(8));
    }

    #[test]
    fn a_frozen_clock_stands_still_and_a_started_one_moves_on() {
        let at = Duration::from_secs(1_700_000_000);
        let frozen = Frozen(at);
        let started = Started {
            at,
            since: Instant::now(),
        };
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(frozen.now(), at);
        assert!(started.now() >= at + Duration::from_millis(5));
    }

    #[test]
    fn the_real_monotonic_clock_is_the_hosts() {
        let ours = HostMonotonic.now();
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: as above.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        let host = nanos(&ts);
        assert!(ours <= host && host - ours < 1_000_000_000);
        assert!(HostMonotonic.resolution() >= 1);
    }
}
