//! Warden's ABI faces over the gate in `warden-net`.
//!
//! This crate turns a guest's grants into wasmtime-wasi contexts and links the
//! WASI interfaces a guest may import: preview1 for core modules, WASI 0.2 and
//! 0.3 (including `wasi:http` for outgoing requests) for components. It
//! decides nothing itself: every socket address check and every outgoing HTTP
//! request is handed to [`Gate::decide`], and wasi-http's default client (which
//! would connect directly, ignoring socket policy) is not even compiled in.

use std::path::PathBuf;
use std::sync::Arc;

use warden_net::{Action, Gate};
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub mod http_fields;
pub mod keyvalue;
pub mod p1;
pub mod stdio;
pub mod virt;

pub use keyvalue::KeyValue;
pub use p1::{P1Ctx, link_p1};
pub use virt::{MonotonicClock, Virtual, WallClock};

/// Errors from building a guest's WASI context.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WasiError {
    /// A granted directory could not be opened on the host.
    #[error("cannot open directory {host} for the guest: {source}")]
    Dir {
        /// The host path that failed.
        host: PathBuf,
        /// Why.
        #[source]
        source: wasmtime::Error,
    },
    /// Linking the WASI interfaces failed (a wasmtime-level bug or conflict).
    #[error("cannot link the WASI interfaces: {0}")]
    Link(#[source] wasmtime::Error),
}

/// A host directory granted to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    /// The directory on the host.
    pub host: PathBuf,
    /// Where the guest sees it.
    pub guest: String,
    /// Whether the guest may only read.
    pub read_only: bool,
}

/// Everything a guest is given apart from the network, which the gate holds.
/// `Grants::default()` gives nothing: no arguments, no environment, no
/// directories; stdin, stdout and stderr are the host's (output through
/// Warden's writer, see [`stdio`]); the host's clocks and random sources
/// (the monotonic clock counting from the instance's start).
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// The guest's arguments, `args[0]` being the program name.
    pub args: Vec<String>,
    /// The guest's environment variables.
    pub env: Vec<(String, String)>,
    /// Pre-opened directories, in order.
    pub dirs: Vec<DirGrant>,
    /// Give the guest an empty stdin instead of the host's (`serve`'s
    /// handlers read requests, not the terminal).
    pub closed_stdin: bool,
    /// The clocks and random streams it reads (see [`virt`]).
    pub virt: Virtual,
    /// The values of the built-in `wasi:config/store` (`None`: not
    /// provided, so a component importing it is refused by name).
    pub config: Option<Vec<(String, String)>>,
    /// The built-in in-memory `wasi:keyvalue` store (`None`: not
    /// provided). Clones share it: an app's instances see one store.
    pub keyvalue: Option<std::sync::Arc<KeyValue>>,
}

/// Build a WASI context builder for `grants`, with every network path routed
/// through `gate`. Stdio is the host's.
pub fn wasi_builder(grants: &Grants, gate: &Arc<Gate>) -> Result<WasiCtxBuilder, WasiError> {
    let mut b = WasiCtxBuilder::new();
    if !grants.closed_stdin {
        b.inherit_stdin();
    }
    b.stdout(stdio::HostOutput::STDOUT)
        .stderr(stdio::HostOutput::STDERR)
        .args(&grants.args)
        .envs(&grants.env);
    grants.virt.apply(&mut b);
    for dir in &grants.dirs {
        let perms = if dir.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        b.preopened_dir(&dir.host, &dir.guest, perms)
            .map_err(|source| WasiError::Dir {
                host: dir.host.clone(),
                source,
            })?;
    }
    // Creating a socket is no network access: the guest may create TCP and
    // UDP sockets and set their options, and every use of an address (bind,
    // listen, connect, send, receive, accept) is decided by the gate, so
    // with no grant each such use is refused, reported and audited.
    // wasmtime's own name lookup stays off: Warden's (gated) replaces it.
    b.allow_tcp(true)
        .allow_udp(true)
        .allow_ip_name_lookup(false);
    let gate = gate.clone();
    b.socket_addr_check(move |addr, usage| {
        let gate = gate.clone();
        Box::pin(async move {
            let action = socket_action(usage);
            gate.prepare(action).await;
            gate.allows_addr(action, addr)
        })
    });
    Ok(b)
}

/// The gate's name for a wasmtime-wasi socket address use.
fn socket_action(usage: SocketAddrUse) -> Action {
    match usage {
        SocketAddrUse::TcpBind => Action::Bind,
        SocketAddrUse::TcpListen => Action::Listen,
        SocketAddrUse::TcpAccept => Action::Accept,
        SocketAddrUse::TcpConnect => Action::Connect,
        SocketAddrUse::UdpBind => Action::UdpBind,
        SocketAddrUse::UdpSend => Action::UdpSend,
        SocketAddrUse::UdpReceive => Action::UdpRecv,
    }
}

/// A listener the host bound for a preview1 guest, with the name the guest
/// sees for it in `LISTEN_FDNAMES` and `FD_NAMES`.
pub struct NamedListener {
    /// The name (for example `http`).
    pub name: String,
    /// The bound socket.
    pub listener: warden_net::socket::Listener,
}

/// Build the preview1 context for a core module: its listeners at fds 3..
/// (announced in the environment the systemd way, `LISTEN_FDS` and
/// `LISTEN_FDNAMES`, and the Enarx way, `FD_COUNT` and `FD_NAMES`, which
/// count stdio too), then its directories.
pub fn p1_ctx(
    grants: &Grants,
    gate: &Arc<Gate>,
    listeners: Vec<NamedListener>,
    pools: Vec<Arc<warden_net::Pool>>,
    strict_pools: bool,
) -> Result<P1Ctx, WasiError> {
    let mut b = wasi_builder(grants, gate)?;
    if !listeners.is_empty() || !pools.is_empty() {
        // These describe the descriptor table, so they replace an --env of
        // the same name rather than sit beside it.
        let ours = [
            "LISTEN_FDS",
            "LISTEN_FDNAMES",
            "FD_COUNT",
            "FD_NAMES",
            "WARDEN_POOLS",
        ];
        let env: Vec<_> = grants
            .env
            .iter()
            .filter(|(k, _)| !ours.contains(&k.as_str()))
            .cloned()
            .collect();
        b = wasi_builder(
            &Grants {
                env,
                ..grants.clone()
            },
            gate,
        )?;
        let names: Vec<&str> = listeners.iter().map(|l| l.name.as_str()).collect();
        let all: Vec<&str> = ["stdin", "stdout", "stderr"]
            .into_iter()
            .chain(names.iter().copied())
            .chain(pools.iter().map(|p| p.name()))
            .collect();
        if !listeners.is_empty() {
            b.env("LISTEN_FDS", listeners.len().to_string())
                .env("LISTEN_FDNAMES", names.join(":"));
        }
        b.env("FD_COUNT", all.len().to_string())
            .env("FD_NAMES", all.join(":"));
        if !pools.is_empty() {
            // Pools follow the listeners: NAME=FD, comma-separated.
            let first = 3 + listeners.len();
            let announced: Vec<String> = pools
                .iter()
                .enumerate()
                .map(|(i, p)| format!("{}={}", p.name(), first + i))
                .collect();
            b.env("WARDEN_POOLS", announced.join(","));
        }
    }
    let preopens = u32::try_from(grants.dirs.len()).unwrap_or(u32::MAX);
    Ok(P1Ctx::new(
        b.build_p1(),
        preopens,
        listeners.into_iter().map(|l| l.listener).collect(),
        pools,
        gate.clone(),
        strict_pools,
    ))
}

/// The most resources (open files, sockets, streams, pollables, HTTP
/// objects, ...) a component instance holds at once; making one more fails
/// (a trap, as wasmtime reports a full table).
pub const MAX_RESOURCES: usize = 10_000;

/// The state a component guest's WASI and wasi:http implementations use.
pub struct ComponentCtx {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    hooks: GatedHttp,
    tcp: warden_net::socket::component::Sockets,
    config: wasmtime_wasi_config::WasiConfigVariables,
    keyvalue: std::sync::Arc<KeyValue>,
    udp: udp::UdpHolds,
}

impl ComponentCtx {
    /// The context for a component with `grants`, network through `gate`.
    /// Its resource table holds at most [`MAX_RESOURCES`] entries, and each
    /// header map the guest fills at most
    /// [`http_fields::FIELD_SIZE_LIMIT`] bytes.
    /// Listeners in `activation` are handed to the guest's first TCP
    /// socket that binds their address.
    pub fn new(
        grants: &Grants,
        gate: &Arc<Gate>,
        activation: Arc<warden_net::socket::Activation>,
    ) -> Result<Self, WasiError> {
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(http_fields::FIELD_SIZE_LIMIT);
        Ok(Self {
            wasi: wasi_builder(grants, gate)?.build(),
            table,
            http,
            hooks: GatedHttp::new(gate.clone()),
            tcp: warden_net::socket::component::Sockets {
                gate: gate.clone(),
                activation,
            },
            config: grants.config.iter().flatten().cloned().collect(),
            // Linked only when granted; an empty stand-in otherwise.
            keyvalue: grants.keyvalue.clone().unwrap_or_else(|| KeyValue::new(0)),
            udp: udp::UdpHolds::default(),
        })
    }
}

impl ComponentCtx {
    /// The table and the TCP sockets context, for Warden's TCP.
    fn tcp_view(&mut self) -> tcp::TcpView<'_> {
        tcp::TcpView {
            table: &mut self.table,
            sockets: &self.tcp,
        }
    }

    /// The table and the key-value store, for the built-in keyvalue.
    fn keyvalue_view(&mut self) -> keyvalue::KvView<'_> {
        keyvalue::KvView::new(&mut self.table, &self.keyvalue)
    }

    /// The socket context and table beside the gate and the quota's
    /// places, for counted UDP sockets.
    fn udp_view(&mut self) -> udp::UdpView<'_> {
        udp::UdpView {
            sockets: wasmtime_wasi::sockets::WasiSocketsCtxView {
                ctx: self.wasi.sockets(),
                table: &mut self.table,
            },
            gate: &self.hooks.gate,
            holds: &mut self.udp,
        }
    }

    /// The socket context and table beside the gate, for the gated lookup.
    fn lookup_view(&mut self) -> lookup::GatedLookup<'_> {
        lookup::GatedLookup {
            sockets: wasmtime_wasi::sockets::WasiSocketsCtxView {
                ctx: self.wasi.sockets(),
                table: &mut self.table,
            },
            gate: &self.hooks.gate,
        }
    }
}

impl WasiView for ComponentCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for ComponentCtx {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Which WASI version a component targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentAbi {
    /// WASI 0.2 (`wasi:cli/run@0.2.x`).
    P2,
    /// WASI 0.3 (`wasi:cli/run@0.3.x`, component-model-async).
    P3,
}

/// Store data that holds a [`ComponentCtx`].
pub trait HasComponentCtx: WasiView + WasiHttpView + 'static {
    /// The guest's component context.
    fn component_ctx(&mut self) -> &mut ComponentCtx;
}

/// Link the WASI interfaces of a command component into `linker`, with
/// name lookups and `wasi:http` outgoing requests going through the gate. A
/// 0.3 component also gets the 0.2 interfaces, since components adapted from
/// older code import both. The built-in `wasi:config` and `wasi:keyvalue`
/// are linked only when `grants` provide them.
pub fn link_component<T: HasComponentCtx>(
    linker: &mut Linker<T>,
    abi: ComponentAbi,
    grants: &Grants,
) -> Result<(), WasiError> {
    if grants.config.is_some() {
        wasmtime_wasi_config::add_to_linker(linker, |t: &mut T| {
            wasmtime_wasi_config::WasiConfig::new(&t.component_ctx().config)
        })
        .map_err(WasiError::Link)?;
    }
    if grants.keyvalue.is_some() {
        keyvalue::link(linker).map_err(WasiError::Link)?;
    }
    // `wasi:cli/exit#exit-with-code` is stable since WASI 0.2.12 and linked
    // by default.
    wasmtime_wasi::p2::add_to_linker_async(linker).map_err(WasiError::Link)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker).map_err(WasiError::Link)?;
    if abi == ComponentAbi::P3 {
        wasmtime_wasi::p3::add_to_linker(linker).map_err(WasiError::Link)?;
        wasmtime_wasi_http::p3::add_to_linker(linker).map_err(WasiError::Link)?;
    }
    // Replace wasmtime's ip-name-lookup (on or off, no policy) and TCP (no
    // hook for pre-opened listeners or the byte stream) with Warden's, and
    // count the header maps a guest makes.
    linker.allow_shadowing(true);
    let shadowed = lookup::link(linker, abi)
        .and_then(|()| tcp::link(linker, abi))
        .and_then(|()| udp::link(linker, abi))
        .and_then(|()| http_fields::link(linker, abi == ComponentAbi::P3));
    linker.allow_shadowing(false);
    shadowed.map_err(WasiError::Link)?;
    Ok(())
}

mod lookup;
mod tcp;
mod udp;

mod egress;

use egress::GatedHttp;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_socket_use_maps_to_a_distinct_action() {
        use SocketAddrUse::*;
        let uses = [
            TcpBind, TcpListen, TcpAccept, TcpConnect, UdpBind, UdpSend, UdpReceive,
        ];
        let actions: std::collections::HashSet<_> = uses.into_iter().map(socket_action).collect();
        assert_eq!(actions.len(), uses.len());
    }
}
