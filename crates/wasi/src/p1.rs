//! Warden's preview1 layer: sockets beside wasmtime-wasi's preview1.
//!
//! wasmtime-wasi's `WasiP1Ctx` implements preview1 for files, clocks and the
//! rest, but its socket calls are stubs and it cannot hold a socket. [`P1Ctx`]
//! wraps it and owns the guest-visible descriptor table: each guest fd is
//! either a descriptor of the inner context (under the inner context's own
//! number, which the guest never sees) or a socket from `warden-net`. So the
//! numbers never collide, whatever either side opens or closes, and
//! `fd_renumber` is a move in one table.
//!
//! Layout at start: 0-2 stdio; 3.. the listeners the operator pre-opened, in
//! order; then the pre-opened directories. wasi-libc finds preopens by
//! calling `fd_prestat_get` from fd 3 upward until `EBADF`, so a socket must
//! not answer `EBADF` there, or every directory after it would be lost:
//! [`link_p1`] answers for sockets with success and a prestat tag that is not
//! `dir`, which wasi-libc skips.
//!
//! Socket operations are a thin translation over `warden_net::sockets`. The
//! OS sockets are non-blocking; a guest socket in blocking mode waits on the
//! tokio reactor, so a blocked guest costs no CPU and `--timeout` still
//! stops it. The trait's `sock_accept`/`sock_recv`/`sock_send` are
//! synchronous in wasmtime-wasi's bindings, so [`link_p1`] installs
//! asynchronous versions of those three that can wait.

use std::collections::BTreeMap;
use std::net::Shutdown;

use std::time::Duration;

use tokio::time::Instant;
use warden_net::sockets::{Interest, Listener, Stream, readiness_many};
use wasmtime::{Caller, Linker};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p1::types::{self, Errno};
use wasmtime_wasi::p1::wasi_snapshot_preview1::{self, WasiSnapshotPreview1 as Inner};
use wiggle::{GuestMemory, GuestPtr, GuestType};

use crate::WasiError;

/// The most iovecs one call may pass (POSIX `IOV_MAX`).
const IOV_MAX: u32 = 1024;
/// The most subscriptions one `poll_oneoff` may pass: they are copied into
/// host memory, so a guest must not be able to ask for gigabytes.
const MAX_SUBSCRIPTIONS: u32 = 1 << 16;
/// The most bytes one socket call moves through a host-side copy (needed
/// only for shared memories; unshared memory is read and written in place).
const MAX_COPY: u32 = 64 * 1024;

/// A guest's preview1 state: wasmtime-wasi's context plus Warden's sockets,
/// behind one descriptor table.
pub struct P1Ctx {
    inner: WasiP1Ctx,
    fds: BTreeMap<u32, Slot>,
    /// Decides every accepted peer.
    gate: std::sync::Arc<warden_net::Gate>,
}

enum Slot {
    /// A descriptor of the inner context, by its inner number.
    Wasi(u32),
    /// A socket Warden owns.
    Socket(SocketFd),
}

struct SocketFd {
    sock: Sock,
    /// The guest's view; the OS socket is always non-blocking.
    nonblocking: bool,
}

enum Sock {
    Listener(Listener),
    Stream(Stream),
}

impl Sock {
    async fn wait(&self, interest: Interest) -> std::io::Result<()> {
        match self {
            Sock::Listener(l) => l.wait(interest).await,
            Sock::Stream(s) => s.wait(interest).await,
        }
    }

    fn poll_ready(
        &self,
        interest: Interest,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self {
            Sock::Listener(l) => l.poll_ready(interest, cx),
            Sock::Stream(s) => s.poll_ready(interest, cx),
        }
    }

    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        match self {
            Sock::Listener(l) => l.as_raw_fd(),
            Sock::Stream(s) => s.as_raw_fd(),
        }
    }
}

impl P1Ctx {
    /// Wrap `inner`, built with `preopens` pre-opened directories (inner fds
    /// 3 and up). `listeners` become guest fds 3, 4, ...; the directories
    /// follow them. Every connection accepted on them is put to `gate`.
    pub fn new(
        inner: WasiP1Ctx,
        preopens: u32,
        listeners: Vec<Listener>,
        gate: std::sync::Arc<warden_net::Gate>,
    ) -> Self {
        let mut fds = BTreeMap::new();
        for fd in 0..3 {
            fds.insert(fd, Slot::Wasi(fd));
        }
        let mut next = 3;
        for listener in listeners {
            let sock = Sock::Listener(listener);
            fds.insert(
                next,
                Slot::Socket(SocketFd {
                    sock,
                    nonblocking: false,
                }),
            );
            next += 1;
        }
        for dir in 0..preopens {
            fds.insert(next + dir, Slot::Wasi(3 + dir));
        }
        Self { inner, fds, gate }
    }

    /// The inner descriptor behind guest `fd`; `on_socket` is the error when
    /// `fd` is a socket, which the operation does not apply to.
    fn wasi_fd(&self, fd: types::Fd, on_socket: Errno) -> Result<types::Fd, types::Error> {
        match self.fds.get(&u32::from(fd)) {
            Some(Slot::Wasi(inner)) => Ok((*inner).into()),
            Some(Slot::Socket(_)) => Err(on_socket.into()),
            None => Err(Errno::Badf.into()),
        }
    }

    fn socket(&self, fd: types::Fd) -> Result<&SocketFd, Errno> {
        socket_in(&self.fds, fd)
    }

    fn stream(&self, fd: types::Fd) -> Result<&Stream, Errno> {
        match &self.socket(fd)?.sock {
            Sock::Stream(s) => Ok(s),
            Sock::Listener(_) => Err(Errno::Notconn),
        }
    }

    fn is_socket(&self, fd: types::Fd) -> bool {
        matches!(self.fds.get(&u32::from(fd)), Some(Slot::Socket(_)))
    }

    /// Give `slot` the lowest free guest number.
    fn alloc(&mut self, slot: Slot) -> types::Fd {
        let fd = (0..)
            .find(|n| !self.fds.contains_key(n))
            .expect("fewer than 2^32 descriptors");
        self.fds.insert(fd, slot);
        fd.into()
    }

    fn try_accept(
        &mut self,
        fd: types::Fd,
        flags: types::Fdflags,
    ) -> Result<Option<types::Fd>, types::Error> {
        let Sock::Listener(listener) = &self.socket(fd)?.sock else {
            return Err(Errno::Inval.into());
        };
        match listener.try_accept(&self.gate) {
            Ok(stream) => Ok(Some(self.alloc(Slot::Socket(SocketFd {
                sock: Sock::Stream(stream),
                nonblocking: flags.contains(types::Fdflags::NONBLOCK),
            })))),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(io_errno(&e).into()),
        }
    }

    /// `sock_accept`, waiting when the listener is in blocking mode.
    pub async fn accept(
        &mut self,
        fd: types::Fd,
        flags: types::Fdflags,
    ) -> Result<types::Fd, types::Error> {
        loop {
            if let Some(new) = self.try_accept(fd, flags)? {
                return Ok(new);
            }
            if self.socket(fd)?.nonblocking {
                return Err(Errno::Again.into());
            }
            wait_fd(&self.fds, fd, Interest::Read).await?;
        }
    }

    fn try_recv(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        buf: GuestPtr<[u8]>,
        peek: bool,
    ) -> Result<Option<u32>, types::Error> {
        let stream = self.stream(fd)?;
        if buf.len() == 0 {
            return Ok(Some(0));
        }
        let result = match mem.as_slice_mut(buf)? {
            Some(slice) => stream.try_recv(slice, peek),
            None => {
                let mut tmp = vec![0; buf.len().min(MAX_COPY) as usize];
                let r = stream.try_recv(&mut tmp, peek);
                if let Ok(n) = r {
                    mem.copy_from_slice(&tmp[..n], buf.as_ptr().as_array(n as u32))?;
                }
                r
            }
        };
        match result {
            Ok(n) => Ok(Some(n as u32)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(io_errno(&e).into()),
        }
    }

    /// Receive into `iovs`. Without `waitall`, like `read(2)`, the first
    /// non-empty buffer is filled as far as data is there; with `waitall`
    /// (blocking sockets only) every buffer is filled or the stream ends.
    pub async fn recv(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        iovs: types::IovecArray,
        peek: bool,
        waitall: bool,
    ) -> Result<u32, types::Error> {
        let bufs = iovec_bufs(mem, iovs)?;
        let nonblocking = self.socket(fd)?.nonblocking;
        if waitall && !peek && !nonblocking {
            let mut total = 0u32;
            for buf in bufs {
                let mut done = 0;
                while done < buf.len() {
                    let rest = buf.get_range(done..buf.len()).ok_or(Errno::Fault)?;
                    match self.try_recv(mem, fd, rest, false)? {
                        Some(0) => return Ok(total),
                        Some(n) => {
                            done += n;
                            total += n;
                        }
                        None => wait_fd(&self.fds, fd, Interest::Read).await?,
                    }
                }
            }
            return Ok(total);
        }
        let buf = bufs.into_iter().next().unwrap_or(GuestPtr::new((0, 0)));
        loop {
            if let Some(n) = self.try_recv(mem, fd, buf, peek)? {
                return Ok(n);
            }
            if nonblocking {
                return Err(Errno::Again.into());
            }
            wait_fd(&self.fds, fd, Interest::Read).await?;
        }
    }

    fn try_send(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        buf: GuestPtr<[u8]>,
    ) -> Result<Option<u32>, types::Error> {
        let stream = self.stream(fd)?;
        if buf.len() == 0 {
            return Ok(Some(0));
        }
        // A shared memory is copied out, so bound what one call takes.
        let buf = if mem.is_shared_memory() {
            buf.get_range(0..buf.len().min(MAX_COPY))
                .ok_or(Errno::Fault)?
        } else {
            buf
        };
        let data = mem.as_cow(buf)?;
        match stream.try_send(&data) {
            Ok(n) => Ok(Some(n as u32)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(io_errno(&e).into()),
        }
    }

    /// Send from the first non-empty buffer of `ciovs` (a short write, as
    /// `write(2)` may make; callers loop).
    pub async fn send(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        ciovs: types::CiovecArray,
    ) -> Result<u32, types::Error> {
        let buf = ciovec_bufs(mem, ciovs)?
            .into_iter()
            .next()
            .unwrap_or(GuestPtr::new((0, 0)));
        loop {
            if let Some(n) = self.try_send(mem, fd, buf)? {
                return Ok(n);
            }
            if self.socket(fd)?.nonblocking {
                return Err(Errno::Again.into());
            }
            wait_fd(&self.fds, fd, Interest::Write).await?;
        }
    }

    /// `poll_oneoff`. Without sockets it is wasmtime-wasi's. With sockets,
    /// Warden waits itself: on the sockets (one `poll(2)` for all of them
    /// to check, the reactor to wait) and on the clocks (a timer); any other
    /// descriptors in the set go to wasmtime-wasi's poll alongside.
    async fn poll(
        &mut self,
        subs: Vec<types::Subscription>,
    ) -> Result<Vec<types::Event>, types::Error> {
        let (sockets, rest): (Vec<_>, Vec<_>) = subs.into_iter().partition(|s| match &s.u {
            types::SubscriptionU::FdRead(r) | types::SubscriptionU::FdWrite(r) => {
                self.is_socket(r.file_descriptor)
            }
            types::SubscriptionU::Clock(_) => false,
        });
        let Self { inner, fds, .. } = self;
        if sockets.is_empty() {
            return inner_poll(inner, fds, &rest, false).await;
        }
        let (clocks, files): (Vec<_>, Vec<_>) = rest
            .into_iter()
            .partition(|s| matches!(s.u, types::SubscriptionU::Clock(_)));
        let mut deadlines = Vec::with_capacity(clocks.len());
        for sub in &clocks {
            if let types::SubscriptionU::Clock(clock) = &sub.u {
                deadlines.push((sub.userdata, clock_deadline(inner, clock)?));
            }
        }
        let expired = |deadlines: &[(u64, Option<Instant>)]| -> Vec<types::Event> {
            let now = Instant::now();
            deadlines
                .iter()
                .filter(|(_, d)| d.is_some_and(|d| d <= now))
                .map(|(userdata, _)| clock_event(*userdata))
                .collect()
        };
        loop {
            let mut events = socket_events(fds, &sockets);
            events.extend(expired(&deadlines));
            if !events.is_empty() {
                if !files.is_empty() {
                    events.extend(inner_poll(inner, fds, &files, true).await?);
                }
                return Ok(events);
            }
            let earliest = deadlines.iter().filter_map(|(_, d)| *d).min();
            let timer = async move {
                match earliest {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            if files.is_empty() {
                tokio::select! {
                    () = wait_any(fds, &sockets) => {}
                    () = timer => {}
                }
                continue;
            }
            tokio::select! {
                ready = inner_poll(inner, fds, &files, false) => {
                    let mut events = ready?;
                    events.extend(socket_events(fds, &sockets));
                    events.extend(expired(&deadlines));
                    return Ok(events);
                }
                () = wait_any(fds, &sockets) => {}
                () = timer => {}
            }
        }
    }
}

/// When a clock subscription fires, as a host instant (`None`: never, in
/// any useful sense). Absolute times are read against the guest's own
/// clocks, which may be virtualised.
fn clock_deadline(
    inner: &mut WasiP1Ctx,
    clock: &types::SubscriptionClock,
) -> Result<Option<Instant>, types::Error> {
    let absolute = clock
        .flags
        .contains(types::Subclockflags::SUBSCRIPTION_CLOCK_ABSTIME);
    let wait_ns = match clock.id {
        types::Clockid::Monotonic | types::Clockid::Realtime if absolute => {
            let mut none: [u8; 0] = [];
            let now =
                Inner::clock_time_get(inner, &mut GuestMemory::Unshared(&mut none), clock.id, 0)?;
            clock.timeout.saturating_sub(now)
        }
        types::Clockid::Monotonic | types::Clockid::Realtime => clock.timeout,
        _ => return Err(Errno::Inval.into()),
    };
    Ok(Instant::now().checked_add(Duration::from_nanos(wait_ns)))
}

fn clock_event(userdata: u64) -> types::Event {
    types::Event {
        userdata,
        error: Errno::Success,
        type_: types::Eventtype::Clock,
        fd_readwrite: types::EventFdReadwrite {
            nbytes: 0,
            flags: types::Eventrwflags::empty(),
        },
    }
}

/// Wait for `interest` on socket `fd`. Takes only the table, so the future
/// stays `Send` (wasmtime-wasi's context is not `Sync`).
async fn wait_fd(
    fds: &BTreeMap<u32, Slot>,
    fd: types::Fd,
    interest: Interest,
) -> Result<(), types::Error> {
    let sock = &socket_in(fds, fd)?.sock;
    sock.wait(interest).await.map_err(|e| io_errno(&e).into())
}

fn socket_in(fds: &BTreeMap<u32, Slot>, fd: types::Fd) -> Result<&SocketFd, Errno> {
    match fds.get(&u32::from(fd)) {
        Some(Slot::Socket(s)) => Ok(s),
        Some(Slot::Wasi(_)) => Err(Errno::Notsock),
        None => Err(Errno::Badf),
    }
}

/// Events for the socket subscriptions that are ready now, checked with
/// one `poll(2)` for all of them.
fn socket_events(fds: &BTreeMap<u32, Slot>, subs: &[types::Subscription]) -> Vec<types::Event> {
    let event = |sub: &types::Subscription, error, nbytes, hangup: bool| types::Event {
        userdata: sub.userdata,
        error,
        type_: match sub.u {
            types::SubscriptionU::FdWrite(_) => types::Eventtype::FdWrite,
            _ => types::Eventtype::FdRead,
        },
        fd_readwrite: types::EventFdReadwrite {
            nbytes,
            flags: if hangup {
                types::Eventrwflags::FD_READWRITE_HANGUP
            } else {
                types::Eventrwflags::empty()
            },
        },
    };
    let mut events = Vec::new();
    let mut probes = Vec::with_capacity(subs.len());
    for sub in subs {
        let fd = match &sub.u {
            types::SubscriptionU::FdRead(r) | types::SubscriptionU::FdWrite(r) => r.file_descriptor,
            types::SubscriptionU::Clock(_) => continue,
        };
        match socket_in(fds, fd) {
            Ok(s) => probes.push((sub, s.sock.as_raw_fd(), matches!(s.sock, Sock::Stream(_)))),
            Err(errno) => events.push(event(sub, errno, 0, false)),
        }
    }
    let raw: Vec<_> = probes.iter().map(|&(_, fd, stream)| (fd, stream)).collect();
    match readiness_many(&raw) {
        Ok(all) => {
            for ((sub, _, stream), r) in probes.into_iter().zip(all) {
                let ready = match sub.u {
                    types::SubscriptionU::FdWrite(_) => r.writable || r.hangup,
                    _ => r.readable || r.hangup,
                };
                if ready {
                    let nbytes = if stream { r.bytes } else { 1 };
                    events.push(event(sub, Errno::Success, nbytes, r.hangup));
                }
            }
        }
        Err(e) => events.extend(
            probes
                .into_iter()
                .map(|(sub, _, _)| event(sub, io_errno(&e), 0, false)),
        ),
    }
    events
}

/// Wait until any subscribed socket may be ready.
async fn wait_any(fds: &BTreeMap<u32, Slot>, subs: &[types::Subscription]) {
    std::future::poll_fn(|cx| {
        for sub in subs {
            let (fd, interest) = match &sub.u {
                types::SubscriptionU::FdRead(r) => (r.file_descriptor, Interest::Read),
                types::SubscriptionU::FdWrite(w) => (w.file_descriptor, Interest::Write),
                types::SubscriptionU::Clock(_) => continue,
            };
            match socket_in(fds, fd) {
                // An error is an event too: report it.
                Ok(s) => {
                    if s.sock.poll_ready(interest, cx).is_ready() {
                        return std::task::Poll::Ready(());
                    }
                }
                Err(_) => return std::task::Poll::Ready(()),
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Run wasmtime-wasi's `poll_oneoff` on the non-socket subscriptions, with
/// guest fds translated to inner ones. The subscriptions go through a
/// scratch memory, since the guest's copy holds guest numbers. With
/// `now_only`, a zero timeout is added so the call returns at once.
async fn inner_poll(
    inner: &mut WasiP1Ctx,
    fds: &BTreeMap<u32, Slot>,
    subs: &[types::Subscription],
    now_only: bool,
) -> Result<Vec<types::Event>, types::Error> {
    let mut translated: Vec<types::Subscription> = Vec::with_capacity(subs.len() + 1);
    for (i, sub) in subs.iter().enumerate() {
        let mut sub = sub.clone();
        // Userdata becomes the index, so events map back exactly.
        sub.userdata = i as u64;
        match &mut sub.u {
            types::SubscriptionU::FdRead(r) | types::SubscriptionU::FdWrite(r) => {
                r.file_descriptor = match fds.get(&u32::from(r.file_descriptor)) {
                    Some(Slot::Wasi(inner)) => (*inner).into(),
                    _ => return Err(Errno::Badf.into()),
                };
            }
            types::SubscriptionU::Clock(_) => {}
        }
        translated.push(sub);
    }
    if now_only {
        translated.push(types::Subscription {
            userdata: subs.len() as u64,
            u: types::SubscriptionU::Clock(types::SubscriptionClock {
                id: types::Clockid::Monotonic,
                timeout: 0,
                precision: 0,
                flags: types::Subclockflags::empty(),
            }),
        });
    }
    let n = translated.len() as u32;
    let sub_size = types::Subscription::guest_size();
    let event_size = types::Event::guest_size();
    let events_at = n * sub_size;
    // u64 words keep the scratch memory 8-byte aligned, as the types need.
    let mut words = vec![0u64; ((n * (sub_size + event_size)) as usize).div_ceil(8)];
    // SAFETY: a u64 buffer viewed as bytes; same length in bytes, no padding.
    let bytes =
        unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 8) };
    let mut scratch = GuestMemory::Unshared(bytes);
    for (i, sub) in translated.iter().enumerate() {
        scratch.write(GuestPtr::new(i as u32 * sub_size), sub.clone())?;
    }
    let count = Inner::poll_oneoff(
        inner,
        &mut scratch,
        GuestPtr::new(0),
        GuestPtr::new(events_at),
        n,
    )
    .await?;
    let mut events = Vec::with_capacity(count as usize);
    for i in 0..count {
        let mut event: types::Event = scratch.read(GuestPtr::new(events_at + i * event_size))?;
        let Some(original) = subs.get(event.userdata as usize) else {
            continue; // the zero-timeout clock
        };
        event.userdata = original.userdata;
        events.push(event);
    }
    Ok(events)
}

/// The non-empty buffers of an iovec or ciovec array (at most `IOV_MAX`
/// entries); `parts` gives an entry's pointer and length.
fn io_bufs<T: GuestType>(
    mem: &GuestMemory<'_>,
    vecs: GuestPtr<[T]>,
    parts: fn(T) -> (GuestPtr<u8>, u32),
) -> Result<Vec<GuestPtr<[u8]>>, types::Error> {
    if vecs.len() > IOV_MAX {
        return Err(Errno::Inval.into());
    }
    let mut bufs = Vec::new();
    for entry in vecs.iter() {
        let (buf, len) = parts(mem.read(entry?)?);
        if len > 0 {
            bufs.push(buf.as_array(len));
        }
    }
    Ok(bufs)
}

fn iovec_bufs(
    mem: &GuestMemory<'_>,
    iovs: types::IovecArray,
) -> Result<Vec<GuestPtr<[u8]>>, types::Error> {
    io_bufs(mem, iovs, |v| (v.buf, v.buf_len))
}

fn ciovec_bufs(
    mem: &GuestMemory<'_>,
    ciovs: types::CiovecArray,
) -> Result<Vec<GuestPtr<[u8]>>, types::Error> {
    io_bufs(mem, ciovs, |v| (v.buf, v.buf_len))
}

/// The preview1 errno for a host socket error.
fn io_errno(e: &std::io::Error) -> Errno {
    if e.kind() == std::io::ErrorKind::WouldBlock {
        return Errno::Again;
    }
    match e.raw_os_error() {
        Some(libc::ECONNRESET) => Errno::Connreset,
        Some(libc::ECONNABORTED) => Errno::Connaborted,
        Some(libc::EPIPE) => Errno::Pipe,
        Some(libc::ENOTCONN) => Errno::Notconn,
        Some(libc::EINTR) => Errno::Intr,
        Some(libc::EINVAL) => Errno::Inval,
        Some(libc::EMFILE) => Errno::Mfile,
        Some(libc::ENFILE) => Errno::Nfile,
        Some(libc::ENOBUFS) => Errno::Nobufs,
        Some(libc::ENOMEM) => Errno::Nomem,
        Some(libc::ETIMEDOUT) => Errno::Timedout,
        _ => Errno::Io,
    }
}

fn socket_rights(sock: &Sock) -> types::Rights {
    let common = types::Rights::POLL_FD_READWRITE
        | types::Rights::FD_FDSTAT_SET_FLAGS
        | types::Rights::FD_FILESTAT_GET;
    match sock {
        Sock::Listener(_) => common | types::Rights::SOCK_ACCEPT,
        Sock::Stream(_) => {
            common | types::Rights::FD_READ | types::Rights::FD_WRITE | types::Rights::SOCK_SHUTDOWN
        }
    }
}

impl Inner for P1Ctx {
    fn set_hostcall_fuel(&mut self, fuel: usize) {
        Inner::set_hostcall_fuel(&mut self.inner, fuel);
    }

    fn args_get(
        &mut self,
        mem: &mut GuestMemory<'_>,
        argv: GuestPtr<GuestPtr<u8>>,
        argv_buf: GuestPtr<u8>,
    ) -> Result<(), types::Error> {
        Inner::args_get(&mut self.inner, mem, argv, argv_buf)
    }

    fn args_sizes_get(
        &mut self,
        mem: &mut GuestMemory<'_>,
    ) -> Result<(types::Size, types::Size), types::Error> {
        Inner::args_sizes_get(&mut self.inner, mem)
    }

    fn environ_get(
        &mut self,
        mem: &mut GuestMemory<'_>,
        environ: GuestPtr<GuestPtr<u8>>,
        environ_buf: GuestPtr<u8>,
    ) -> Result<(), types::Error> {
        Inner::environ_get(&mut self.inner, mem, environ, environ_buf)
    }

    fn environ_sizes_get(
        &mut self,
        mem: &mut GuestMemory<'_>,
    ) -> Result<(types::Size, types::Size), types::Error> {
        Inner::environ_sizes_get(&mut self.inner, mem)
    }

    fn clock_res_get(
        &mut self,
        mem: &mut GuestMemory<'_>,
        id: types::Clockid,
    ) -> Result<types::Timestamp, types::Error> {
        Inner::clock_res_get(&mut self.inner, mem, id)
    }

    fn clock_time_get(
        &mut self,
        mem: &mut GuestMemory<'_>,
        id: types::Clockid,
        precision: types::Timestamp,
    ) -> Result<types::Timestamp, types::Error> {
        Inner::clock_time_get(&mut self.inner, mem, id, precision)
    }

    fn proc_raise(
        &mut self,
        mem: &mut GuestMemory<'_>,
        sig: types::Signal,
    ) -> Result<(), types::Error> {
        Inner::proc_raise(&mut self.inner, mem, sig)
    }

    fn sched_yield(&mut self, mem: &mut GuestMemory<'_>) -> Result<(), types::Error> {
        Inner::sched_yield(&mut self.inner, mem)
    }

    fn random_get(
        &mut self,
        mem: &mut GuestMemory<'_>,
        buf: GuestPtr<u8>,
        buf_len: types::Size,
    ) -> Result<(), types::Error> {
        Inner::random_get(&mut self.inner, mem, buf, buf_len)
    }

    async fn fd_advise(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        offset: types::Filesize,
        len: types::Filesize,
        advice: types::Advice,
    ) -> Result<(), types::Error> {
        let fd = self.wasi_fd(fd, Errno::Spipe)?;
        Inner::fd_advise(&mut self.inner, mem, fd, offset, len, advice).await
    }

    fn fd_allocate(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        offset: types::Filesize,
        len: types::Filesize,
    ) -> Result<(), types::Error> {
        let fd = self.wasi_fd(fd, Errno::Spipe)?;
        Inner::fd_allocate(&mut self.inner, mem, fd, offset, len)
    }

    async fn fd_datasync(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
    ) -> Result<(), types::Error> {
        let fd = self.wasi_fd(fd, Errno::Inval)?;
        Inner::fd_datasync(&mut self.inner, mem, fd).await
    }

    async fn fd_sync(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
    ) -> Result<(), types::Error> {
        let fd = self.wasi_fd(fd, Errno::Inval)?;
        Inner::fd_sync(&mut self.inner, mem, fd).await
    }

    async fn fd_filestat_set_size(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        size: types::Filesize,
    ) -> Result<(), types::Error> {
        let fd = self.wasi_fd(fd, Errno::Inval)?;
        Inner::fd_filestat_set_size(&mut self.inner, mem, fd, size).await
    }

    async fn fd_filestat_set_times(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        atim: types::Timestamp,
        mtim: types::Timestamp,
        fst_flags: types::Fstflags,
    ) -> Result<(), types::Error> {
        let fd = self.wasi_fd(fd, Errno::Inval)?;
        Inner::fd_filestat_set_times(&mut self.inner, mem, fd, atim, mtim, fst_flags).await
    }

    async fn fd_pread(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        iovs: types::IovecArray,
        offset: types::Filesize,
    ) -> Result<types::Size, types::Error> {
        let fd = self.wasi_fd(fd, Errno::Spipe)?;
        Inner::fd_pread(&mut self.inner, mem, fd, iovs, offset).await
    }

    async fn fd_pwrite(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        ciovs: types::CiovecArray,
        offset: types::Filesize,
    ) -> Result<types::Size, types::Error> {
        let fd = self.wasi_fd(fd, Errno::Spipe)?;
        Inner::fd_pwrite(&mut self.inner, mem, fd, ciovs, offset).await
    }

    async fn fd_seek(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        offset: types::Filedelta,
        whence: types::Whence,
    ) -> Result<types::Filesize, types::Error> {
        let fd = self.wasi_fd(fd, Errno::Spipe)?;
        Inner::fd_seek(&mut self.inner, mem, fd, offset, whence).await
    }

    fn fd_tell(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
    ) -> Result<types::Filesize, types::Error> {
        let fd = self.wasi_fd(fd, Errno::Spipe)?;
        Inner::fd_tell(&mut self.inner, mem, fd)
    }

    async fn fd_readdir(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        buf: GuestPtr<u8>,
        buf_len: types::Size,
        cookie: types::Dircookie,
    ) -> Result<types::Size, types::Error> {
        let fd = self.wasi_fd(fd, Errno::Notdir)?;
        Inner::fd_readdir(&mut self.inner, mem, fd, buf, buf_len, cookie).await
    }

    fn fd_fdstat_set_rights(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        fs_rights_base: types::Rights,
        fs_rights_inheriting: types::Rights,
    ) -> Result<(), types::Error> {
        let fd = self.wasi_fd(fd, Errno::Notsup)?;
        Inner::fd_fdstat_set_rights(
            &mut self.inner,
            mem,
            fd,
            fs_rights_base,
            fs_rights_inheriting,
        )
    }

    fn fd_prestat_dir_name(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        path: GuestPtr<u8>,
        path_max_len: types::Size,
    ) -> Result<(), types::Error> {
        let fd = self.wasi_fd(fd, Errno::Notdir)?;
        Inner::fd_prestat_dir_name(&mut self.inner, mem, fd, path, path_max_len)
    }

    async fn path_create_directory(
        &mut self,
        mem: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        let dirfd = self.wasi_fd(dirfd, Errno::Notdir)?;
        Inner::path_create_directory(&mut self.inner, mem, dirfd, path).await
    }

    async fn path_filestat_get(
        &mut self,
        mem: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        flags: types::Lookupflags,
        path: GuestPtr<str>,
    ) -> Result<types::Filestat, types::Error> {
        let dirfd = self.wasi_fd(dirfd, Errno::Notdir)?;
        Inner::path_filestat_get(&mut self.inner, mem, dirfd, flags, path).await
    }

    async fn path_filestat_set_times(
        &mut self,
        mem: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        flags: types::Lookupflags,
        path: GuestPtr<str>,
        atim: types::Timestamp,
        mtim: types::Timestamp,
        fst_flags: types::Fstflags,
    ) -> Result<(), types::Error> {
        let dirfd = self.wasi_fd(dirfd, Errno::Notdir)?;
        Inner::path_filestat_set_times(
            &mut self.inner,
            mem,
            dirfd,
            flags,
            path,
            atim,
            mtim,
            fst_flags,
        )
        .await
    }

    async fn path_link(
        &mut self,
        mem: &mut GuestMemory<'_>,
        src_fd: types::Fd,
        src_flags: types::Lookupflags,
        src_path: GuestPtr<str>,
        target_fd: types::Fd,
        target_path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        let src_fd = self.wasi_fd(src_fd, Errno::Notdir)?;
        let target_fd = self.wasi_fd(target_fd, Errno::Notdir)?;
        Inner::path_link(
            &mut self.inner,
            mem,
            src_fd,
            src_flags,
            src_path,
            target_fd,
            target_path,
        )
        .await
    }

    async fn path_readlink(
        &mut self,
        mem: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
        buf: GuestPtr<u8>,
        buf_len: types::Size,
    ) -> Result<types::Size, types::Error> {
        let dirfd = self.wasi_fd(dirfd, Errno::Notdir)?;
        Inner::path_readlink(&mut self.inner, mem, dirfd, path, buf, buf_len).await
    }

    async fn path_remove_directory(
        &mut self,
        mem: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        let dirfd = self.wasi_fd(dirfd, Errno::Notdir)?;
        Inner::path_remove_directory(&mut self.inner, mem, dirfd, path).await
    }

    async fn path_rename(
        &mut self,
        mem: &mut GuestMemory<'_>,
        src_fd: types::Fd,
        src_path: GuestPtr<str>,
        dest_fd: types::Fd,
        dest_path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        let src_fd = self.wasi_fd(src_fd, Errno::Notdir)?;
        let dest_fd = self.wasi_fd(dest_fd, Errno::Notdir)?;
        Inner::path_rename(&mut self.inner, mem, src_fd, src_path, dest_fd, dest_path).await
    }

    async fn path_symlink(
        &mut self,
        mem: &mut GuestMemory<'_>,
        src_path: GuestPtr<str>,
        dirfd: types::Fd,
        dest_path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        let dirfd = self.wasi_fd(dirfd, Errno::Notdir)?;
        Inner::path_symlink(&mut self.inner, mem, src_path, dirfd, dest_path).await
    }

    async fn path_unlink_file(
        &mut self,
        mem: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        path: GuestPtr<str>,
    ) -> Result<(), types::Error> {
        let dirfd = self.wasi_fd(dirfd, Errno::Notdir)?;
        Inner::path_unlink_file(&mut self.inner, mem, dirfd, path).await
    }

    async fn fd_close(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
    ) -> Result<(), types::Error> {
        match self.fds.get(&u32::from(fd)) {
            Some(Slot::Wasi(inner)) => {
                Inner::fd_close(&mut self.inner, mem, (*inner).into()).await?
            }
            // Dropping the socket closes it on the host at once.
            Some(Slot::Socket(_)) => {}
            None => return Err(Errno::Badf.into()),
        }
        self.fds.remove(&u32::from(fd));
        Ok(())
    }

    async fn fd_fdstat_get(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
    ) -> Result<types::Fdstat, types::Error> {
        if let Ok(s) = self.socket(fd) {
            let rights = socket_rights(&s.sock);
            return Ok(types::Fdstat {
                fs_filetype: types::Filetype::SocketStream,
                fs_flags: if s.nonblocking {
                    types::Fdflags::NONBLOCK
                } else {
                    types::Fdflags::empty()
                },
                fs_rights_base: rights,
                fs_rights_inheriting: rights,
            });
        }
        let fd = self.wasi_fd(fd, Errno::Badf)?;
        Inner::fd_fdstat_get(&mut self.inner, mem, fd).await
    }

    fn fd_fdstat_set_flags(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        flags: types::Fdflags,
    ) -> Result<(), types::Error> {
        if let Some(Slot::Socket(s)) = self.fds.get_mut(&u32::from(fd)) {
            if !(flags - types::Fdflags::NONBLOCK).is_empty() {
                return Err(Errno::Inval.into());
            }
            s.nonblocking = flags.contains(types::Fdflags::NONBLOCK);
            return Ok(());
        }
        let fd = self.wasi_fd(fd, Errno::Badf)?;
        Inner::fd_fdstat_set_flags(&mut self.inner, mem, fd, flags)
    }

    async fn fd_filestat_get(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
    ) -> Result<types::Filestat, types::Error> {
        if self.socket(fd).is_ok() {
            return Ok(types::Filestat {
                dev: 0,
                ino: 0,
                filetype: types::Filetype::SocketStream,
                nlink: 1,
                size: 0,
                atim: 0,
                mtim: 0,
                ctim: 0,
            });
        }
        let fd = self.wasi_fd(fd, Errno::Badf)?;
        Inner::fd_filestat_get(&mut self.inner, mem, fd).await
    }

    async fn fd_read(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        iovs: types::IovecArray,
    ) -> Result<types::Size, types::Error> {
        if self.is_socket(fd) {
            return self.recv(mem, fd, iovs, false, false).await;
        }
        let fd = self.wasi_fd(fd, Errno::Badf)?;
        Inner::fd_read(&mut self.inner, mem, fd, iovs).await
    }

    async fn fd_write(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        ciovs: types::CiovecArray,
    ) -> Result<types::Size, types::Error> {
        if self.is_socket(fd) {
            return self.send(mem, fd, ciovs).await;
        }
        let fd = self.wasi_fd(fd, Errno::Badf)?;
        Inner::fd_write(&mut self.inner, mem, fd, ciovs).await
    }

    fn fd_prestat_get(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
    ) -> Result<types::Prestat, types::Error> {
        // Sockets are answered by `link_p1`'s shadow, which can write a
        // non-`dir` tag; this typed path can only say "not a preopen".
        let fd = self.wasi_fd(fd, Errno::Badf)?;
        Inner::fd_prestat_get(&mut self.inner, mem, fd)
    }

    async fn fd_renumber(
        &mut self,
        mem: &mut GuestMemory<'_>,
        from: types::Fd,
        to: types::Fd,
    ) -> Result<(), types::Error> {
        let (from_n, to_n) = (u32::from(from), u32::from(to));
        if !self.fds.contains_key(&from_n) || !self.fds.contains_key(&to_n) {
            return Err(Errno::Badf.into());
        }
        if from_n == to_n {
            return Ok(());
        }
        if let Some(Slot::Wasi(inner)) = self.fds.get(&to_n) {
            Inner::fd_close(&mut self.inner, mem, (*inner).into()).await?;
        }
        let slot = self.fds.remove(&from_n).expect("checked above");
        self.fds.insert(to_n, slot);
        Ok(())
    }

    #[allow(clippy::too_many_arguments, reason = "the preview1 signature")]
    async fn path_open(
        &mut self,
        mem: &mut GuestMemory<'_>,
        dirfd: types::Fd,
        dirflags: types::Lookupflags,
        path: GuestPtr<str>,
        oflags: types::Oflags,
        fs_rights_base: types::Rights,
        fs_rights_inheriting: types::Rights,
        fdflags: types::Fdflags,
    ) -> Result<types::Fd, types::Error> {
        let dirfd = self.wasi_fd(dirfd, Errno::Notdir)?;
        let opened = Inner::path_open(
            &mut self.inner,
            mem,
            dirfd,
            dirflags,
            path,
            oflags,
            fs_rights_base,
            fs_rights_inheriting,
            fdflags,
        )
        .await?;
        Ok(self.alloc(Slot::Wasi(opened.into())))
    }

    async fn poll_oneoff(
        &mut self,
        mem: &mut GuestMemory<'_>,
        subs: GuestPtr<types::Subscription>,
        events: GuestPtr<types::Event>,
        nsubscriptions: types::Size,
    ) -> Result<types::Size, types::Error> {
        if nsubscriptions == 0 || nsubscriptions > MAX_SUBSCRIPTIONS {
            return Err(Errno::Inval.into());
        }
        let mut all = Vec::with_capacity(nsubscriptions as usize);
        for sub in subs.as_array(nsubscriptions).iter() {
            all.push(mem.read(sub?)?);
        }
        let ready = self.poll(all).await?;
        let out = events.as_array(nsubscriptions);
        for (i, event) in ready.iter().enumerate() {
            let slot = out.get(i as u32).ok_or(Errno::Fault)?;
            mem.write(slot, event.clone())?;
        }
        Ok(ready.len() as u32)
    }

    fn proc_exit(&mut self, mem: &mut GuestMemory<'_>, status: types::Exitcode) -> wasmtime::Error {
        Inner::proc_exit(&mut self.inner, mem, status)
    }

    fn sock_accept(
        &mut self,
        _mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        flags: types::Fdflags,
    ) -> Result<types::Fd, types::Error> {
        // `link_p1` installs the waiting version; this one never waits.
        self.try_accept(fd, flags)?
            .ok_or_else(|| Errno::Again.into())
    }

    fn sock_recv(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        ri_data: types::IovecArray,
        ri_flags: types::Riflags,
    ) -> Result<(types::Size, types::Roflags), types::Error> {
        // `link_p1` installs the waiting version; this one never waits.
        let buf = iovec_bufs(mem, ri_data)?
            .into_iter()
            .next()
            .unwrap_or(GuestPtr::new((0, 0)));
        let peek = ri_flags.contains(types::Riflags::RECV_PEEK);
        let n = self.try_recv(mem, fd, buf, peek)?.ok_or(Errno::Again)?;
        Ok((n, types::Roflags::empty()))
    }

    fn sock_send(
        &mut self,
        mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        si_data: types::CiovecArray,
        _si_flags: types::Siflags,
    ) -> Result<types::Size, types::Error> {
        // `link_p1` installs the waiting version; this one never waits.
        let buf = ciovec_bufs(mem, si_data)?
            .into_iter()
            .next()
            .unwrap_or(GuestPtr::new((0, 0)));
        Ok(self.try_send(mem, fd, buf)?.ok_or(Errno::Again)?)
    }

    fn sock_shutdown(
        &mut self,
        _mem: &mut GuestMemory<'_>,
        fd: types::Fd,
        how: types::Sdflags,
    ) -> Result<(), types::Error> {
        let how = match (
            how.contains(types::Sdflags::RD),
            how.contains(types::Sdflags::WR),
        ) {
            (true, true) => Shutdown::Both,
            (true, false) => Shutdown::Read,
            (false, true) => Shutdown::Write,
            (false, false) => return Err(Errno::Inval.into()),
        };
        self.stream(fd)?
            .shutdown(how)
            .map_err(|e| io_errno(&e).into())
    }
}

/// Link preview1 for core modules: wasmtime-wasi's implementation behind
/// [`P1Ctx`], plus the asynchronous socket calls and the socket-aware
/// `fd_prestat_get` described in the module docs.
pub fn link_p1<T: Send + 'static>(
    linker: &mut Linker<T>,
    project: fn(&mut T) -> &mut P1Ctx,
) -> Result<(), WasiError> {
    const M: &str = "wasi_snapshot_preview1";
    wasi_snapshot_preview1::add_to_linker(linker, project).map_err(WasiError::Link)?;
    linker.allow_shadowing(true);
    let shadow = (|| -> wasmtime::Result<()> {
        linker.func_wrap_async(
            M,
            "sock_accept",
            move |mut caller: Caller<'_, T>, (fd, flags, out): (i32, i32, i32)| {
                Box::new(async move {
                    with_memory(&mut caller, project, async |p1, mem| {
                        let new = p1
                            .accept(fd_arg(fd), types::Fdflags::from_bits_truncate(flags as u16))
                            .await?;
                        mem.write(GuestPtr::<types::Fd>::new(out as u32), new)?;
                        Ok(())
                    })
                    .await
                })
            },
        )?;
        linker.func_wrap_async(
            M,
            "sock_recv",
            move |mut caller: Caller<'_, T>,
                  (fd, iovs, iovs_len, flags, out_len, out_flags): (
                i32,
                i32,
                i32,
                i32,
                i32,
                i32,
            )| {
                Box::new(async move {
                    with_memory(&mut caller, project, async |p1, mem| {
                        let flags = types::Riflags::from_bits_truncate(flags as u16);
                        let iovs = GuestPtr::<[types::Iovec]>::new((iovs as u32, iovs_len as u32));
                        let peek = flags.contains(types::Riflags::RECV_PEEK);
                        let waitall = flags.contains(types::Riflags::RECV_WAITALL);
                        let n = p1.recv(mem, fd_arg(fd), iovs, peek, waitall).await?;
                        mem.write(GuestPtr::<types::Size>::new(out_len as u32), n)?;
                        mem.write(
                            GuestPtr::<types::Roflags>::new(out_flags as u32),
                            types::Roflags::empty(),
                        )?;
                        Ok(())
                    })
                    .await
                })
            },
        )?;
        linker.func_wrap_async(
            M,
            "sock_send",
            move |mut caller: Caller<'_, T>,
                  (fd, ciovs, ciovs_len, _flags, out_len): (i32, i32, i32, i32, i32)| {
                Box::new(async move {
                    with_memory(&mut caller, project, async |p1, mem| {
                        let ciovs =
                            GuestPtr::<[types::Ciovec]>::new((ciovs as u32, ciovs_len as u32));
                        let n = p1.send(mem, fd_arg(fd), ciovs).await?;
                        mem.write(GuestPtr::<types::Size>::new(out_len as u32), n)?;
                        Ok(())
                    })
                    .await
                })
            },
        )?;
        linker.func_wrap_async(
            M,
            "fd_prestat_get",
            move |mut caller: Caller<'_, T>, (fd, out): (i32, i32)| {
                Box::new(async move {
                    with_memory(&mut caller, project, async |p1, mem| {
                        if p1.is_socket(fd_arg(fd)) {
                            // Success with a tag that is not `dir` (0): wasi-libc
                            // skips the descriptor and keeps looking for preopens.
                            // Check alignment and bounds before writing anything:
                            // a bad pointer is EFAULT and nothing is half-written.
                            let at = out as u32;
                            let len_at = at
                                .checked_add(4)
                                .filter(|_| at.is_multiple_of(4))
                                .ok_or(Errno::Fault)?;
                            mem.write(GuestPtr::<u32>::new(len_at), 0u32)?;
                            mem.write(GuestPtr::<u8>::new(at), 1u8)?;
                            return Ok(());
                        }
                        let prestat = Inner::fd_prestat_get(p1, mem, fd_arg(fd))?;
                        mem.write(GuestPtr::<types::Prestat>::new(out as u32), prestat)?;
                        Ok(())
                    })
                    .await
                })
            },
        )?;
        Ok(())
    })();
    linker.allow_shadowing(false);
    shadow.map_err(WasiError::Link)
}

fn fd_arg(fd: i32) -> types::Fd {
    (fd as u32).into()
}

/// Run `f` with the guest's memory and its [`P1Ctx`], and turn its result
/// into the errno a preview1 call returns (a trap stays a trap).
async fn with_memory<T>(
    caller: &mut Caller<'_, T>,
    project: fn(&mut T) -> &mut P1Ctx,
    f: impl AsyncFnOnce(&mut P1Ctx, &mut GuestMemory<'_>) -> Result<(), types::Error>,
) -> wasmtime::Result<i32> {
    let Some(memory) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
        return Err(wasmtime::Error::msg(
            "preview1 sockets need the module to export an unshared `memory`",
        ));
    };
    let (data, store) = memory.data_and_store_mut(caller);
    let mut mem = GuestMemory::Unshared(data);
    match f(project(store), &mut mem).await {
        Ok(()) => Ok(Errno::Success as i32),
        Err(e) => match e.downcast() {
            Ok(errno) => Ok(errno as i32),
            Err(trap) => Err(trap),
        },
    }
}
