//! A connection's bytes as the guest sees them: WASI 0.2 input and output
//! streams, and WASI 0.3 stream producers and consumers, over the reader
//! and writer halves a `warden_net::socket::component` socket hands out (plain TCP, or a
//! TLS session underneath).
//!
//! Writing ends with a shutdown of the writer (a FIN, and a TLS
//! `close_notify`), whether the guest shuts the direction down, drops its
//! stream, or its 0.3 stream ends; data already written is sent first.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncWriteExt, ReadBuf};
use warden_net::socket::component::{Reader, Writer};
use wasmtime::StoreContextMut;
use wasmtime::component::{Destination, Source, StreamConsumer, StreamProducer, StreamResult};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Bytes the guest may have waiting to be written per stream.
const WRITE_BUDGET: usize = 64 * 1024;

/// The most bytes one read moves.
const READ_CHUNK: usize = 64 * 1024;

#[derive(Default)]
struct WriteState {
    queue: VecDeque<Bytes>,
    queued: usize,
    /// The guest asked for a flush that has not finished.
    flushing: bool,
    /// No more writes: the writer is shut down once the queue is written.
    closing: bool,
    /// Writing failed (or the stream was shut down).
    failed: Option<io::ErrorKind>,
    waker: Option<Waker>,
}

struct WriteShared {
    state: Mutex<WriteState>,
    work: tokio::sync::Notify,
}

impl WriteShared {
    fn lock(&self) -> MutexGuard<'_, WriteState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake(&self) {
        if let Some(w) = self.lock().waker.take() {
            w.wake();
        }
    }
}

/// A WASI 0.2 output stream over a [`Writer`], written by a task of its
/// own.
pub(crate) struct WriteStream(Arc<WriteShared>);

/// Shuts a [`WriteStream`]'s writer down (after what is queued), from the
/// socket's `shutdown`.
#[derive(Clone)]
pub(crate) struct WriteCloser(Arc<WriteShared>);

impl WriteCloser {
    /// No more writes: send what is queued, then shut the writer down.
    pub(crate) fn close(&self) {
        self.0.lock().closing = true;
        self.0.work.notify_one();
    }
}

impl WriteStream {
    pub(crate) fn new(writer: Writer) -> (Self, WriteCloser) {
        let shared = Arc::new(WriteShared {
            state: Mutex::new(WriteState::default()),
            work: tokio::sync::Notify::new(),
        });
        let shared_task = shared.clone();
        let ending = warden_net::conn::Ending::new();
        tokio::spawn(async move {
            let _ending = ending;
            write_out(shared_task, writer).await
        });
        (WriteStream(shared.clone()), WriteCloser(shared))
    }
}

impl Drop for WriteStream {
    fn drop(&mut self) {
        WriteCloser(self.0.clone()).close();
    }
}

/// The task behind a [`WriteStream`].
async fn write_out(shared: Arc<WriteShared>, mut writer: Writer) {
    enum Job {
        Write(Bytes),
        Flush,
        Close,
    }
    loop {
        let job = {
            let mut state = shared.lock();
            if let Some(bytes) = state.queue.pop_front() {
                Some(Job::Write(bytes))
            } else if state.flushing {
                Some(Job::Flush)
            } else if state.closing {
                Some(Job::Close)
            } else {
                None
            }
        };
        let Some(job) = job else {
            shared.work.notified().await;
            continue;
        };
        let result = match job {
            Job::Write(bytes) => {
                let n = bytes.len();
                let r = writer.write_all(&bytes).await;
                shared.lock().queued -= n;
                r
            }
            Job::Flush => {
                let r = writer.flush().await;
                shared.lock().flushing = false;
                r
            }
            Job::Close => {
                let r = writer.shutdown().await;
                let mut state = shared.lock();
                state.failed.get_or_insert(io::ErrorKind::BrokenPipe);
                drop(state);
                shared.wake();
                let _ = r;
                return;
            }
        };
        if let Err(e) = result {
            let mut state = shared.lock();
            state.failed = Some(e.kind());
            state.queue.clear();
            state.queued = 0;
            state.flushing = false;
            drop(state);
            shared.wake();
            return;
        }
        shared.wake();
    }
}

fn stream_error(kind: io::ErrorKind) -> StreamError {
    match kind {
        io::ErrorKind::BrokenPipe => StreamError::Closed,
        k => StreamError::LastOperationFailed(wasmtime::Error::msg(format!("{k}"))),
    }
}

impl OutputStream for WriteStream {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        let mut state = self.0.lock();
        if let Some(kind) = state.failed {
            return Err(stream_error(kind));
        }
        if state.closing {
            return Err(StreamError::Closed);
        }
        if bytes.len() > WRITE_BUDGET.saturating_sub(state.queued) {
            return Err(StreamError::Trap(wasmtime::Error::msg(
                "write of more than check-write allowed",
            )));
        }
        if bytes.is_empty() {
            return Ok(());
        }
        state.queued += bytes.len();
        state.queue.push_back(bytes);
        drop(state);
        self.0.work.notify_one();
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        let mut state = self.0.lock();
        if let Some(kind) = state.failed {
            return Err(stream_error(kind));
        }
        state.flushing = true;
        drop(state);
        self.0.work.notify_one();
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        let state = self.0.lock();
        if let Some(kind) = state.failed {
            return Err(stream_error(kind));
        }
        if state.closing {
            return Err(StreamError::Closed);
        }
        if state.flushing {
            return Ok(0);
        }
        Ok(WRITE_BUDGET.saturating_sub(state.queued))
    }
}

#[async_trait::async_trait]
impl Pollable for WriteStream {
    async fn ready(&mut self) {
        std::future::poll_fn(|cx| {
            let mut state = self.0.lock();
            let ready = state.failed.is_some()
                || state.closing
                || (!state.flushing && state.queued < WRITE_BUDGET);
            if ready {
                Poll::Ready(())
            } else {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// The guest's end of a WASI 0.3 `receive`: bytes read from a [`Reader`];
/// `done` hears how the stream ended.
pub(crate) struct ReceiveProducer {
    reader: Option<Reader>,
    done: Option<tokio::sync::oneshot::Sender<Result<(), io::ErrorKind>>>,
}

impl ReceiveProducer {
    pub(crate) fn new(
        reader: Reader,
        done: tokio::sync::oneshot::Sender<Result<(), io::ErrorKind>>,
    ) -> Self {
        ReceiveProducer {
            reader: Some(reader),
            done: Some(done),
        }
    }

    fn end(&mut self, result: Result<(), io::ErrorKind>) -> Poll<wasmtime::Result<StreamResult>> {
        self.reader = None;
        if let Some(done) = self.done.take() {
            let _ = done.send(result);
        }
        Poll::Ready(Ok(StreamResult::Dropped))
    }
}

impl Drop for ReceiveProducer {
    fn drop(&mut self) {
        let _ = self.end(Ok(()));
    }
}

impl<D> StreamProducer<D> for ReceiveProducer {
    type Item = u8;
    type Buffer = BytesMut;

    fn poll_produce<'a>(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut store: StoreContextMut<'a, D>,
        dst: Destination<'a, Self::Item, Self::Buffer>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        let Some(reader) = self.reader.as_mut() else {
            return Poll::Ready(Ok(StreamResult::Dropped));
        };
        // A zero-length read asks whether bytes are there; a reader cannot
        // tell without reading, so it is ready.
        if dst.remaining(&mut store) == Some(0) {
            return Poll::Ready(Ok(StreamResult::Completed));
        }
        let mut dst = dst.as_direct(store, READ_CHUNK);
        let buf = dst.remaining();
        let mut read = ReadBuf::new(buf);
        match reader.as_mut().poll_read(cx, &mut read) {
            Poll::Ready(Ok(())) if read.filled().is_empty() => self.end(Ok(())),
            Poll::Ready(Ok(())) => {
                let n = read.filled().len();
                dst.mark_written(n);
                Poll::Ready(Ok(StreamResult::Completed))
            }
            Poll::Ready(Err(e)) => self.end(Err(e.kind())),
            Poll::Pending if finish => Poll::Ready(Ok(StreamResult::Cancelled)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The guest's end of a WASI 0.3 `send`: bytes written to a [`Writer`];
/// when the guest's stream ends, the writer is shut down. `done` hears how
/// it went.
pub(crate) struct SendConsumer {
    writer: Option<Writer>,
    done: Option<tokio::sync::oneshot::Sender<Result<(), io::ErrorKind>>>,
}

impl SendConsumer {
    pub(crate) fn new(
        writer: Writer,
        done: tokio::sync::oneshot::Sender<Result<(), io::ErrorKind>>,
    ) -> Self {
        SendConsumer {
            writer: Some(writer),
            done: Some(done),
        }
    }
}

impl Drop for SendConsumer {
    fn drop(&mut self) {
        // The guest's stream ended: send what is buffered and shut the
        // writer down (FIN; close_notify under TLS), then report.
        let writer = self.writer.take();
        let done = self.done.take();
        if let (Some(mut writer), Some(done)) = (writer, done) {
            let ending = warden_net::conn::Ending::new();
            tokio::spawn(async move {
                let _ending = ending;
                let r = writer.shutdown().await.map_err(|e| e.kind());
                // A peer that is already gone is no error of the sender's.
                let r = match r {
                    Err(io::ErrorKind::NotConnected) => Ok(()),
                    other => other,
                };
                let _ = done.send(r);
            });
        }
    }
}

impl<D> StreamConsumer<D> for SendConsumer {
    type Item = u8;

    fn poll_consume(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        store: StoreContextMut<D>,
        src: Source<Self::Item>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        let Some(writer) = self.writer.as_mut() else {
            return Poll::Ready(Ok(StreamResult::Dropped));
        };
        let mut src = src.as_direct(store);
        if src.remaining().is_empty() {
            return Poll::Ready(Ok(StreamResult::Completed));
        }
        match writer.as_mut().poll_write(cx, src.remaining()) {
            Poll::Ready(Ok(n)) => {
                src.mark_read(n);
                Poll::Ready(Ok(StreamResult::Completed))
            }
            Poll::Ready(Err(e)) => {
                self.writer = None;
                if let Some(done) = self.done.take() {
                    let _ = done.send(Err(e.kind()));
                }
                Poll::Ready(Ok(StreamResult::Dropped))
            }
            Poll::Pending if finish => Poll::Ready(Ok(StreamResult::Cancelled)),
            Poll::Pending => Poll::Pending,
        }
    }
}
