//! JSON lines written by a thread of their own through a bounded queue:
//! the queue and writer behind every [`AuditLog`](crate::AuditLog) and
//! `warden serve`'s access log.
//!
//! Whoever records never waits: when the queue is full a line is dropped
//! and counted. What can make the log itself a weapon is bounded too:
//!
//! - **Opening** never blocks: a FIFO nobody reads yet is waited for at
//!   most [`OPEN_WAIT`], then opening fails with a clear error (a plain
//!   `open` would block before the guest even started, where no limit
//!   applies).
//! - **Size**: a file is rotated when the next line would take it past its
//!   maximum: it becomes `FILE.1` (replacing an older one) and a new `FILE`
//!   starts with a `log-rotated` line saying so; the disk holds at most
//!   twice the maximum. Standard error is the operator's stream and is not
//!   bounded here.
//! - **Finishing** waits at most [`FINISH_WAIT`] for the writer to write
//!   what is queued: a destination that takes nothing (a FIFO whose reader
//!   stalled) does not hold the process at exit; what it did not take is
//!   counted as lost.
//!
//! Only lines that reached the destination count as written: a line is
//! counted once the write and the flush after it succeeded. After a write
//! error nothing more is written, and the lines that came after are
//! counted as lost, apart from the ones dropped because the queue was full.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// How many lines may wait for the writer before new ones are dropped.
pub const QUEUE: usize = 8192;

/// The largest a log file grows before it is rotated, by default.
pub const DEFAULT_MAX_SIZE: u64 = 64 << 20;

/// How long opening a log waits for a FIFO's reader to appear.
pub const OPEN_WAIT: Duration = Duration::from_secs(5);

/// How long finishing a log waits for its writer to write what is queued.
pub const FINISH_WAIT: Duration = Duration::from_secs(5);

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditDest {
    /// Standard error.
    Stderr,
    /// A file, appended to (created 0600 if missing).
    File(PathBuf),
}

/// Errors opening a log.
#[derive(Debug, thiserror::Error)]
#[error("cannot open audit log {}: {source}", path.display())]
pub struct AuditError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: io::Error,
}

/// What happened to the lines, reported at exit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditSummary {
    /// Lines written (and flushed).
    pub written: u64,
    /// Lines dropped because the queue was full (the writer fell behind).
    pub dropped: u64,
    /// Lines not written because writing had failed (or the writer was
    /// still stuck when the log finished).
    pub lost: u64,
    /// The first write error, after which nothing more was written.
    pub error: Option<String>,
    /// How many times the file was rotated at its maximum size.
    pub rotated: u64,
}

/// What the writer thread hands back: lines written, lines in hand when
/// writing failed, the first write error, and the rotations.
struct Written {
    written: u64,
    in_hand: u64,
    error: Option<String>,
    rotated: u64,
}

/// JSON lines written by a thread of their own (see the module docs).
pub struct LineLog {
    tx: Mutex<Option<SyncSender<String>>>,
    dropped: AtomicU64,
    lost: AtomicU64,
    queued: std::sync::Arc<AtomicU64>,
    writer: Mutex<Option<(JoinHandle<Written>, Receiver<()>)>>,
}

/// A file that is rotated at a size: its path and maximum.
struct Rotating {
    path: PathBuf,
    max: u64,
    size: u64,
}

impl LineLog {
    /// Open `dest` for appending (a file is created 0600 if missing, and
    /// rotated past `max_size` bytes).
    pub fn open(dest: &AuditDest, max_size: u64) -> Result<LineLog, AuditError> {
        match dest {
            AuditDest::Stderr => Ok(LineLog::with_writer(Box::new(io::stderr()), QUEUE)),
            AuditDest::File(path) => {
                let file = open_file(path).map_err(|source| AuditError {
                    path: path.clone(),
                    source,
                })?;
                let size = file.metadata().map_or(0, |m| m.len());
                // Only a regular file grows on the disk; a FIFO or a device
                // has no size to bound.
                let regular = file.metadata().is_ok_and(|m| m.is_file());
                let rotating = regular.then(|| Rotating {
                    path: path.clone(),
                    max: max_size.max(1),
                    size,
                });
                Ok(LineLog::start(Box::new(file), QUEUE, rotating))
            }
        }
    }

    /// Lines written to `out`, with room for `queue` waiting ones.
    pub fn with_writer(out: Box<dyn Write + Send>, queue: usize) -> LineLog {
        LineLog::start(out, queue, None)
    }

    fn start(out: Box<dyn Write + Send>, queue: usize, rotating: Option<Rotating>) -> LineLog {
        let (tx, rx) = sync_channel(queue);
        let (done_tx, done_rx) = sync_channel(1);
        let queued = std::sync::Arc::new(AtomicU64::new(0));
        let q = queued.clone();
        let writer = std::thread::Builder::new()
            .name("warden-log".into())
            .spawn(move || {
                crate::out::no_signals_here();
                let w = write_all(rx, out, rotating, &q);
                let _ = done_tx.send(());
                w
            })
            .expect("spawning a log writer thread");
        LineLog {
            tx: Mutex::new(Some(tx)),
            dropped: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            queued,
            writer: Mutex::new(Some((writer, done_rx))),
        }
    }

    /// Queue one JSON object as a line (dropped and counted when the queue
    /// is full).
    pub fn send_json(&self, rec: serde_json::Map<String, serde_json::Value>) {
        self.send(serde_json::Value::Object(rec).to_string());
    }

    fn send(&self, line: String) {
        let tx = crate::sync::lock(&self.tx);
        let Some(tx) = tx.as_ref() else {
            self.lost.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match tx.try_send(line) {
            Ok(()) => {
                self.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // The writer stopped after a write error.
            Err(TrySendError::Disconnected(_)) => {
                self.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Close the queue, wait (at most [`FINISH_WAIT`]) for the writer to
    /// write what is queued, and say what happened. Lines after this are
    /// lost (and counted).
    pub fn finish(&self) -> AuditSummary {
        drop(crate::sync::lock(&self.tx).take());
        let writer = crate::sync::lock(&self.writer).take();
        let w = match writer {
            Some((handle, done)) => match done.recv_timeout(FINISH_WAIT) {
                Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    match handle.join() {
                        Ok(w) => w,
                        Err(_) => Written {
                            written: 0,
                            in_hand: 0,
                            error: Some("the log writer thread panicked".to_string()),
                            rotated: 0,
                        },
                    }
                }
                // Stuck on a destination that takes nothing: leave it.
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Written {
                    written: 0,
                    in_hand: self.queued.load(Ordering::Relaxed),
                    error: Some(format!(
                        "the destination took nothing for {}s; stopped waiting for it",
                        FINISH_WAIT.as_secs()
                    )),
                    rotated: 0,
                },
            },
            None => Written {
                written: 0,
                in_hand: 0,
                error: None,
                rotated: 0,
            },
        };
        AuditSummary {
            written: w.written,
            dropped: self.dropped.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed) + w.in_hand,
            error: w.error,
            rotated: w.rotated,
        }
    }
}

/// Open `path` for appending without blocking: a FIFO with no reader yet
/// is tried again until [`OPEN_WAIT`] has passed, then refused.
fn open_file(path: &Path) -> io::Result<std::fs::File> {
    let deadline = Instant::now() + OPEN_WAIT;
    loop {
        let opened = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NONBLOCK)
            .open(path);
        match opened {
            Ok(file) => {
                // Writes may wait (on a slow reader): that is the writer
                // thread's to do, never the guest's.
                set_blocking(&file)?;
                return Ok(file);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                if Instant::now() >= deadline {
                    return Err(io::Error::other(format!(
                        "it is a FIFO that nothing reads (waited {}s for a reader)",
                        OPEN_WAIT.as_secs()
                    )));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

fn set_blocking(file: &std::fs::File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor `file` owns.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The writer thread: write lines as they come, flushing whenever the queue
/// runs dry, rotating a file at its maximum, until every sender is gone.
fn write_all(
    rx: Receiver<String>,
    out: Box<dyn Write + Send>,
    mut rotating: Option<Rotating>,
    queued: &AtomicU64,
) -> Written {
    let mut out = BufWriter::new(out);
    let mut w = Written {
        written: 0,
        in_hand: 0,
        error: None,
        rotated: 0,
    };
    let failed = |w: &mut Written, unflushed: u64, rx: Receiver<String>, e: io::Error| {
        // Stop taking lines (senders now count them as lost), and count
        // the ones already queued.
        w.in_hand = unflushed + rx.try_iter().count() as u64;
        w.error = Some(e.to_string());
    };
    while let Ok(line) = rx.recv() {
        let mut next = Some(line);
        let mut unflushed = 0;
        while let Some(line) = next {
            queued.fetch_sub(1, Ordering::Relaxed);
            unflushed += 1;
            if let Some(r) = rotating.as_mut()
                && r.size > 0
                && r.size + line.len() as u64 + 1 > r.max
            {
                match rotate(&mut out, r) {
                    Ok(()) => w.rotated += 1,
                    Err(e) => {
                        failed(&mut w, unflushed, rx, e);
                        return w;
                    }
                }
            }
            if let Err(e) = writeln!(out, "{line}") {
                failed(&mut w, unflushed, rx, e);
                return w;
            }
            if let Some(r) = rotating.as_mut() {
                r.size += line.len() as u64 + 1;
            }
            next = rx.try_recv().ok();
        }
        if let Err(e) = out.flush() {
            failed(&mut w, unflushed, rx, e);
            return w;
        }
        w.written += unflushed;
    }
    w
}

/// Move the full file aside (`FILE.1`) and start a new one, whose first
/// line says so.
fn rotate(out: &mut BufWriter<Box<dyn Write + Send>>, r: &mut Rotating) -> io::Result<()> {
    out.flush()?;
    let mut old = r.path.clone().into_os_string();
    old.push(".1");
    std::fs::rename(&r.path, &old)?;
    let file = open_file(&r.path)?;
    *out = BufWriter::new(Box::new(file));
    let mut note = serde_json::Map::new();
    note.insert(
        "ts".into(),
        crate::timestamp::rfc3339(SystemTime::now()).into(),
    );
    note.insert("event".into(), "log-rotated".into());
    note.insert(
        "reason".into(),
        format!(
            "the log reached its maximum size ({} bytes); the lines before this are in {}",
            r.max,
            Path::new(&old).display()
        )
        .into(),
    );
    let line = serde_json::Value::Object(note).to_string();
    writeln!(out, "{line}")?;
    r.size = line.len() as u64 + 1;
    Ok(())
}
