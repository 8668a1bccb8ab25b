//! The bounded queue between Warden and a collector: items (finished
//! spans, log records) go into a queue of [`QUEUE`] without ever waiting,
//! and one thread per queue takes them out in batches and exports them.
//! A full queue drops the item and counts it; a failed export counts its
//! batch as lost. The first loss is told once, through the notices, and
//! the totals at the end.
//!
//! Why not the SDK's batch processors: they drop when full too, but only
//! say so in their internal log, and a loss must be counted and told.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
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

#[derive(Default)]
struct Tally {
    queued: AtomicU64,
    exported: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    told: AtomicBool,
}

enum Msg<T> {
    Item(T),
    /// Export what is queued, then answer.
    Flush(SyncSender<()>),
}

/// How a batch is exported: `Err` with why, when it was not.
pub(crate) type Export<T> = Box<dyn FnMut(Vec<T>) -> Result<(), String> + Send>;

/// One queue and its thread.
pub(crate) struct Worker<T> {
    signal: Signal,
    tx: Mutex<Option<SyncSender<Msg<T>>>>,
    tally: Arc<Tally>,
    notices: Notices,
    done: Mutex<Option<Receiver<()>>>,
}

impl<T> std::fmt::Debug for Worker<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("signal", &self.signal)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Worker<T> {
    /// A queue of `signal` items exported by `export` on a thread named
    /// `name`.
    pub(crate) fn start(
        signal: Signal,
        name: &str,
        notices: Notices,
        export: Export<T>,
    ) -> std::io::Result<Worker<T>> {
        let (tx, rx) = sync_channel(QUEUE);
        let (done_tx, done_rx) = sync_channel(1);
        let tally = Arc::new(Tally::default());
        let t = tally.clone();
        let n = notices.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                run(signal, rx, export, &t, &n);
                let _ = done_tx.send(());
            })?;
        Ok(Worker {
            signal,
            tx: Mutex::new(Some(tx)),
            tally,
            notices,
            done: Mutex::new(Some(done_rx)),
        })
    }

    /// Queue `item`, never waiting: dropped and counted when the queue is
    /// full (or the worker has stopped).
    pub(crate) fn push(&self, item: T) {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let full = match tx.as_ref() {
            Some(tx) => match tx.try_send(Msg::Item(item)) {
                Ok(()) => {
                    self.tally.queued.fetch_add(1, Ordering::Relaxed);
                    false
                }
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => true,
            },
            None => true,
        };
        drop(tx);
        if full {
            self.tally.dropped.fetch_add(1, Ordering::Relaxed);
            tell_once(self.signal, &self.tally, &self.notices, Loss::QueueFull);
        }
    }

    /// Export what is queued, waiting at most `timeout`; whether it was.
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        let (ack_tx, ack_rx) = sync_channel(1);
        let sent = {
            let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
            let deadline = Instant::now() + timeout;
            let mut msg = Msg::Flush(ack_tx);
            loop {
                match tx.as_ref().map(|tx| tx.try_send(msg)) {
                    Some(Ok(())) => break true,
                    Some(Err(TrySendError::Full(m))) if Instant::now() < deadline => {
                        msg = m;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    _ => break false,
                }
            }
        };
        sent && ack_rx.recv_timeout(timeout).is_ok()
    }

    /// Stop: export what is queued, waiting at most `timeout` (a collector
    /// that is down or slow delays an exit by no more). What was left is
    /// counted as lost.
    pub(crate) fn shutdown(&self, timeout: Duration) -> Counts {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(tx);
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(done) = done
            && done.recv_timeout(timeout).is_err()
        {
            // The thread is still exporting; it ends with the process.
            // What it had not sent by now is lost.
            let t = &self.tally;
            let settled = t.exported.load(Ordering::Relaxed) + t.failed.load(Ordering::Relaxed);
            let pending = t.queued.load(Ordering::Relaxed).saturating_sub(settled);
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

fn run<T>(
    signal: Signal,
    rx: Receiver<Msg<T>>,
    mut export: Export<T>,
    tally: &Tally,
    notices: &Notices,
) {
    let mut batch: Vec<T> = Vec::with_capacity(BATCH);
    let mut oldest: Option<Instant> = None;
    let mut send = |batch: &mut Vec<T>| {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        match export(std::mem::replace(batch, Vec::with_capacity(BATCH))) {
            Ok(()) => {
                tally.exported.fetch_add(n, Ordering::Relaxed);
            }
            Err(why) => {
                tally.failed.fetch_add(n, Ordering::Relaxed);
                tell_once(signal, tally, notices, Loss::Export(why));
            }
        }
    };
    loop {
        let wait = oldest.map_or(BATCH_DELAY, |t| BATCH_DELAY.saturating_sub(t.elapsed()));
        match rx.recv_timeout(wait) {
            Ok(Msg::Item(item)) => {
                oldest.get_or_insert_with(Instant::now);
                batch.push(item);
                if batch.len() >= BATCH {
                    send(&mut batch);
                    oldest = None;
                }
            }
            Ok(Msg::Flush(ack)) => {
                send(&mut batch);
                oldest = None;
                let _ = ack.send(());
            }
            Err(RecvTimeoutError::Timeout) => {
                send(&mut batch);
                oldest = None;
            }
            Err(RecvTimeoutError::Disconnected) => {
                send(&mut batch);
                return;
            }
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
            Box::new(move |b: Vec<u32>| {
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
            Box::new(move |_b: Vec<u32>| {
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
