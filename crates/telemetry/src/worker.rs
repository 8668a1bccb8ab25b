//! The bounded queue between Warden and a collector: items (finished
//! spans, log records) go into a queue of [`QUEUE`] without ever waiting
//! on an export, and one thread per queue takes them out in batches of
//! [`BATCH`] (or what there is after [`BATCH_DELAY`]) and exports them.
//! A full queue drops the item and counts it; a failed export counts its
//! batch as lost. The first loss is told once, through the notices, and
//! the totals at the end.
//!
//! Why not the SDK's batch processors: they drop when full too, but only
//! say so in their internal log, and a loss must be counted and told.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::{Loss, Notice, Notices, Signal};

/// Items waiting for export, at most, per queue.
pub const QUEUE: usize = 2048;

/// Items per export request, at most.
pub const BATCH: usize = 512;

/// How long an item may wait for its batch to fill before it is sent.
pub const BATCH_DELAY: Duration = Duration::from_secs(1);

/// What one queue did, so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Items the collector took.
    pub exported: u64,
    /// Items dropped because the queue was full.
    pub dropped: u64,
    /// Items lost because their export failed, or had not finished when
    /// Warden stopped waiting at its exit.
    pub failed: u64,
}

/// What the thread and the exit count. (What was queued is counted in
/// the queue, under the lock a push holds anyway: an atomic here, added
/// to by every request thread, was a cache line they fought over.)
#[derive(Default)]
struct Tally {
    exported: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    told: AtomicBool,
}

/// What a queue holds: items in the order they came, sent as one batch.
pub(crate) trait Batch: Default + Send + 'static {
    /// What goes in.
    type Item<'a>;
    /// Add one item at the end.
    fn push(&mut self, item: Self::Item<'_>);
    /// How many items it holds.
    fn len(&self) -> usize;
    /// Whether it holds none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Hold none, keeping the memory.
    fn clear(&mut self);
    /// Move its first `n` items to the end of `into`.
    fn move_front(&mut self, n: usize, into: &mut Self);
}

impl<T: Send + 'static> Batch for Vec<T> {
    type Item<'a> = T;
    fn push(&mut self, item: T) {
        Vec::push(self, item);
    }
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn clear(&mut self) {
        Vec::clear(self);
    }
    fn move_front(&mut self, n: usize, into: &mut Self) {
        into.extend(self.drain(..n));
    }
}

/// What the producers and the thread share.
struct Queue<T> {
    items: T,
    /// Flushes asked for and not yet done (each counts what is queued).
    flushes: u64,
    /// Flushes done.
    flushed: u64,
    /// No more items: send what is left and end.
    closed: bool,
    /// Items ever queued.
    queued: u64,
}

struct Shared<T> {
    queue: Mutex<Queue<T>>,
    /// The thread waits here: woken when a batch is full, a flush is
    /// asked for, or the queue closes (never for each item: a wake-up per
    /// span costs a request more than the span does).
    work: Condvar,
    /// Flushers wait here.
    done: Condvar,
}

/// How a batch is exported: `Err` with why, when it was not. The batch
/// is emptied afterwards and its buffer used again (a batch of spans is
/// some 180 KiB: a new one each time would be mapped, faulted in by the
/// threads that fill it, and unmapped).
pub(crate) type Export<T> = Box<dyn FnMut(&T) -> Result<(), String> + Send>;

/// One queue and its thread.
pub(crate) struct Worker<T> {
    signal: Signal,
    shared: Arc<Shared<T>>,
    tally: Arc<Tally>,
    notices: Notices,
    ended: Mutex<Option<Receiver<()>>>,
}

impl<T> std::fmt::Debug for Worker<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("signal", &self.signal)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T: Batch> Worker<T> {
    /// A queue of `signal` items exported by `export` on a thread named
    /// `name`.
    pub(crate) fn start(
        signal: Signal,
        name: &str,
        notices: Notices,
        export: Export<T>,
    ) -> std::io::Result<Worker<T>> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                items: T::default(),
                flushes: 0,
                flushed: 0,
                closed: false,
                queued: 0,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
        });
        let (ended_tx, ended_rx) = sync_channel(1);
        let tally = Arc::new(Tally::default());
        let (sh, t, n) = (shared.clone(), tally.clone(), notices.clone());
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                run(signal, &sh, export, &t, &n);
                let _ = ended_tx.send(());
            })?;
        Ok(Worker {
            signal,
            shared,
            tally,
            notices,
            ended: Mutex::new(Some(ended_rx)),
        })
    }

    /// Queue `item`, never waiting on the export: dropped and counted
    /// when the queue is full (or closed).
    pub(crate) fn push(&self, item: T::Item<'_>) {
        let mut q = lock(&self.shared.queue);
        if q.closed || q.items.len() >= QUEUE {
            drop(q);
            self.tally.dropped.fetch_add(1, Ordering::Relaxed);
            tell_once(self.signal, &self.tally, &self.notices, Loss::QueueFull);
            return;
        }
        q.items.push(item);
        q.queued += 1;
        let full = q.items.len() == BATCH;
        drop(q);
        if full {
            self.shared.work.notify_one();
        }
    }

    /// Export what is queued, waiting at most `timeout`; whether it was.
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut q = lock(&self.shared.queue);
        if q.closed {
            return false;
        }
        q.flushes += 1;
        let mine = q.flushes;
        self.shared.work.notify_one();
        while q.flushed < mine {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            q = self
                .shared
                .done
                .wait_timeout(q, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Stop: export what is queued, waiting at most `timeout` (a collector
    /// that is down or slow delays an exit by no more). What was left is
    /// counted as lost.
    pub(crate) fn shutdown(&self, timeout: Duration) -> Counts {
        lock(&self.shared.queue).closed = true;
        self.shared.work.notify_one();
        let ended = lock(&self.ended).take();
        if let Some(ended) = ended
            && ended.recv_timeout(timeout).is_err()
        {
            // The thread is still exporting; it ends with the process.
            // What it had not sent by now is lost.
            let t = &self.tally;
            let queued = lock(&self.shared.queue).queued;
            let settled = t.exported.load(Ordering::Relaxed) + t.failed.load(Ordering::Relaxed);
            let pending = queued.saturating_sub(settled);
            t.failed.fetch_add(pending, Ordering::Relaxed);
            t.told.store(true, Ordering::Relaxed);
            self.notices.tell(&Notice::Unfinished {
                signal: self.signal,
                after: timeout,
            });
        }
        self.counts()
    }

    /// What it did so far.
    pub(crate) fn counts(&self) -> Counts {
        Counts {
            exported: self.tally.exported.load(Ordering::Relaxed),
            dropped: self.tally.dropped.load(Ordering::Relaxed),
            failed: self.tally.failed.load(Ordering::Relaxed),
        }
    }
}

fn run<T: Batch>(
    signal: Signal,
    shared: &Shared<T>,
    mut export: Export<T>,
    tally: &Tally,
    notices: &Notices,
) {
    let mut send = |batch: &mut T| {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        match export(batch) {
            Ok(()) => {
                tally.exported.fetch_add(n, Ordering::Relaxed);
            }
            Err(why) => {
                tally.failed.fetch_add(n, Ordering::Relaxed);
                tell_once(signal, tally, notices, Loss::Export(why));
            }
        }
        batch.clear();
    };
    let mut batch = T::default();
    let mut since = Instant::now();
    loop {
        let mut q = lock(&shared.queue);
        // Wait for a full batch, a flush, the end, or the batch delay.
        while q.items.len() < BATCH && q.flushes == q.flushed && !q.closed {
            let left = BATCH_DELAY.saturating_sub(since.elapsed());
            if left.is_zero() {
                break;
            }
            q = shared
                .work
                .wait_timeout(q, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        // The queue takes the empty buffer, the batch the full one.
        if q.items.len() <= BATCH {
            std::mem::swap(&mut q.items, &mut batch);
        } else {
            q.items.move_front(BATCH, &mut batch);
        }
        let more = !q.items.is_empty();
        let flushes = q.flushes;
        let closed = q.closed;
        drop(q);
        send(&mut batch);
        since = Instant::now();
        if more {
            // A backlog: send it before waiting again.
            continue;
        }
        let mut q = lock(&shared.queue);
        if q.items.is_empty() && q.flushed < flushes {
            q.flushed = flushes;
            shared.done.notify_all();
        }
        if closed && q.items.is_empty() {
            q.flushed = q.flushes;
            shared.done.notify_all();
            return;
        }
    }
}

fn tell_once(signal: Signal, tally: &Tally, notices: &Notices, loss: Loss) {
    if !tally.told.swap(true, Ordering::Relaxed) {
        notices.tell(&Notice::Lost { signal, loss });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet() -> Notices {
        Notices::new(|_| {})
    }

    #[test]
    fn items_are_exported_in_batches_and_counted() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        let w = Worker::start(
            Signal::Traces,
            "t",
            quiet(),
            Box::new(move |b: &Vec<u32>| {
                g.lock().unwrap().push(b.len());
                Ok(())
            }),
        )
        .unwrap();
        for i in 0..(BATCH as u32 + 3) {
            w.push(i);
        }
        assert!(w.flush(Duration::from_secs(5)));
        let c = w.shutdown(Duration::from_secs(5));
        assert_eq!(c.exported, BATCH as u64 + 3);
        assert_eq!((c.dropped, c.failed), (0, 0));
        assert_eq!(got.lock().unwrap()[0], BATCH);
    }

    #[test]
    fn a_stuck_exporter_never_blocks_a_push_and_drops_are_told_once() {
        let told = Arc::new(Mutex::new(Vec::new()));
        let t = told.clone();
        let notices = Notices::new(move |n| t.lock().unwrap().push(format!("{n:?}")));
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let w = Worker::start(
            Signal::Traces,
            "t",
            notices,
            Box::new(move |_b: &Vec<u32>| {
                let _ = release_rx.lock().unwrap().recv();
                Err("stuck".into())
            }),
        )
        .unwrap();
        let t0 = Instant::now();
        for i in 0..(QUEUE as u32 * 3) {
            w.push(i);
        }
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
        let c = w.counts();
        assert!(c.dropped >= QUEUE as u64, "{c:?}");
        let told_now = told.lock().unwrap().clone();
        assert_eq!(told_now.len(), 1, "{told_now:?}");
        assert!(told_now[0].contains("QueueFull"), "{told_now:?}");
        // Shutdown is bounded even while the export hangs.
        let t0 = Instant::now();
        w.shutdown(Duration::from_millis(200));
        assert!(t0.elapsed() < Duration::from_secs(2));
        drop(release_tx);
    }
}
