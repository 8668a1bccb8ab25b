//! A guest's connection as the host holds it: plain TCP or TLS the host
//! speaks, read and written as plaintext either way, with its place under
//! its kind's connection cap held for as long as it lives.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

/// Host tasks still ending connections (sending what the guest wrote,
/// then `close_notify` and a FIN).
static ENDING: AtomicUsize = AtomicUsize::new(0);

/// Held by a host task that ends a connection the guest wrote to, so
/// that [`settle`] can wait for it before the process exits: a guest that
/// writes its last bytes and exits should not have them (or its TLS
/// `close_notify`) lost.
pub struct Ending(());

impl Ending {
    /// Count one more task.
    pub fn new() -> Ending {
        ENDING.fetch_add(1, Ordering::SeqCst);
        Ending(())
    }
}

impl Default for Ending {
    fn default() -> Self {
        Ending::new()
    }
}

impl Drop for Ending {
    fn drop(&mut self) {
        ENDING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Wait until every [`Ending`] task is done, or `limit` passes (a peer
/// that reads nothing cannot hold the process up longer).
pub async fn settle(limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while ENDING.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// What the bytes travel in.
enum Wire {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

/// A connection's plaintext byte stream.
///
/// Under TLS, reading a peer's `close_notify` is the end of the stream,
/// and a connection that ends without one (truncated) is an error
/// (`UnexpectedEof`), never a quiet end; shutting down the writing
/// direction sends `close_notify`, then a FIN.
pub struct Connection {
    wire: Wire,
    _slot: Option<OwnedSemaphorePermit>,
    /// Its place under a connection quota, if one is set.
    quota: Option<crate::quota::Held>,
    /// The PostgreSQL server's SASL offer, rewritten on the way in (a
    /// `postgres-tls` kind; see [`crate::pgauth`]).
    sasl: Option<Box<crate::pgauth::SaslOffer>>,
}

impl Connection {
    /// A plain TCP connection.
    pub fn plain(stream: TcpStream, slot: Option<OwnedSemaphorePermit>) -> Self {
        Connection {
            wire: Wire::Plain(stream),
            _slot: slot,
            quota: None,
            sasl: None,
        }
    }

    pub(crate) fn tls(
        stream: tokio_rustls::TlsStream<TcpStream>,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Self {
        Connection {
            wire: Wire::Tls(Box::new(stream)),
            _slot: slot,
            quota: None,
            sasl: None,
        }
    }

    /// Hold `quota` (a place under a connection quota) for as long as the
    /// connection lives.
    pub fn with_quota(mut self, quota: Option<crate::quota::Held>) -> Self {
        self.quota = quota;
        self
    }

    /// Rewrite the PostgreSQL server's SASL offer on the way in (see
    /// [`crate::pgauth`]).
    pub(crate) fn with_postgres_auth(mut self) -> Self {
        self.sasl = Some(Box::default());
        self
    }

    /// The SPIFFE ID the peer's verified certificate names, on TLS with a
    /// client (or server) certificate that names exactly one.
    pub fn peer_id(&self) -> Option<String> {
        match &self.wire {
            Wire::Plain(_) => None,
            Wire::Tls(s) => s
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|der| crate::identity::spiffe_id_of(der)),
        }
    }

    /// Whether the host speaks TLS on it.
    pub fn is_tls(&self) -> bool {
        matches!(self.wire, Wire::Tls(_))
    }

    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match &self.wire {
            Wire::Plain(s) => s,
            Wire::Tls(s) => s.get_ref().0,
        }
    }

    /// The plain TCP stream, when it is one and holds no place under a cap
    /// (so it can be split without a lock), with its place under a
    /// quota, for the caller to hold as long as it keeps the stream.
    pub fn into_plain(self) -> Result<(TcpStream, Option<crate::quota::Held>), Self> {
        match self {
            Connection {
                wire: Wire::Plain(s),
                _slot: None,
                quota,
                sasl: None,
            } => Ok((s, quota)),
            other => Err(other),
        }
    }
}

impl AsFd for Connection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.tcp().as_fd()
    }
}

impl Connection {
    fn poll_read_wire(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.wire {
            Wire::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Wire::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            let Some(f) = this.sasl.as_mut() else {
                return this.poll_read_wire(cx, buf);
            };
            if f.has_output() {
                buf.put_slice(&f.take(buf.remaining()));
                return Poll::Ready(Ok(()));
            }
            if f.spent() {
                this.sasl = None;
                continue;
            }
            let mut chunk = [0u8; 4096];
            let mut read = ReadBuf::new(&mut chunk);
            std::task::ready!(this.poll_read_wire(cx, &mut read))?;
            let f = this.sasl.as_mut().expect("present above");
            if read.filled().is_empty() {
                // The end: what is pending goes as it is, then the end.
                f.finish();
                if !f.has_output() {
                    return Poll::Ready(Ok(()));
                }
            } else {
                f.feed(read.filled());
            }
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.wire {
            Wire::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Wire::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.wire {
            Wire::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Wire::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.wire {
            Wire::Plain(s) => s.is_write_vectored(),
            Wire::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.wire {
            Wire::Plain(s) => Pin::new(s).poll_flush(cx),
            Wire::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.wire {
            Wire::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Wire::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}
