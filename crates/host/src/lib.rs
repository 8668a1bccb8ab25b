//! Warden's wasmtime host.
//!
//! This crate owns everything between a validated run configuration and a
//! guest's exit: reading and classifying the guest file ([`read_guest`]),
//! the engine and its on-disk compilation cache ([`cache`]), the store with
//! its limits ([`Limits`]), linking WASI (through `warden-wasi`, whose network
//! paths all end at the `warden-net` gate), and turning however the guest
//! ended into an [`Outcome`].
//!
//! Files, one job each: `config` (what the host is asked, and its errors),
//! `load` (file to classified bytes), `compose` (a component and its
//! plugs made one), `imports` (what a component imports, checked against
//! the operator's world and what is provided), `compile` (engine, cache, compiled
//! code within its bounds), `instance` (linkers and stores: the one path to
//! a running instance), `gate` (an instance's or an app's gate from its
//! network, for `run` and `serve` alike), `run` (one guest to completion),
//! `limits`, `signals` (ending the process from another thread), `events`
//! (what the operator is told, as data), `cache`, `manifest` (a manifest
//! file read, its paths resolved), `prebuilt` (code compiled ahead of time
//! for an embedder to keep), `units` (sizes and durations as operators
//! write them).
//!
//! It writes no line of its own: what the operator is told (warnings,
//! verbose progress, where a listener listens, what a signal or a stuck
//! guest's timeout ended) goes as an [`Event`] to the sink its embedder
//! gives ([`RunConfig::events`], [`serve::ServeConfig::events`]); exit
//! codes and the words for an ending are the embedder's business too.

pub mod cache;
mod compile;
pub mod compose;
mod config;
mod events;
mod gate;
mod imports;
mod instance;
mod limits;
mod load;
pub mod manifest;
mod prebuilt;
mod run;
pub mod serve;
mod signals;
mod traces;
pub mod units;
pub mod virt_text;
pub mod world_wit;

use std::fmt;
use std::time::Duration;

pub use config::{
    CacheSetting, HostError, ImportRemedy, Imports, LastWords, ListenSpec, MissingImport, Network,
    RunConfig,
};
pub use events::{Event, Events};
pub use limits::{
    DEFAULT_COMPILE_TIMEOUT, DEFAULT_MAX_MODULE_SIZE, DEFAULT_MAX_TABLE_ELEMENTS, Limits,
    MAX_INSTANCES, MAX_MEMORIES, MAX_TABLES, MemoryLimiter, RefusedGrowth, TABLE_ELEMENT_BYTES,
};
pub use load::{Guest, GuestKind, read_guest};
pub use prebuilt::{Prebuilt, precompile, precompile_key};
pub use run::{Finished, WATCHDOG_GRACE, run, run_async};
pub use signals::{hand_over_stop_signals, on_forced_exit, with_stop_signals_blocked};

/// A limit that ended the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    /// The time limit passed.
    Timeout(Duration),
    /// The fuel ran out.
    Fuel(u64),
}

impl LimitHit {
    /// The limit's name, as the audit log's `limit` field has it.
    pub fn name(self) -> &'static str {
        match self {
            LimitHit::Timeout(_) => "timeout",
            LimitHit::Fuel(_) => "fuel",
        }
    }
}

impl fmt::Display for LimitHit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitHit::Timeout(d) => write!(f, "the time limit of {d:?} was reached"),
            LimitHit::Fuel(n) => write!(f, "the fuel limit of {n} units was used up"),
        }
    }
}

/// How a guest run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The guest exited with this code (0 when `run` returned normally).
    Exited(i32),
    /// The guest trapped.
    Trapped {
        /// The trap or error message.
        reason: String,
        /// The wasm backtrace, when wasmtime captured one.
        backtrace: Option<String>,
        /// The full error chain, for `--verbose`.
        detail: String,
    },
    /// A limit ended the guest.
    Limit(LimitHit),
}
