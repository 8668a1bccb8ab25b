//! From a file to compiled code: the engine, the cache, and the bounds on
//! both (a program size limit, and a time limit on reading and compiling).
//!
//! Compilation runs on a thread of its own, and the caller waits at most
//! [`Limits::compile_timeout`]; past it, the run fails with
//! [`HostError::CompileTimeout`] (the compiling thread cannot be stopped,
//! and ends with the process). Memory used while compiling grows with the
//! program's size, which [`Limits::max_module_size`] bounds.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use wasmtime::component::Component;
use wasmtime::{Engine, Module};

use warden_wasi::ComponentAbi;

use crate::compose::PlugSpec;
use crate::load::{Guest, GuestKind};
use crate::{CacheSetting, HostError, Limits, cache, read_guest};

/// Compiled code, ready to instantiate.
#[derive(Clone)]
pub(crate) enum Compiled {
    Module(Module),
    Component(Component, ComponentAbi),
}

/// A program read, classified and compiled.
pub(crate) struct Program {
    pub(crate) guest: Guest,
    pub(crate) compiled: Compiled,
}

/// The engine for `limits`: component model and its async ABI, epoch
/// interruption when there is a timeout, fuel when there is fuel.
pub(crate) fn engine(limits: &Limits) -> Result<Engine, HostError> {
    let mut config = wasmtime::Config::new();
    config
        .wasm_component_model(true)
        .wasm_component_model_async(true)
        .epoch_interruption(limits.timeout.is_some())
        .consume_fuel(limits.fuel.is_some());
    Engine::new(&config).map_err(|e| HostError::Engine(e.to_string()))
}

/// The engine `serve` uses: the component model and its async ABI, epoch
/// interruption always (every request has a deadline), fuel when any app
/// has fuel, and, when `pooling`, the pooling allocator sized for
/// `instances` instances at once (fresh instances are then cheap). If the
/// machine cannot reserve the pool (a small address space, a tight
/// `ulimit -v`), the engine allocates on demand instead and the note says
/// so.
pub(crate) fn serve_engine(
    fuel: bool,
    pooling: bool,
    instances: u32,
) -> Result<(Engine, Option<String>), HostError> {
    let mut config = wasmtime::Config::new();
    config
        .wasm_component_model(true)
        .wasm_component_model_async(true)
        .epoch_interruption(true)
        .consume_fuel(fuel);
    if pooling {
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        let instances = instances.max(1);
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(16))
            .total_memories(instances.saturating_mul(4))
            .total_tables(instances.saturating_mul(8))
            .max_memories_per_component(crate::MAX_MEMORIES as u32)
            .max_tables_per_component(crate::MAX_TABLES as u32)
            .max_core_instances_per_component(crate::MAX_INSTANCES as u32)
            // Reset what a request dirtied by writing it back rather than
            // unmapping it, and unmap the rest in batches: every unmap is a
            // TLB shootdown on every core, and every page unmapped is a
            // fault (with another shootdown) for the next instance, which
            // at a fresh instance per request costs more than the writes.
            // With PAGEMAP_SCAN (Linux 6.7+) the 64 KiB kept resident are
            // the pages the request dirtied, wherever they are (a Rust
            // guest's stack, data and heap all sit above its first 64 KiB);
            // without it, wasmtime keeps the first 64 KiB. Measured with
            // bench/serve.py: docs/benchmarks.md.
            .linear_memory_keep_resident(64 << 10)
            .pagemap_scan(wasmtime::Enabled::Auto)
            .table_keep_resident(64 << 10)
            .async_stack_keep_resident(64 << 10)
            .decommit_batch_size(64);
        let mut pooled = config.clone();
        pooled.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        match Engine::new(&pooled) {
            Ok(engine) => return Ok((engine, None)),
            Err(e) => {
                let note = format!(
                    "the pooling allocator is not available here ({e}); instances are allocated on demand"
                );
                let engine = Engine::new(&config).map_err(|e| HostError::Engine(e.to_string()))?;
                return Ok((engine, Some(note)));
            }
        }
    }
    let engine = Engine::new(&config).map_err(|e| HostError::Engine(e.to_string()))?;
    Ok((engine, None))
}

/// Where compiling tells its progress (in verbose runs) and warnings.
#[derive(Clone)]
pub(crate) struct Log {
    events: crate::Events,
    verbose: bool,
}

impl Log {
    pub(crate) fn new(events: &crate::Events, verbose: bool) -> Log {
        Log {
            events: events.clone(),
            verbose,
        }
    }

    /// Progress, said in verbose runs only.
    pub(crate) fn progress(&self, msg: &str) {
        if self.verbose {
            (self.events)(&crate::Event::Progress(msg));
        }
    }

    /// Something the operator is always told.
    pub(crate) fn tell(&self, event: &crate::Event<'_>) {
        (self.events)(event);
    }
}

/// Read, classify and compile `file` (or load it from the cache), within
/// `limits.compile_timeout`; a component with `plugs` is composed with
/// them first (see [`crate::compose`]), unless the composition is cached.
pub(crate) fn prepare(
    engine: &Engine,
    file: &Path,
    limits: &Limits,
    cache: &CacheSetting,
    prebuilt: Option<&crate::Prebuilt>,
    plugs: &[PlugSpec],
    log: &Log,
) -> Result<Program, HostError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let (engine2, file2, limits2, cache2, log2, plugs2) = (
        engine.clone(),
        file.to_path_buf(),
        *limits,
        cache.clone(),
        log.clone(),
        plugs.to_vec(),
    );
    let prebuilt2 = prebuilt.cloned();
    std::thread::Builder::new()
        .name("warden-compile".into())
        .spawn(move || {
            let _ = tx.send(prepare_now(
                &engine2,
                &file2,
                &limits2,
                &cache2,
                prebuilt2.as_ref(),
                &plugs2,
                &log2,
            ));
        })
        .map_err(|e| HostError::Engine(format!("cannot start the compiling thread: {e}")))?;
    match rx.recv_timeout(limits.compile_timeout) {
        Ok(result) => result,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(HostError::CompileTimeout {
            path: file.to_path_buf(),
            limit: limits.compile_timeout,
        }),
        // The compiling thread ended without an answer: it panicked (in
        // wasmtime, or composing), which is no timeout.
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(HostError::Compile {
            path: file.to_path_buf(),
            reason: "the compiler stopped without an answer (a bug in wasmtime or in composing it with its plugs)".into(),
        }),
    }
}

fn prepare_now(
    engine: &Engine,
    file: &Path,
    limits: &Limits,
    cache: &CacheSetting,
    prebuilt: Option<&crate::Prebuilt>,
    plugs: &[PlugSpec],
    log: &Log,
) -> Result<Program, HostError> {
    let guest = read_guest(file, limits.max_module_size)?;
    log.progress(&format!(
        "{} is a {} (sha256 {})",
        file.display(),
        guest.kind.describe(),
        hex::encode(guest.sha256)
    ));
    if !plugs.is_empty() {
        if guest.kind == GuestKind::Preview1 {
            return Err(HostError::Plug {
                path: file.to_path_buf(),
                reason: "plugs satisfy a component's imports, and this is a preview1 module".into(),
            });
        }
        let plugs = plugs
            .iter()
            .map(|spec| crate::compose::Plug::read(spec, limits.max_module_size))
            .collect::<Result<Vec<_>, _>>()?;
        for p in &plugs {
            log.progress(&format!(
                "plug {} (sha256 {})",
                p.file.display(),
                hex::encode(p.sha256)
            ));
        }
        let cache = open_cache(cache, log);
        let digest = crate::compose::digest(&guest.sha256, &plugs);
        let compose = || {
            let t = Instant::now();
            let bytes = crate::compose::compose(file, &guest.bytes, &plugs)?;
            log.progress(&format!("composed with its plugs in {:?}", t.elapsed()));
            Ok(Cow::Owned(bytes))
        };
        let compiled = compile(
            engine,
            file,
            guest.kind,
            &digest,
            compose,
            cache.as_ref(),
            log,
        )?;
        return Ok(Program { guest, compiled });
    }
    if let Some(p) = prebuilt {
        if p.source_sha256 != guest.sha256 {
            log.progress("the prebuilt code is for another program; compiling");
        } else {
            match deserialize(engine, guest.kind, &p.artifact) {
                Ok(compiled) => {
                    log.progress("using the prebuilt code");
                    return Ok(Program { guest, compiled });
                }
                // Another engine (a timeout or fuel), or another Warden.
                Err(e) => log.progress(&format!("the prebuilt code does not fit ({e}); compiling")),
            }
        }
    }
    let cache = open_cache(cache, log);
    let source = || Ok(Cow::Borrowed(guest.bytes.as_slice()));
    let compiled = compile(
        engine,
        file,
        guest.kind,
        &guest.sha256,
        source,
        cache.as_ref(),
        log,
    )?;
    Ok(Program { guest, compiled })
}

fn open_cache(setting: &CacheSetting, log: &Log) -> Option<cache::Cache> {
    let dir: PathBuf = match setting {
        CacheSetting::Disabled => {
            log.progress("compile cache disabled");
            return None;
        }
        CacheSetting::Dir(dir) => dir.clone(),
        CacheSetting::Default => match cache::default_dir() {
            Some(dir) => dir,
            None => {
                log.progress("no user cache directory; compile cache disabled");
                return None;
            }
        },
    };
    match cache::Cache::open(&dir) {
        Ok(cache) => Some(cache),
        Err(why) => {
            log.tell(&crate::Event::CacheUnusable(&why.to_string()));
            None
        }
    }
}

/// Compile the code `source` gives (only called on a cache miss), of
/// `kind`, cached under `digest`: the file's, or its composition's.
fn compile<'a>(
    engine: &Engine,
    path: &Path,
    kind: GuestKind,
    digest: &[u8; 32],
    source: impl FnOnce() -> Result<Cow<'a, [u8]>, HostError>,
    cache: Option<&cache::Cache>,
    log: &Log,
) -> Result<Compiled, HostError> {
    let kind_tag = match kind {
        GuestKind::Preview1 => "module",
        GuestKind::Component(_) | GuestKind::Http(_) => "component",
    };
    let key = cache.map(|_| cache::Cache::key(engine, digest, kind_tag));
    if let (Some(cache), Some(key)) = (cache, &key) {
        let ignoring = |why: &dyn std::fmt::Display| {
            log.tell(&crate::Event::CacheEntryIgnored {
                path: &cache.path(key),
                why: &why.to_string(),
            })
        };
        match cache.get(key) {
            cache::Lookup::Hit(entry) => match deserialize(engine, kind, entry.artifact()) {
                Ok(compiled) => {
                    log.progress(&format!("cache hit: {}", cache.path(key).display()));
                    return Ok(compiled);
                }
                Err(e) => ignoring(&e),
            },
            cache::Lookup::Miss => {
                log.progress(&format!("cache miss: {}", cache.path(key).display()))
            }
            cache::Lookup::Rejected(why) => ignoring(&why),
        }
    }
    let bytes = source()?;
    let t = Instant::now();
    let compile_error = |e: wasmtime::Error| HostError::Compile {
        path: path.to_path_buf(),
        reason: format!("{e:#}"),
    };
    let (compiled, artifact) = match kind {
        GuestKind::Preview1 => {
            let m = Module::new(engine, &bytes).map_err(compile_error)?;
            let a = cache.map(|_| m.serialize()).transpose();
            (Compiled::Module(m), a)
        }
        GuestKind::Component(abi) | GuestKind::Http(abi) => {
            let c = Component::new(engine, &bytes).map_err(compile_error)?;
            let a = cache.map(|_| c.serialize()).transpose();
            (Compiled::Component(c, abi), a)
        }
    };
    log.progress(&format!("compiled in {:?}", t.elapsed()));
    if let (Some(cache), Some(key)) = (cache, &key) {
        let stored = artifact
            .map_err(|e| e.to_string())
            .and_then(|a| a.map_or(Ok(()), |a| cache.put(key, &a).map_err(|e| e.to_string())));
        match stored {
            Ok(()) => log.progress(&format!("cached at {}", cache.path(key).display())),
            Err(e) => log.tell(&crate::Event::CacheWriteFailed(&e)),
        }
    }
    Ok(compiled)
}

fn deserialize(engine: &Engine, kind: GuestKind, artifact: &[u8]) -> wasmtime::Result<Compiled> {
    // SAFETY: wasmtime requires that the bytes came from its own
    // `serialize`. They did: a cache entry passed a SHA-256 check bound to
    // its key and sits in a directory only this user can write; prebuilt
    // code was vouched for by its embedder (`Prebuilt::trusted`); and
    // wasmtime itself refuses artifacts of another version or engine
    // configuration.
    Ok(match kind {
        GuestKind::Preview1 => Compiled::Module(unsafe { Module::deserialize(engine, artifact)? }),
        GuestKind::Component(abi) | GuestKind::Http(abi) => {
            Compiled::Component(unsafe { Component::deserialize(engine, artifact)? }, abi)
        }
    })
}
