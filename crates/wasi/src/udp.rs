//! A component's UDP sockets, counted under the instance's UDP-sockets
//! quota ([`warden_net::quota`]) and paced by its bandwidth limits
//! ([`warden_net::rate`]).
//!
//! wasmtime-wasi's UDP stays (its address check calls the gate for every
//! bind, send and receive); only what makes a socket and what moves a
//! datagram are shadowed, each a wrapper around wasmtime's own:
//! 0.2's `create-udp-socket` and 0.3's `udp-socket.create` take a place
//! under the quota first (past it, 0.2's `new-socket-limit`, the code for
//! EMFILE, or 0.3's `other`, which has none); 0.2's datagram streams'
//! `send` and `receive` and 0.3's `udp-socket.send` and `.receive` wait out
//! the direction's debt first and count the datagrams' bytes after, only
//! when a limit is set.
//!
//! wasmtime's socket has no hook for its end, so each place is kept with
//! the table slot of the socket it was taken for, and given back when a
//! later create finds that slot no longer holds that socket (and when the
//! instance ends). A guest that closes sockets can always open as many
//! again; what it holds at once stays within the quota.

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::sockets as p2;
use wasmtime_wasi::p3::bindings::sockets as p3;
use wasmtime_wasi::sockets::WasiSocketsCtxView;

use crate::{ComponentAbi, HasComponentCtx};
use std::sync::Arc;
use warden_net::Bucket;
use warden_net::socket::Family;
use warden_net::{Gate, Held, Quota};
use wasmtime::component::Accessor;

/// Places under the UDP-sockets quota, by the table slot of the socket
/// each was taken for.
#[derive(Default)]
pub(crate) struct UdpHolds(Vec<(u32, Abi, Held)>);

/// Which table type a slot holds: 0.2's socket wraps 0.3's.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Abi {
    P2,
    P3,
}

impl UdpHolds {
    /// Give back the places of sockets the guest has dropped.
    fn sweep(&mut self, table: &ResourceTable) {
        self.0.retain(|(rep, abi, _)| match abi {
            Abi::P2 => table
                .get(&Resource::<wasmtime_wasi::p2::UdpSocket>::new_borrow(*rep))
                .is_ok(),
            Abi::P3 => table
                .get(&Resource::<wasmtime_wasi::sockets::UdpSocket>::new_borrow(
                    *rep,
                ))
                .is_ok(),
        });
    }

    /// A place for one more socket of `family`, or `None` past the quota.
    fn take(
        &mut self,
        table: &ResourceTable,
        gate: &Gate,
        family: Family,
    ) -> Result<Option<Held>, ()> {
        self.sweep(table);
        let target = warden_net::socket::posix::udp_target(family);
        gate.quota(Quota::UdpSockets, &target).map_err(|_| ())
    }

    /// Keep `held` for the socket in slot `rep` (a new socket there
    /// means the one it replaced is gone).
    fn keep(&mut self, rep: u32, abi: Abi, held: Option<Held>) {
        self.0.retain(|(r, _, _)| *r != rep);
        if let Some(held) = held {
            self.0.push((rep, abi, held));
        }
    }
}

/// wasmtime's socket view with the gate and the places beside it.
pub(crate) struct UdpView<'a> {
    pub(crate) sockets: WasiSocketsCtxView<'a>,
    pub(crate) gate: &'a Gate,
    pub(crate) holds: &'a mut UdpHolds,
}

struct Counted;

impl HasData for Counted {
    type Data<'a> = UdpView<'a>;
}

fn view<T: HasComponentCtx>(t: &mut T) -> UdpView<'_> {
    t.component_ctx().udp_view()
}

impl p2::network::Host for UdpView<'_> {
    fn convert_error_code(
        &mut self,
        error: wasmtime_wasi::p2::SocketError,
    ) -> wasmtime::Result<p2::network::ErrorCode> {
        self.sockets.convert_error_code(error)
    }

    fn network_error_code(
        &mut self,
        err: Resource<p2::network::Error>,
    ) -> wasmtime::Result<Option<p2::network::ErrorCode>> {
        self.sockets.network_error_code(err)
    }
}

impl p2::network::HostNetwork for UdpView<'_> {
    fn drop(&mut self, network: Resource<p2::network::Network>) -> wasmtime::Result<()> {
        p2::network::HostNetwork::drop(&mut self.sockets, network)
    }
}

impl p2::udp_create_socket::Host for UdpView<'_> {
    async fn create_udp_socket(
        &mut self,
        family: p2::network::IpAddressFamily,
    ) -> wasmtime_wasi::p2::SocketResult<Resource<wasmtime_wasi::p2::UdpSocket>> {
        let fam = match family {
            p2::network::IpAddressFamily::Ipv4 => Family::V4,
            p2::network::IpAddressFamily::Ipv6 => Family::V6,
        };
        let Ok(held) = self.holds.take(self.sockets.table, self.gate, fam) else {
            return Err(p2::network::ErrorCode::NewSocketLimit.into());
        };
        let socket =
            p2::udp_create_socket::Host::create_udp_socket(&mut self.sockets, family).await?;
        self.holds.keep(socket.rep(), Abi::P2, held);
        Ok(socket)
    }
}

/// The bucket of one direction (`egress`: what the guest sends), if a
/// limit is set.
fn bucket<T: HasComponentCtx>(t: &mut T, egress: bool) -> Option<Arc<Bucket>> {
    let rates = t.component_ctx().hooks.gate.rates();
    if egress {
        rates.egress.clone()
    } else {
        rates.ingress.clone()
    }
}

/// wasmtime's socket view alone, for its 0.3 functions.
fn sockets<T: HasComponentCtx>(t: &mut T) -> WasiSocketsCtxView<'_> {
    t.component_ctx().udp_view().sockets
}

/// Pace 0.2's datagram streams (see the module docs).
fn link_p2_pacing<T: HasComponentCtx>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    let mut udp = linker.instance("wasi:sockets/udp@0.2.12")?;
    udp.func_wrap_async(
        "[method]outgoing-datagram-stream.send",
        |mut store,
         (this, datagrams): (
            Resource<p2::udp::OutgoingDatagramStream>,
            Vec<p2::udp::OutgoingDatagram>,
        )| {
            Box::new(async move {
                let egress = bucket(store.data_mut(), true);
                if let Some(b) = &egress {
                    b.ready().await;
                }
                let sizes: Vec<usize> = datagrams.iter().map(|d| d.data.len()).collect();
                let mut v = view(store.data_mut());
                match p2::udp::HostOutgoingDatagramStream::send(&mut v.sockets, this, datagrams) {
                    Ok(n) => {
                        if let Some(b) = &egress {
                            b.spend(sizes.iter().take(n as usize).sum());
                        }
                        Ok((Ok(n),))
                    }
                    Err(e) => Ok((Err(e.downcast()?),)),
                }
            })
        },
    )?;
    udp.func_wrap_async(
        "[method]incoming-datagram-stream.receive",
        |mut store, (this, max): (Resource<p2::udp::IncomingDatagramStream>, u64)| {
            Box::new(async move {
                let ingress = bucket(store.data_mut(), false);
                if let Some(b) = &ingress {
                    b.ready().await;
                }
                let mut v = view(store.data_mut());
                match p2::udp::HostIncomingDatagramStream::receive(&mut v.sockets, this, max) {
                    Ok(got) => {
                        if let Some(b) = &ingress {
                            b.spend(got.iter().map(|d| d.data.len()).sum());
                        }
                        Ok((Ok(got),))
                    }
                    Err(e) => Ok((Err(e.downcast()?),)),
                }
            })
        },
    )?;
    Ok(())
}

/// Pace 0.3's `udp-socket.send` and `.receive` (see the module docs).
fn link_p3_pacing<T: HasComponentCtx>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    use wasmtime_wasi::p3::bindings::sockets::types::HostUdpSocketWithStore;
    use wasmtime_wasi::sockets::{UdpSocket, WasiSockets};
    let mut types = linker.instance("wasi:sockets/types@0.3.0")?;
    types.func_wrap_concurrent(
        "[method]udp-socket.send",
        |caller: &Accessor<T>,
         (this, data, to): (
            Resource<UdpSocket>,
            Vec<u8>,
            Option<p3::types::IpSocketAddress>,
        )| {
            Box::pin(async move {
                let egress = caller.with(|mut a| bucket(a.get(), true));
                if let Some(b) = &egress {
                    b.ready().await;
                    b.spend(data.len());
                }
                let host = caller.with_getter::<WasiSockets>(sockets::<T>);
                match <WasiSockets as HostUdpSocketWithStore<T>>::send(&host, this, data, to).await
                {
                    Ok(()) => Ok((Ok(()),)),
                    Err(e) => Ok((Err(e.downcast()?),)),
                }
            })
        },
    )?;
    types.func_wrap_concurrent(
        "[method]udp-socket.receive",
        |caller: &Accessor<T>, (this,): (Resource<UdpSocket>,)| {
            Box::pin(async move {
                let ingress = caller.with(|mut a| bucket(a.get(), false));
                if let Some(b) = &ingress {
                    b.ready().await;
                }
                let host = caller.with_getter::<WasiSockets>(sockets::<T>);
                match <WasiSockets as HostUdpSocketWithStore<T>>::receive(&host, this).await {
                    Ok(got) => {
                        if let Some(b) = &ingress {
                            b.spend(got.0.len());
                        }
                        Ok((Ok(got),))
                    }
                    Err(e) => Ok((Err(e.downcast()?),)),
                }
            })
        },
    )?;
    Ok(())
}

/// Shadow the functions that make UDP sockets and move datagrams (see
/// the module docs). The linker must allow shadowing.
pub(crate) fn link<T: HasComponentCtx>(
    linker: &mut Linker<T>,
    abi: ComponentAbi,
) -> wasmtime::Result<()> {
    p2::udp_create_socket::add_to_linker::<T, Counted>(linker, view::<T>)?;
    link_p2_pacing(linker)?;
    if abi == ComponentAbi::P3 {
        link_p3_pacing(linker)?;
    }
    if abi == ComponentAbi::P3 {
        linker
            .instance("wasi:sockets/types@0.3.0")?
            .func_wrap_async(
                "[static]udp-socket.create",
                |mut store, (family,): (p3::types::IpAddressFamily,)| {
                    Box::new(async move {
                        let mut v = view(store.data_mut());
                        let fam = match family {
                            p3::types::IpAddressFamily::Ipv4 => Family::V4,
                            p3::types::IpAddressFamily::Ipv6 => Family::V6,
                        };
                        let Ok(held) = v.holds.take(v.sockets.table, v.gate, fam) else {
                            let full = p3::types::ErrorCode::Other(Some("new-socket-limit".into()));
                            return Ok((Err(full),));
                        };
                        match p3::types::HostUdpSocket::create(&mut v.sockets, family).await {
                            Ok(socket) => {
                                v.holds.keep(socket.rep(), Abi::P3, held);
                                Ok((Ok(socket),))
                            }
                            Err(e) => Ok((Err(e.downcast()?),)),
                        }
                    })
                },
            )?;
    }
    Ok(())
}
