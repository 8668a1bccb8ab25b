//! `poll_oneoff` over any mix of sockets, clocks and other descriptors:
//! wasmtime-wasi's own when no socket is in the set; otherwise Warden
//! waits itself (one `poll(2)` to check the sockets (and the host's
//! buffers for TLS ones), the reactor to wait,
//! a timer for clocks) and hands any other descriptors to wasmtime-wasi
//! alongside.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;
use warden_net::socket::{Interest, readiness_many};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p1::types::{self, Errno};
use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1 as Inner;
use wiggle::{GuestMemory, GuestPtr, GuestType};

use super::sockets::io_errno;
use super::table::{P1Ctx, Slot, Sock, socket_in};

impl P1Ctx {
    /// `poll_oneoff`. Without sockets it is wasmtime-wasi's. With sockets,
    /// Warden waits itself: on the sockets (one `poll(2)` for all of them
    /// to check, the reactor to wait) and on the clocks (a timer); any other
    /// descriptors in the set go to wasmtime-wasi's poll alongside.
    pub(super) async fn poll(
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
        // Host tasks move the bytes of TLS sockets and make their
        // connections. The guest's thread runs them only when it waits, so
        // a guest whose poll always answers at once (an always-writable
        // socket in the set) would starve them: the data it waits for
        // would never come. Let them run before answering at once.
        let host_driven = sockets.iter().any(|sub| match &sub.u {
            types::SubscriptionU::FdRead(r) | types::SubscriptionU::FdWrite(r) => {
                socket_in(fds, r.file_descriptor).is_ok_and(|s| s.sock.host_driven())
            }
            types::SubscriptionU::Clock(_) => false,
        });
        let mut yielded = false;
        loop {
            let mut events = socket_events(fds, &sockets);
            events.extend(expired(&deadlines));
            if !events.is_empty() && host_driven && !yielded {
                yielded = true;
                tokio::task::yield_now().await;
                continue;
            }
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
            Ok(s) => probes.push((sub, s.sock.probe(), matches!(s.sock, Sock::Stream(_)))),
            Err(errno) => events.push(event(sub, errno, 0, false)),
        }
    }
    let raw: Vec<_> = probes.iter().map(|&(_, probe, _)| probe).collect();
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
