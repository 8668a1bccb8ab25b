//! Bandwidth limits: bytes per second a guest sends (egress) and
//! receives (ingress), the plaintext it sees, whatever the wire and ABI.
//!
//! One [`Bucket`] per direction per scope (an instance under `warden
//! run`; an app, all its instances together, under `warden serve`), held
//! by the gate, so a guest cannot spend another's share. It is a token
//! bucket that may go into debt: a transfer is never cut or refused, it
//! is counted after it happens, and the next one in that direction waits
//! until the debt is paid. A limited guest is slowed, never failed: its
//! reads and writes return what they would have, later.
//!
//! The burst (what may pass at once after a quiet spell) is
//! [`BURST_SECONDS`] of the rate, at least [`MIN_BURST`] bytes, so a
//! transfer of N bytes at rate R takes about `(N - burst) / R`.
//!
//! [`Pacer`] waits on a bucket from a `poll` function (a component's byte
//! streams, HTTP bodies); [`Paced`] wraps an `AsyncRead`/`AsyncWrite`. With
//! no limit set nothing is wrapped: the unlimited path is one `Option`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The burst, in seconds of the rate.
pub const BURST_SECONDS: f64 = 0.1;

/// The smallest burst, in bytes: one full read or write of a common
/// buffer passes without waiting.
pub const MIN_BURST: f64 = 16.0 * 1024.0;

/// Waits shorter than this are not slept (tokio's timer has millisecond
/// granularity); the debt stays and is waited for with the next one.
const MIN_WAIT: Duration = Duration::from_millis(1);

/// A token bucket of bytes (see the module docs).
#[derive(Debug)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Bytes that may pass now; negative is debt.
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket refilled at `bytes_per_second` (at least 1).
    pub fn new(bytes_per_second: u64) -> Arc<Bucket> {
        let rate = bytes_per_second.max(1) as f64;
        let burst = (rate * BURST_SECONDS).max(MIN_BURST);
        Arc::new(Bucket {
            rate,
            burst,
            state: Mutex::new(State {
                tokens: burst,
                last: Instant::now(),
            }),
        })
    }

    /// The rate, bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate as u64
    }

    /// Its burst, bytes.
    pub fn burst(&self) -> u64 {
        self.burst as u64
    }

    fn refill(&self, s: &mut State, now: Instant) {
        let elapsed = now.saturating_duration_since(s.last).as_secs_f64();
        s.tokens = (s.tokens + elapsed * self.rate).min(self.burst);
        s.last = now;
    }

    /// Count `n` bytes that passed.
    pub fn spend(&self, n: usize) {
        if n == 0 {
            return;
        }
        let mut s = crate::sync::lock(&self.state);
        self.refill(&mut s, Instant::now());
        s.tokens -= n as f64;
    }

    /// How long until the bucket is out of debt (`None`: it is now).
    pub fn wait(&self) -> Option<Duration> {
        let mut s = crate::sync::lock(&self.state);
        self.refill(&mut s, Instant::now());
        if s.tokens >= 0.0 {
            return None;
        }
        let d = Duration::try_from_secs_f64(-s.tokens / self.rate).unwrap_or(Duration::MAX);
        (d >= MIN_WAIT).then_some(d)
    }

    /// Wait until the bucket is out of debt.
    pub async fn ready(&self) {
        while let Some(d) = self.wait() {
            tokio::time::sleep(d).await;
        }
    }
}

/// The two buckets of a scope, each `None` when that direction has no
/// limit.
#[derive(Debug, Clone, Default)]
pub struct Rates {
    /// What the guest sends.
    pub egress: Option<Arc<Bucket>>,
    /// What the guest receives.
    pub ingress: Option<Arc<Bucket>>,
}

impl Rates {
    /// Buckets for `egress` and `ingress` bytes per second.
    pub fn new(egress: Option<u64>, ingress: Option<u64>) -> Rates {
        Rates {
            egress: egress.map(Bucket::new),
            ingress: ingress.map(Bucket::new),
        }
    }

    /// Whether neither direction is limited.
    pub fn is_unlimited(&self) -> bool {
        self.egress.is_none() && self.ingress.is_none()
    }
}

/// Waits on a bucket from `poll` functions.
pub struct Pacer {
    bucket: Arc<Bucket>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Pacer {
    /// A pacer on `bucket`.
    pub fn new(bucket: Arc<Bucket>) -> Pacer {
        Pacer {
            bucket,
            sleep: None,
        }
    }

    /// Ready when the bucket is out of debt.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if let Some(s) = &mut self.sleep {
                ready!(s.as_mut().poll(cx));
                self.sleep = None;
            }
            match self.bucket.wait() {
                None => return Poll::Ready(()),
                Some(d) => self.sleep = Some(Box::pin(tokio::time::sleep(d))),
            }
        }
    }

    /// Count `n` bytes that passed.
    pub fn spend(&self, n: usize) {
        self.bucket.spend(n);
    }
}

/// A byte stream whose reads wait on one bucket and writes on another.
pub struct Paced<T> {
    inner: T,
    read: Option<Pacer>,
    write: Option<Pacer>,
}

impl<T> Paced<T> {
    /// `inner`, its reads counted in `read` and its writes in `write`.
    pub fn new(inner: T, read: Option<Arc<Bucket>>, write: Option<Arc<Bucket>>) -> Paced<T> {
        Paced {
            inner,
            read: read.map(Pacer::new),
            write: write.map(Pacer::new),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Paced<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let Some(p) = &mut this.read else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        ready!(p.poll_ready(cx));
        // At most a burst at a time, so what is read last owes little.
        let mut part = buf.take(p.bucket.burst() as usize);
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut part))?;
        let n = part.filled().len();
        // SAFETY: the inner reader initialised and filled `n` bytes of
        // `buf`'s unfilled part.
        unsafe { buf.assume_init(n) };
        buf.advance(n);
        p.spend(n);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Paced<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let Some(p) = &mut this.write else {
            return Pin::new(&mut this.inner).poll_write(cx, data);
        };
        ready!(p.poll_ready(cx));
        // At most a burst at a time (a short write, as sockets make).
        let data = &data[..data.len().min(p.bucket.burst() as usize)];
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, data))?;
        p.spend(n);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_at_once_and_then_debt_is_waited_for() {
        let b = Bucket::new(1 << 20);
        assert_eq!(b.burst(), (1 << 20) / 10);
        assert!(b.wait().is_none());
        b.spend(b.burst() as usize);
        assert!(b.wait().is_none(), "the burst is free");
        b.spend(512 * 1024);
        let d = b.wait().expect("in debt");
        // Half a second of debt at 1 MiB/s, less what refilled since.
        assert!(
            d > Duration::from_millis(450) && d <= Duration::from_millis(500),
            "{d:?}"
        );
    }

    #[test]
    fn a_small_rate_still_lets_a_buffer_through() {
        let b = Bucket::new(100);
        assert_eq!(b.burst(), MIN_BURST as u64);
    }

    #[tokio::test]
    async fn a_transfer_takes_what_the_rate_says() {
        let b = Bucket::new(256 * 1024);
        let start = Instant::now();
        let mut sent = 0;
        while sent < 128 * 1024 {
            b.ready().await;
            b.spend(16 * 1024);
            sent += 16 * 1024;
        }
        b.ready().await;
        // 128 KiB at 256 KiB/s with a 25.6 KiB burst: 0.4 s.
        let took = start.elapsed().as_secs_f64();
        assert!((0.36..=0.6).contains(&took), "{took}");
    }

    #[tokio::test]
    async fn paced_streams_carry_every_byte() {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let bucket = Bucket::new(1 << 30);
        let mut paced = Paced::new(a, None, Some(bucket.clone()));
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let expect = data.clone();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut b, &mut got)
                .await
                .unwrap();
            got
        });
        tokio::io::AsyncWriteExt::write_all(&mut paced, &data)
            .await
            .unwrap();
        tokio::io::AsyncWriteExt::shutdown(&mut paced)
            .await
            .unwrap();
        drop(paced);
        assert_eq!(reader.await.unwrap(), expect);
    }
}
