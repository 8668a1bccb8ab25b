//! SIGINT and SIGTERM: stop, with the audit log flushed.
//!
//! [`install`] blocks both signals in the calling thread (and so in every
//! thread started after it: the runtime's, wasmtime's, the audit writer's)
//! and waits for them in one thread of its own. When one arrives, the
//! running guest's audit log is flushed and closed and Warden exits with
//! 128 + the signal number (130, 143). This works whatever the guest is
//! doing, even spinning in wasm code that never yields to the runtime.

use std::io;
use std::sync::{Arc, Mutex};

use warden_net::Gate;

/// The gate of the guest running now, whose audit log must be flushed.
static RUNNING: Mutex<Option<Arc<Gate>>> = Mutex::new(None);

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set it is given; sigaddset adds
    // valid signal numbers to an initialised set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// Take over SIGINT and SIGTERM for the process (see the module docs).
pub(crate) fn install() -> io::Result<()> {
    let set = signal_set();
    // SAFETY: a valid, initialised set; the old mask is not wanted.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    std::thread::Builder::new()
        .name("warden-signals".into())
        .spawn(move || {
            loop {
                let mut sig = 0;
                // SAFETY: a valid set and a valid place for the result.
                if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                    continue;
                }
                let gate = RUNNING.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(gate) = gate {
                    crate::report_audit(gate.finish());
                }
                let name = if sig == libc::SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                };
                eprintln!("warden: stopped by {name}");
                std::process::exit(128 + sig);
            }
        })?;
    Ok(())
}

/// Flush `gate`'s audit log if a signal stops Warden.
pub(crate) fn watch(gate: &Arc<Gate>) {
    *RUNNING.lock().unwrap_or_else(|e| e.into_inner()) = Some(gate.clone());
}
