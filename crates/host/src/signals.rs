//! Ending the process from another thread: signals, and the timeout's
//! last resort.
//!
//! [`install`] blocks SIGINT, SIGTERM, SIGHUP and SIGQUIT in the calling
//! thread (and so in every thread started after it: the runtime's,
//! wasmtime's, the audit and stdio writers') and waits for them in one
//! thread of its own. When one arrives, the running guest's audit log is
//! flushed and closed and Warden exits with 128 + the signal number (130,
//! 143, 129, 131). This works whatever the guest is doing, even spinning in
//! wasm code that never yields to the runtime, and whatever state stderr is
//! in (a line that cannot be written is dropped).
//!
//! Only one thread ever ends the process ([`exit`] holds a lock while it
//! does), so a signal, the timeout's watchdog and the normal end cannot
//! race each other's clean-up.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use warden_net::Gate;

/// The gate of the guest running now, whose audit log must be flushed.
static RUNNING: Mutex<Option<Arc<Gate>>> = Mutex::new(None);

/// How long an exit from another thread waits for queued output.
const EXIT_DRAIN: std::time::Duration = std::time::Duration::from_millis(200);

/// Held by whoever ends the process.
static EXITING: Mutex<()> = Mutex::new(());

/// Work for an exit a signal or the timeout's watchdog forces (see
/// [`on_forced_exit`]).
type Hook = Box<dyn FnOnce() + Send>;
static AT_EXIT: Mutex<Vec<Hook>> = Mutex::new(Vec::new());

/// Do `f` if a signal or the timeout's watchdog ends the process (the
/// normal path does its own clean-up): the last registered runs first.
/// The binary flushes its telemetry this way.
pub fn on_forced_exit(f: impl FnOnce() + Send + 'static) {
    AT_EXIT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Box::new(f));
}

/// Run `f` with the stop signals blocked in this thread, so that every
/// thread it starts (a library's worker, say) leaves them to Warden's
/// signal thread; the mask is restored after.
pub fn with_stop_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    let set = signal_set();
    // SAFETY: zeroed is a valid sigset_t to be written by pthread_sigmask.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: a valid, initialised set and a valid place for the old one.
    let blocked = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) } == 0;
    let out = f();
    if blocked {
        // SAFETY: restoring the mask read above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    }
    out
}

/// The signals Warden handles, and their names.
const HANDLED: [(libc::c_int, &str); 4] = [
    (libc::SIGINT, "SIGINT"),
    (libc::SIGTERM, "SIGTERM"),
    (libc::SIGHUP, "SIGHUP"),
    (libc::SIGQUIT, "SIGQUIT"),
];

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set it is given; sigaddset adds
    // valid signal numbers to an initialised set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for (sig, _) in HANDLED {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// The thread waiting for the handled signals (a `pthread_t`; 0 before
/// it runs), for [`hand_over_stop_signals`].
static WAITER: AtomicU64 = AtomicU64::new(0);

fn waiting_here() {
    // SAFETY: pthread_self has no preconditions.
    WAITER.store(unsafe { libc::pthread_self() } as u64, Ordering::Release);
}

extern "C" fn hand_over(sig: libc::c_int) {
    let waiter = WAITER.load(Ordering::Acquire);
    if waiter != 0 {
        // SAFETY: pthread_kill is async-signal-safe; the waiting thread
        // lives as long as the process.
        unsafe { libc::pthread_kill(waiter as libc::pthread_t, sig) };
    }
}

/// For a process with threads Warden did not start (an embedder's async
/// runtime, started before [`crate::run`]): such a thread does not block
/// the handled signals, so one could land there and, in a container's
/// first process, be dropped. This blocks them in the calling thread and
/// installs a handler that passes each to the thread that waits for them.
/// Call it before `run` or `serve`.
pub fn hand_over_stop_signals() -> io::Result<()> {
    let set = signal_set();
    // SAFETY: a valid, initialised set; the old mask is not wanted.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    for (sig, _) in HANDLED {
        // SAFETY: a zeroed sigaction with a valid handler and an empty
        // mask is a valid argument; the old action is not wanted.
        let r = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = hand_over as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut())
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Take over the handled signals for the process (see the module docs);
/// what is said when one ends it goes to `events`.
pub(crate) fn install(events: crate::Events) -> io::Result<()> {
    let set = signal_set();
    // SAFETY: a valid, initialised set; the old mask is not wanted.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    std::thread::Builder::new()
        .name("warden-signals".into())
        .spawn(move || {
            waiting_here();
            loop {
                let mut sig = 0;
                // SAFETY: a valid set and a valid place for the result.
                if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                    continue;
                }
                let name = HANDLED
                    .iter()
                    .find(|(s, _)| *s == sig)
                    .map_or("a signal", |(_, n)| n);
                exit(128 + sig, |gate| {
                    if let Some(gate) = gate {
                        crate::events::report_gate(&events, &gate, None);
                    }
                    events(&crate::Event::StoppedBy(name));
                });
            }
        })?;
    Ok(())
}

/// What a signal asks of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// SIGHUP: reload what can be reloaded (the certificate).
    Reload,
    /// SIGTERM or SIGINT, the first time: stop gracefully.
    Stop(&'static str),
}

/// The signals a server receives, in order.
pub(crate) struct Stop(tokio::sync::mpsc::UnboundedReceiver<Event>);

impl Stop {
    /// The next signal's event. If the sending thread is gone, stop.
    pub(crate) async fn next(&mut self) -> Event {
        self.0
            .recv()
            .await
            .unwrap_or(Event::Stop("the signal thread ended"))
    }
}

/// Take over the handled signals for a server: SIGHUP is a reload, the
/// first SIGTERM or SIGINT a graceful stop; a second one (or SIGQUIT) ends
/// the process at once, as for `run`; what is said then goes to `events`.
pub(crate) fn install_serving(events: crate::Events) -> io::Result<Stop> {
    let set = signal_set();
    // SAFETY: a valid, initialised set; the old mask is not wanted.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("warden-signals".into())
        .spawn(move || {
            waiting_here();
            let mut stopping = false;
            loop {
                let mut sig = 0;
                // SAFETY: a valid set and a valid place for the result.
                if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                    continue;
                }
                let name = HANDLED
                    .iter()
                    .find(|(s, _)| *s == sig)
                    .map_or("a signal", |(_, n)| n);
                let event = match sig {
                    libc::SIGHUP => Some(Event::Reload),
                    libc::SIGTERM | libc::SIGINT if !stopping => {
                        stopping = true;
                        Some(Event::Stop(name))
                    }
                    _ => None,
                };
                match event {
                    Some(e) if tx.send(e).is_ok() => {}
                    _ => exit(128 + sig, |_| {
                        events(&crate::Event::StoppedBy(name));
                    }),
                }
            }
        })?;
    Ok(Stop(rx))
}

/// Flush `gate`'s audit log if the process is ended from another thread.
pub(crate) fn watch(gate: &Arc<Gate>) {
    *RUNNING.lock().unwrap_or_else(|e| e.into_inner()) = Some(gate.clone());
}

/// End the process with `code`, after `last` (given the running gate) has
/// said and flushed what it must. The first caller wins; any other waits
/// for the process to end.
pub(crate) fn exit(code: i32, last: impl FnOnce(Option<Arc<Gate>>)) -> ! {
    let _only_one = EXITING.lock().unwrap_or_else(|e| e.into_inner());
    let gate = RUNNING.lock().unwrap_or_else(|e| e.into_inner()).take();
    last(gate);
    let hooks = std::mem::take(&mut *AT_EXIT.lock().unwrap_or_else(|e| e.into_inner()));
    for hook in hooks.into_iter().rev() {
        hook();
    }
    // What was said goes out if it can within a moment; a stderr nobody
    // reads must not hold the exit.
    warden_net::out::drain(Some(std::time::Instant::now() + EXIT_DRAIN));
    std::process::exit(code)
}

/// Claim the end of the process for the normal path: after this, no signal
/// or watchdog starts its own clean-up (they wait for the process to end).
/// If one already has, this waits for it to end the process.
pub(crate) fn claim_exit() {
    std::mem::forget(EXITING.lock().unwrap_or_else(|e| e.into_inner()));
}
