//! The guest's stdout and stderr, through Warden's output writer.
//!
//! wasmtime-wasi writes a guest's stdout with a blocking `write(2)` on the
//! thread that runs the guest, so a reader that stops reading (`warden run
//! app.wasm | sleep 30`) would hold that thread, and neither `--timeout`
//! nor anything else could act. Here a guest's writes go to
//! [`warden_net::out`]'s queue, written by a thread of its own; a guest
//! whose output is not being read waits for room asynchronously, which a
//! timeout cancels. A stream whose write failed is closed for the guest
//! (a closed pipe is `EPIPE`), and Warden keeps running.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use warden_net::out::{self, Closed, Output};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// One of the host's output streams, as guests write to it.
#[derive(Debug, Clone, Copy)]
pub struct HostOutput(Output);

impl HostOutput {
    /// The host's stdout.
    pub const STDOUT: HostOutput = HostOutput(Output::Stdout);
    /// The host's stderr.
    pub const STDERR: HostOutput = HostOutput(Output::Stderr);
}

/// The stream error for a failed host write: a closed pipe is the guest's
/// `EPIPE`; anything else is an I/O error.
fn closed(Closed(kind): Closed) -> StreamError {
    if kind == io::ErrorKind::BrokenPipe {
        StreamError::Closed
    } else {
        StreamError::LastOperationFailed(wasmtime::Error::msg(format!(
            "writing to the host failed: {kind}"
        )))
    }
}

fn io_error(Closed(kind): Closed) -> io::Error {
    kind.into()
}

impl IsTerminal for HostOutput {
    fn is_terminal(&self) -> bool {
        match self.0 {
            Output::Stdout => io::IsTerminal::is_terminal(&io::stdout()),
            Output::Stderr => io::IsTerminal::is_terminal(&io::stderr()),
        }
    }
}

impl StdoutStream for HostOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(*self)
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(*self)
    }
}

impl OutputStream for HostOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        out::push(self.0, bytes.to_vec()).map_err(closed)
    }

    /// Bytes in the queue count as written (see the module docs).
    fn flush(&mut self) -> StreamResult<()> {
        out::room(self.0).map(|_| ()).map_err(closed)
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        out::room(self.0).map_err(closed)
    }
}

#[async_trait::async_trait]
impl Pollable for HostOutput {
    async fn ready(&mut self) {
        std::future::poll_fn(|cx| out::poll_room(self.0, cx)).await
    }
}

impl AsyncWrite for HostOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let room = out::room(self.0).map_err(io_error)?;
            if room > 0 {
                let n = buf.len().min(room);
                out::push(self.0, buf[..n].to_vec()).map_err(io_error)?;
                return Poll::Ready(Ok(n));
            }
            // Room may have opened (or the stream failed) meanwhile.
            if out::poll_room(self.0, cx).is_pending() {
                return Poll::Pending;
            }
        }
    }

    /// Bytes in the queue count as written (see the module docs).
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(out::room(self.0).map(|_| ()).map_err(io_error))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
