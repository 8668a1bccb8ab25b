//! The process's stdout and stderr: everything Warden and its guests write
//! goes through one writer thread.
//!
//! Output can fail or stall: stderr may be a pipe whose reader has gone (a
//! closed pipe), or one nobody reads (`warden run app.wasm | sleep 30`), or
//! a full disk. A blocking `write(2)` on the thread that runs a guest would
//! then hold that thread, and neither `--timeout` nor anything else running
//! on it could act; a panic on a failed write would lose the audit log.
//! So writes are queued here, and one thread of its own does the blocking
//! writes, in the order they were queued (stdout and stderr interleave as
//! they would natively).
//!
//! - Warden's own lines ([`line`], [`raw`]) never wait and never fail: past
//!   [`MAX_QUEUED`] bytes waiting, or on a stream whose writes failed, a
//!   line is dropped. The audit log is the record, not stderr.
//! - Guests' writes ([`push`]) go in while fewer than [`GUEST_BUFFER`] bytes
//!   wait; past that a guest waits for [`poll_room`] asynchronously, which
//!   a timeout can cancel. Bytes in the queue count as written, as bytes in
//!   a pipe's kernel buffer do for a native program. A stream whose write
//!   failed is closed for guests from then on ([`Closed`]).
//! - [`drain`] waits, up to a deadline, for the queue to empty before the
//!   process exits.
//!
//! (Rust ignores SIGPIPE, so a closed pipe is an `EPIPE` error here, never
//! a signal.)

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::{Condvar, LazyLock, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Bytes guests may have waiting before they wait for room.
pub const GUEST_BUFFER: usize = 64 * 1024;

/// Bytes that may wait in all, Warden's own lines included; past it
/// Warden's lines are dropped.
pub const MAX_QUEUED: usize = GUEST_BUFFER + 64 * 1024;

/// One of the process's two output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// File descriptor 1.
    Stdout = 0,
    /// File descriptor 2.
    Stderr = 1,
}

/// A stream whose write failed: no more writes go to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed(pub io::ErrorKind);

#[derive(Default)]
struct State {
    queue: VecDeque<(Output, Vec<u8>)>,
    queued: usize,
    failed: [Option<io::ErrorKind>; 2],
    started: bool,
    /// Guests waiting for room.
    waiters: Vec<Waker>,
}

struct Writer {
    state: Mutex<State>,
    work: Condvar,
    drained: Condvar,
}

static WRITER: LazyLock<Writer> = LazyLock::new(|| Writer {
    state: Mutex::new(State::default()),
    work: Condvar::new(),
    drained: Condvar::new(),
});

fn lock() -> MutexGuard<'static, State> {
    crate::sync::lock(&WRITER.state)
}

/// Queue `bytes` for `stream`, starting the writer the first time.
fn enqueue(state: &mut State, stream: Output, bytes: Vec<u8>) {
    state.queued += bytes.len();
    state.queue.push_back((stream, bytes));
    if !state.started {
        state.started = true;
        let spawned = std::thread::Builder::new()
            .name("warden-output".into())
            .spawn(write_out);
        if spawned.is_err() {
            // No thread, no output: everything is dropped from now on.
            state.failed = [Some(io::ErrorKind::OutOfMemory); 2];
            state.queue.clear();
            state.queued = 0;
            return;
        }
    }
    WRITER.work.notify_one();
}

/// Write `text` and a newline to stderr, as one piece; never waits, never
/// fails (see the module docs).
pub fn line(text: &str) {
    let mut bytes = Vec::with_capacity(text.len() + 1);
    bytes.extend_from_slice(text.as_bytes());
    bytes.push(b'\n');
    say(bytes);
}

/// Write `text` as it is to stderr; never waits, never fails.
pub fn raw(text: &str) {
    say(text.as_bytes().to_vec());
}

fn say(bytes: Vec<u8>) {
    let mut state = lock();
    if state.failed[Output::Stderr as usize].is_some() || state.queued + bytes.len() > MAX_QUEUED {
        return;
    }
    enqueue(&mut state, Output::Stderr, bytes);
}

/// Bytes a guest may queue now on `stream`, or why it may not.
pub fn room(stream: Output) -> Result<usize, Closed> {
    let state = lock();
    match state.failed[stream as usize] {
        Some(kind) => Err(Closed(kind)),
        None => Ok(GUEST_BUFFER.saturating_sub(state.queued)),
    }
}

/// Queue a guest's `bytes` for `stream` (whatever [`room`] said: a guest
/// that writes more than it was offered is not refused).
pub fn push(stream: Output, bytes: Vec<u8>) -> Result<(), Closed> {
    let mut state = lock();
    if let Some(kind) = state.failed[stream as usize] {
        return Err(Closed(kind));
    }
    if !bytes.is_empty() {
        enqueue(&mut state, stream, bytes);
    }
    Ok(())
}

/// Ready when a guest has room on `stream` (or the stream failed, which
/// the next write reports).
pub fn poll_room(stream: Output, cx: &mut Context<'_>) -> Poll<()> {
    let mut state = lock();
    if state.failed[stream as usize].is_some() || state.queued < GUEST_BUFFER {
        return Poll::Ready(());
    }
    if !state.waiters.iter().any(|w| w.will_wake(cx.waker())) {
        state.waiters.push(cx.waker().clone());
    }
    Poll::Pending
}

/// Wait until everything queued is written, or `deadline` passed (`None`:
/// no deadline). Says whether all of it was written.
pub fn drain(deadline: Option<Instant>) -> bool {
    let mut state = lock();
    loop {
        if state.queued == 0 {
            return true;
        }
        let wait = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left,
                _ => return false,
            },
            None => Duration::from_secs(3600),
        };
        state = WRITER
            .drained
            .wait_timeout(state, wait)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// The writer thread: write what is queued, in order, waking guests as room
/// opens. A failed write closes its stream and drops what it had queued.
fn write_out() {
    no_signals_here();
    loop {
        let (stream, chunk) = {
            let mut state = lock();
            loop {
                if let Some((stream, chunk)) = state.queue.pop_front() {
                    break (stream, chunk);
                }
                state = WRITER.work.wait(state).unwrap_or_else(|e| e.into_inner());
            }
        };
        let written = match stream {
            Output::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(&chunk).and_then(|()| out.flush())
            }
            Output::Stderr => io::stderr().lock().write_all(&chunk),
        };
        let mut state = lock();
        state.queued -= chunk.len();
        if let Err(e) = written {
            state.failed[stream as usize] = Some(e.kind());
            let mut dropped = 0;
            state.queue.retain(|(s, b)| {
                let keep = *s != stream;
                if !keep {
                    dropped += b.len();
                }
                keep
            });
            state.queued -= dropped;
        }
        for w in state.waiters.drain(..) {
            w.wake();
        }
        drop(state);
        WRITER.drained.notify_all();
    }
}

/// Block every signal in the calling thread, a writer thread of
/// Warden's own. The process's stop signals are taken by one thread that
/// waits for them (warden-host's `signals`), and each thread started
/// later inherits their blocking; a writer started earlier (by a warning
/// printed before the run began) would not, and a SIGTERM landing there
/// would end the process without its audit log flushed.
pub(crate) fn no_signals_here() {
    // SAFETY: sigfillset initialises the set; pthread_sigmask with a valid
    // set and no old mask wanted.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}
