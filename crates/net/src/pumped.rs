//! A connection whose bytes a host task moves, for ABIs that ask "would
//! this block?" (preview1): the task reads the [`Connection`] (TLS, say)
//! into a bounded buffer and writes a bounded buffer out, and the guest
//! reads and writes those buffers without ever blocking. Plaintext
//! buffered on the host counts as readable, so the guest's poll stays
//! right whatever the wire carries.
//!
//! Ending: the guest shutting down its writing direction (or dropping the
//! connection) makes the task send what is buffered and then shut the
//! connection's writing side down (`close_notify` under TLS, then a FIN).
//! A peer's clean end reads as the end of stream; a broken one (a TLS
//! stream cut without `close_notify`) reads as an error. After the guest
//! dropped it, the task finishes sending within [`LINGER`], then closes.

use crate::sync::lock;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::conn::Connection;

/// The most plaintext buffered on the host in each direction.
pub const BUFFER: usize = 64 * 1024;

/// How long the host goes on sending what a guest wrote before it dropped
/// the connection.
pub const LINGER: Duration = Duration::from_secs(5);

/// How the incoming direction ended.
#[derive(Debug, Clone)]
enum End {
    /// The peer ended cleanly.
    Eof,
    /// It broke.
    Error(io::ErrorKind, String),
}

#[derive(Default)]
struct State {
    inbound: VecDeque<u8>,
    in_end: Option<End>,
    /// The guest shut down its reading direction: incoming bytes are
    /// dropped.
    read_shut: bool,
    outbound: VecDeque<u8>,
    /// The guest shut down its writing direction (or dropped the stream).
    write_shut: bool,
    out_error: Option<(io::ErrorKind, String)>,
    guest_gone: bool,
    guest_read: Option<Waker>,
    guest_write: Option<Waker>,
    task: Option<Waker>,
}

impl State {
    fn wake_guest(&mut self) {
        if let Some(w) = self.guest_read.take() {
            w.wake();
        }
        if let Some(w) = self.guest_write.take() {
            w.wake();
        }
    }

    fn wake_task(&mut self) {
        if let Some(w) = self.task.take() {
            w.wake();
        }
    }
}

/// What a guest's poll sees on a pumped connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Level {
    /// Bytes to read, or the end (or failure) of the stream.
    pub readable: bool,
    /// Room to write (or writing failed, which a write then reports).
    pub writable: bool,
    /// The incoming direction ended or broke.
    pub hangup: bool,
    /// Bytes buffered for reading.
    pub bytes: u64,
}

/// The guest's side of a pumped connection (see the module docs).
pub struct Pumped {
    state: Arc<Mutex<State>>,
}

impl Pumped {
    /// Start moving `conn`'s bytes on a task of its own. Must run inside
    /// a tokio runtime.
    pub fn spawn(conn: Connection) -> Pumped {
        let state = Arc::new(Mutex::new(State::default()));
        tokio::spawn(Pump {
            conn,
            state: state.clone(),
            flushing: false,
            shut_done: false,
            linger: None,
            _ending: crate::conn::Ending::new(),
        });
        Pumped { state }
    }

    /// Read (or with `peek`, look at) buffered bytes, or fail with
    /// `WouldBlock`. `Ok(0)` is the end of the stream.
    pub fn try_recv(&self, buf: &mut [u8], peek: bool) -> io::Result<usize> {
        let mut st = lock(&self.state);
        if st.read_shut {
            return Ok(0);
        }
        if st.inbound.is_empty() {
            return match &st.in_end {
                None => Err(io::ErrorKind::WouldBlock.into()),
                Some(End::Eof) => Ok(0),
                Some(End::Error(kind, msg)) => Err(io::Error::new(*kind, msg.clone())),
            };
        }
        let n = buf.len().min(st.inbound.len());
        let (a, b) = st.inbound.as_slices();
        let from_a = n.min(a.len());
        buf[..from_a].copy_from_slice(&a[..from_a]);
        buf[from_a..n].copy_from_slice(&b[..n - from_a]);
        if !peek {
            st.inbound.drain(..n);
            st.wake_task();
        }
        Ok(n)
    }

    /// Buffer bytes to send, or fail with `WouldBlock` when the buffer is
    /// full.
    pub fn try_send(&self, buf: &[u8]) -> io::Result<usize> {
        let mut st = lock(&self.state);
        if let Some((kind, msg)) = &st.out_error {
            return Err(io::Error::new(*kind, msg.clone()));
        }
        if st.write_shut {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let room = BUFFER - st.outbound.len();
        if room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = room.min(buf.len());
        st.outbound.extend(&buf[..n]);
        st.wake_task();
        Ok(n)
    }

    /// Shut down one or both directions: reading drops what comes;
    /// writing sends what is buffered, then ends the stream.
    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        let mut st = lock(&self.state);
        if matches!(how, std::net::Shutdown::Read | std::net::Shutdown::Both) {
            st.read_shut = true;
            st.inbound.clear();
        }
        if matches!(how, std::net::Shutdown::Write | std::net::Shutdown::Both) {
            st.write_shut = true;
        }
        st.wake_task();
        Ok(())
    }

    /// What a poll sees now.
    pub fn level(&self) -> Level {
        let st = lock(&self.state);
        level(&st)
    }

    /// Ready when reading (`read`) or writing would not block.
    pub fn poll_ready(&self, read: bool, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = lock(&self.state);
        let now = level(&st);
        let ready = if read { now.readable } else { now.writable };
        if ready {
            return Poll::Ready(());
        }
        let slot = if read {
            &mut st.guest_read
        } else {
            &mut st.guest_write
        };
        *slot = Some(cx.waker().clone());
        Poll::Pending
    }
}

fn level(st: &State) -> Level {
    let ended = st.in_end.is_some() || st.read_shut;
    Level {
        readable: !st.inbound.is_empty() || ended,
        writable: st.outbound.len() < BUFFER || st.out_error.is_some() || st.write_shut,
        hangup: ended && st.inbound.is_empty(),
        bytes: st.inbound.len() as u64,
    }
}

impl Drop for Pumped {
    fn drop(&mut self) {
        let mut st = lock(&self.state);
        st.guest_gone = true;
        st.write_shut = true;
        st.wake_task();
    }
}

/// The host task moving the bytes.
struct Pump {
    conn: Connection,
    state: Arc<Mutex<State>>,
    flushing: bool,
    shut_done: bool,
    linger: Option<Pin<Box<tokio::time::Sleep>>>,
    _ending: crate::conn::Ending,
}

impl Future for Pump {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let state = this.state.clone();
        let mut st = lock(&state);
        st.task = Some(cx.waker().clone());
        // Incoming: fill the buffer while there is room.
        let mut chunk = [0u8; 16 * 1024];
        while st.in_end.is_none() && st.inbound.len() < BUFFER && !st.guest_gone {
            let want = (BUFFER - st.inbound.len()).min(chunk.len());
            let mut rb = ReadBuf::new(&mut chunk[..want]);
            match Pin::new(&mut this.conn).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                    st.in_end = Some(End::Eof);
                    st.wake_guest();
                }
                Poll::Ready(Ok(())) => {
                    if !st.read_shut {
                        st.inbound.extend(rb.filled());
                    }
                    st.wake_guest();
                }
                Poll::Ready(Err(e)) => {
                    st.in_end = Some(End::Error(e.kind(), e.to_string()));
                    st.wake_guest();
                }
                Poll::Pending => break,
            }
        }
        // Outgoing: send what is buffered, then flush, then end.
        while st.out_error.is_none() && !st.outbound.is_empty() {
            let (front, _) = st.outbound.as_slices();
            match Pin::new(&mut this.conn).poll_write(cx, front) {
                Poll::Ready(Ok(0)) => {
                    st.out_error = Some((
                        io::ErrorKind::WriteZero,
                        "the connection took no bytes".into(),
                    ));
                }
                Poll::Ready(Ok(n)) => {
                    st.outbound.drain(..n);
                    this.flushing = true;
                    st.wake_guest();
                }
                Poll::Ready(Err(e)) => {
                    st.out_error = Some((e.kind(), e.to_string()));
                    st.outbound.clear();
                    st.wake_guest();
                }
                Poll::Pending => break,
            }
        }
        if st.out_error.is_none() && st.outbound.is_empty() && this.flushing {
            match Pin::new(&mut this.conn).poll_flush(cx) {
                Poll::Ready(Ok(())) => this.flushing = false,
                Poll::Ready(Err(e)) => {
                    st.out_error = Some((e.kind(), e.to_string()));
                    st.wake_guest();
                }
                Poll::Pending => {}
            }
        }
        let sent = st.outbound.is_empty() && !this.flushing;
        if st.write_shut && !this.shut_done && (sent || st.out_error.is_some()) {
            match Pin::new(&mut this.conn).poll_shutdown(cx) {
                Poll::Ready(_) => this.shut_done = true,
                Poll::Pending => {}
            }
        }
        if st.guest_gone {
            if this.shut_done || st.out_error.is_some() {
                return Poll::Ready(());
            }
            // Sending what the guest left is bounded in time.
            let linger = this
                .linger
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(LINGER)));
            if linger.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }
}
