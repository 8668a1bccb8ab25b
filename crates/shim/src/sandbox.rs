//! The runwasi side: runwasi (through youki's libcontainer) makes the
//! container (namespaces, cgroups, root file system, mounts) and calls
//! [`WardenSandbox::run_wasi`] as the container's first process. That call
//! makes one [`warden_host::run`] of the program, the same path to a ready
//! instance as `warden run` (or, for an HTTP component, serves it as
//! `warden serve` does), and returns the exit status that becomes the
//! container's.

use std::path::Path;

use containerd_shim_wasm::sandbox::Sandbox;
use containerd_shim_wasm::sandbox::context::{RuntimeContext, Source};
use warden_host::{Finished, GuestKind, LimitHit, Outcome, Prebuilt, RefusedGrowth, RunConfig};

use crate::{compiler, mounts, serving, workload};

/// Exit status when the container could not be run as asked (a manifest
/// that does not read, no program): the error is on its stderr.
const EXIT_CONFIG: i32 = 2;
/// Exit status when a limit from the manifest stopped the guest.
const EXIT_LIMIT: i32 = 124;
/// Exit status when the guest trapped.
const EXIT_TRAP: i32 = 134;

/// One container's sandbox.
#[derive(Default, Clone)]
pub struct WardenSandbox;

fn say(line: &str) {
    warden_net::out::line(line);
}

/// How long the container's last lines may take to be written: runwasi
/// ends the process as soon as the status is returned.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

impl Sandbox for WardenSandbox {
    async fn run_wasi(&self, ctx: &impl RuntimeContext) -> anyhow::Result<i32> {
        let status = run(ctx);
        warden_net::out::drain(Some(std::time::Instant::now() + DRAIN));
        status
    }
}

/// The run, to its exit status.
fn run(ctx: &impl RuntimeContext) -> anyhow::Result<i32> {
    let root = Path::new("/");
    let entry = ctx.entrypoint();
    // A program from a wasm OCI layer is in memory: it is handed to the run
    // as a memory file, which lives as long as this call.
    let mut layer_file = None;
    let mut prebuilt = None;
    let mut held = |bytes: &[u8]| {
        workload::in_memory(bytes).map(|(file, path)| {
            layer_file = Some(file);
            path
        })
    };
    let file = match entry.source {
        Source::File(path) => workload::program(root, &path.to_string_lossy(), &entry.func),
        Source::Oci([layer]) if !layer.precompiled => held(&layer.layer),
        Source::Oci([layer]) => match compiler::unpack(&layer.layer) {
            Some((source, sha256, artifact)) => {
                // SAFETY: a precompiled layer is what this shim's compiler
                // made (runwasi labels it with the shim's name and key) and
                // containerd kept in its content store, which only root
                // writes.
                prebuilt = Some(unsafe { Prebuilt::trusted(artifact.to_vec(), sha256) });
                held(source)
            }
            None => Err(anyhow::anyhow!(
                "the image's precompiled layer is not Warden's"
            )),
        },
        Source::Oci(layers) => Err(anyhow::anyhow!(
            "the image has {} wasm layers; Warden runs one program per container",
            layers.len()
        )),
    };
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let config = file.and_then(|file| {
        workload::config(workload::Container {
            args: ctx.args(),
            envs: ctx.envs(),
            file,
            root,
            mounts: mounts::parse(&mountinfo),
        })
    });
    let config = match config {
        Ok(c) => RunConfig { prebuilt, ..c },
        Err(e) => {
            say(&format!("warden: {e:#}"));
            return Ok(EXIT_CONFIG);
        }
    };
    // The run takes over SIGTERM and friends for the threads it starts;
    // runwasi's threads, started before, would take them too, and in the
    // container's first process a signal without a handler is dropped.
    if let Err(e) = warden_host::hand_over_stop_signals() {
        say(&format!("warden: cannot set up signal handling: {e}"));
        return Ok(EXIT_CONFIG);
    }
    let http = matches!(
        warden_host::read_guest(&config.file, config.limits.max_module_size),
        Ok(g) if matches!(g.kind, GuestKind::Http(_))
    );
    // The run (or the server) makes its own runtime, on a thread of its
    // own: runwasi's runtime is running on this one.
    let ran = if http {
        let serving = match serving::config(config) {
            Ok(s) => s,
            Err(e) => {
                say(&format!("warden: {e:#}"));
                return Ok(EXIT_CONFIG);
            }
        };
        // Served until SIGTERM, then requests in flight get their grace.
        std::thread::Builder::new()
            .name("warden-serve".into())
            .spawn(move || warden_host::serve::serve(&serving).map(|_| None))
    } else {
        std::thread::Builder::new()
            .name("warden-run".into())
            .spawn(move || warden_host::run(&config).map(Some))
    }
    .map_err(|e| anyhow::anyhow!("cannot start the run: {e}"))?;
    let joined = ran.join();
    drop(layer_file);
    match joined {
        Ok(Ok(Some(finished))) => Ok(ending(&finished)),
        Ok(Ok(None)) => Ok(0),
        Ok(Err(e)) => {
            say(&format!("warden: {e}"));
            Ok(EXIT_CONFIG)
        }
        Err(_) => {
            say("warden: the run ended unexpectedly");
            Ok(EXIT_TRAP)
        }
    }
}

/// The container's exit status for how the guest ended, with a line on
/// its stderr for anything but an exit.
fn ending(finished: &Finished) -> i32 {
    if let Some(refused) = finished.refused {
        say(&match refused {
            RefusedGrowth::Memory(wanted) => format!(
                "warden: the manifest's limits.max_memory refused the guest's growth of linear memory to {wanted} bytes"
            ),
            RefusedGrowth::Table(wanted) => format!(
                "warden: the table element limit (or limits.max_memory) refused the guest's growth of a table to {wanted} elements"
            ),
        });
    }
    match &finished.outcome {
        // Exit statuses are 8 bits, as the OS would cut them.
        Outcome::Exited(code) => i32::from(*code as u8),
        Outcome::Limit(LimitHit::Timeout(d)) => {
            say(&format!(
                "warden: guest stopped: the manifest's limits.timeout ({d:?}) was reached"
            ));
            EXIT_LIMIT
        }
        Outcome::Limit(LimitHit::Fuel(n)) => {
            say(&format!(
                "warden: guest stopped: the manifest's limits.fuel ({n}) was used up"
            ));
            EXIT_LIMIT
        }
        Outcome::Trapped { reason, .. } => {
            say(&format!("warden: guest trapped: {reason}"));
            EXIT_TRAP
        }
    }
}
