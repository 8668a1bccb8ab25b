//! Incoming TLS: a listener's connections, accepted and shaken hands with
//! on the host's time, queued for the guest only once the handshake is
//! done.
//!
//! The host accepts on the guest's behalf here (a handshake cannot wait
//! for the guest), so it is bounded twice: at most [`MAX_HANDSHAKING`]
//! handshakes at once, each dropped after the handshake timeout, and at
//! most [`MAX_READY`] finished connections waiting for the guest. When
//! either is full the host stops accepting, and further connections wait
//! in the kernel's backlog, as they do on a plain listener. Each peer is
//! put to the gate (`accept`) before any handshake; a refused peer, a
//! client without a valid certificate (when one is required) and a stalled
//! handshake never reach the guest.

use crate::sync::lock;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Handshake, ServerSide};
use crate::conn::Connection;
use crate::socket::listener::admit;
use crate::{Action, Gate, Pool};

/// The most handshakes one TLS listener runs at once.
pub const MAX_HANDSHAKING: usize = 64;

/// The most finished connections one TLS listener keeps for the guest to
/// accept.
pub const MAX_READY: usize = 64;

struct Ready {
    conn: Connection,
    peer: SocketAddr,
    _room: OwnedSemaphorePermit,
}

#[derive(Default)]
struct Queue {
    ready: VecDeque<Ready>,
    waker: Option<Waker>,
    failed: Option<(io::ErrorKind, String)>,
}

/// A TLS listener's queue of finished connections (see the module docs).
/// Dropping it stops accepting.
pub struct Acceptor {
    queue: Arc<Mutex<Queue>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Acceptor {
    /// Start accepting on `listener` with `side`'s configuration; each peer
    /// is decided by `gate` (within `pool`, if the listener came from one;
    /// see [`crate::socket::listener::admit`]). Must run inside a tokio
    /// runtime.
    pub fn spawn(
        listener: tokio::net::TcpListener,
        side: Arc<ServerSide>,
        gate: Arc<Gate>,
        pool: Option<Arc<Pool>>,
        timeout: Duration,
    ) -> Acceptor {
        let queue = Arc::new(Mutex::new(Queue::default()));
        let task = tokio::spawn(accept_loop(
            listener,
            side,
            (gate, pool),
            timeout,
            queue.clone(),
        ));
        Acceptor { queue, task }
    }

    /// A finished connection and its peer, if one is waiting; an error if
    /// the listener failed.
    pub fn try_accept(&self) -> io::Result<Option<(Connection, SocketAddr)>> {
        let mut q = lock(&self.queue);
        if let Some(r) = q.ready.pop_front() {
            return Ok(Some((r.conn, r.peer)));
        }
        match &q.failed {
            Some((kind, msg)) => Err(io::Error::new(*kind, msg.clone())),
            None => Ok(None),
        }
    }

    /// Ready when a connection is waiting (or the listener failed).
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut q = lock(&self.queue);
        if !q.ready.is_empty() || q.failed.is_some() {
            return Poll::Ready(());
        }
        q.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Whether a connection is waiting (or the listener failed).
    pub fn is_ready(&self) -> bool {
        let q = lock(&self.queue);
        !q.ready.is_empty() || q.failed.is_some()
    }
}

fn push(queue: &Mutex<Queue>, item: Result<Ready, io::Error>) {
    let mut q = lock(queue);
    match item {
        Ok(r) => q.ready.push_back(r),
        Err(e) => q.failed = Some((e.kind(), e.to_string())),
    }
    if let Some(w) = q.waker.take() {
        w.wake();
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    side: Arc<ServerSide>,
    (gate, pool): (Arc<Gate>, Option<Arc<Pool>>),
    timeout: Duration,
    queue: Arc<Mutex<Queue>>,
) {
    let room = Arc::new(Semaphore::new(MAX_READY));
    let handshaking = Arc::new(Semaphore::new(MAX_HANDSHAKING));
    loop {
        let (Ok(room), Ok(turn)) = (
            room.clone().acquire_owned().await,
            handshaking.clone().acquire_owned().await,
        ) else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) if transient(&e) => {
                // Out of descriptors, or a connection that failed before it
                // was accepted: try again shortly, never spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(e) => {
                push(&queue, Err(e));
                return;
            }
        };
        let Some((tcp, quota)) = admit(&gate, pool.as_deref(), peer, tcp) else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let side = side.clone();
        let gate = gate.clone();
        let queue = queue.clone();
        tokio::spawn(async move {
            let mut outcome = Handshake {
                kind: Some(side.kind.name.clone()),
                ..Handshake::default()
            };
            match tokio::time::timeout(timeout, side.acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let conn = tls.get_ref().1;
                    let agreed = Handshake::of(conn);
                    outcome = Handshake {
                        name: conn.server_name().map(str::to_string),
                        ..agreed
                    };
                    outcome.kind = Some(side.kind.name.clone());
                    gate.tls_outcome(Action::Accept, peer, &outcome);
                    let conn = Connection::tls(tokio_rustls::TlsStream::Server(tls), None)
                        .with_quota(quota);
                    push(
                        &queue,
                        Ok(Ready {
                            conn,
                            peer,
                            _room: room,
                        }),
                    );
                }
                Ok(Err(e)) => {
                    outcome.failure = Some(super::client::handshake_failure(&e));
                    gate.tls_outcome(Action::Accept, peer, &outcome);
                }
                Err(_) => {
                    outcome.failure = Some(format!(
                        "the handshake did not finish within {}s",
                        timeout.as_secs_f64()
                    ));
                    gate.tls_outcome(Action::Accept, peer, &outcome);
                }
            }
            drop(turn);
        });
    }
}

fn transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EMFILE
                | libc::ENFILE
                | libc::ENOBUFS
                | libc::ENOMEM
                | libc::ECONNABORTED
                | libc::ECONNRESET
                | libc::EPROTO
                | libc::EINTR
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::ENETDOWN
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EOPNOTSUPP
                | libc::ENOPROTOOPT
        )
    )
}
