//! One WASI 0.2 TCP connect, made the way a chosen kind of program makes
//! it, printing one line: `ok connected PEER` (after a `ping` answered
//! over the connection) or `err KIND` (the `std::io::ErrorKind`, or the
//! wasi:sockets error code for `raw`).
//!
//! Usage: `connect_modes MODE HOST:PORT [TIMEOUT_MS]` (timeout default
//! 3000; a HOST that is a name is looked up first, through getaddrinfo)
//!
//! Modes:
//!   blocking   std's `TcpStream::connect`
//!   timeout    std's `TcpStream::connect_timeout` (non-blocking connect,
//!              then `poll`, as wasi-libc does it)
//!   tokio      tokio's `TcpStream::connect` on a current-thread runtime,
//!              within the timeout
//!   libc       a C-style non-blocking connect: `socket`, `FIONBIO`,
//!              `connect` (`EINPROGRESS`), `poll` for `POLLOUT`, then
//!              `getsockopt(SO_ERROR)`
//!   raw        wasi:sockets 0.2 itself: `start-connect`, the socket's
//!              pollable (with a timer), `finish-connect`
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

fn kind(e: std::io::Error) -> String {
    format!("{:?}", e.kind())
}

/// Prove the connection is real: a line out, the peer's line back.
fn ping(mut s: TcpStream) -> Result<String, String> {
    let peer = s
        .peer_addr()
        .map_err(|e| format!("peer_addr {}", kind(e)))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(kind)?;
    s.write_all(b"ping\n")
        .map_err(|e| format!("write {}", kind(e)))?;
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .map_err(|e| format!("read {}", kind(e)))?;
    if line.is_empty() {
        return Err("read eof".into());
    }
    Ok(format!("ok connected {peer}"))
}

fn blocking(addr: SocketAddr) -> Result<String, String> {
    ping(TcpStream::connect(addr).map_err(kind)?)
}

fn timeout(addr: SocketAddr, t: Duration) -> Result<String, String> {
    ping(TcpStream::connect_timeout(&addr, t).map_err(kind)?)
}

fn with_tokio(addr: SocketAddr, t: Duration) -> Result<String, String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(kind)?;
    rt.block_on(async {
        let mut s = match tokio::time::timeout(t, tokio::net::TcpStream::connect(addr)).await {
            Err(_) => return Err("TimedOut".to_string()),
            Ok(r) => r.map_err(kind)?,
        };
        let peer = s
            .peer_addr()
            .map_err(|e| format!("peer_addr {}", kind(e)))?;
        s.write_all(b"ping\n")
            .await
            .map_err(|e| format!("write {}", kind(e)))?;
        let mut line = String::new();
        tokio::io::BufReader::new(s)
            .read_line(&mut line)
            .await
            .map_err(|e| format!("read {}", kind(e)))?;
        if line.is_empty() {
            return Err("read eof".into());
        }
        Ok(format!("ok connected {peer}"))
    })
}

fn with_libc(addr: SocketAddr, t: Duration) -> Result<String, String> {
    use std::os::fd::FromRawFd;
    let os = |what: &str| format!("{what} {}", kind(std::io::Error::last_os_error()));
    let SocketAddr::V4(v4) = addr else {
        return Err("libc mode takes IPv4 addresses".into());
    };
    // SAFETY: plain libc calls on a descriptor this function owns, with
    // pointers to locals of the right types and sizes.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        if fd < 0 {
            return Err(os("socket"));
        }
        let mut on: libc::c_int = 1;
        if libc::ioctl(fd, libc::FIONBIO, &raw mut on) != 0 {
            return Err(os("ioctl"));
        }
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(v4.ip().octets()),
            },
        };
        let r = libc::connect(
            fd,
            (&raw const sin).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        if r != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(kind(e));
            }
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLOUT,
                revents: 0,
            };
            match libc::poll(&mut pfd, 1, t.as_millis() as libc::c_int) {
                0 => return Err("TimedOut".into()),
                n if n < 0 => return Err(os("poll")),
                _ => {}
            }
            let mut err: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            if libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&raw mut err).cast(),
                &mut len,
            ) != 0
            {
                return Err(os("getsockopt"));
            }
            if err != 0 {
                return Err(kind(std::io::Error::from_raw_os_error(err)));
            }
        }
        let s = TcpStream::from_raw_fd(fd);
        s.set_nonblocking(false).map_err(kind)?;
        ping(s)
    }
}

fn raw(addr: SocketAddr, t: Duration) -> Result<String, String> {
    use wasi::sockets::network::{IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};
    let SocketAddr::V4(v4) = addr else {
        return Err("raw mode takes IPv4 addresses".into());
    };
    let o = v4.ip().octets();
    let remote = IpSocketAddress::Ipv4(Ipv4SocketAddress {
        port: v4.port(),
        address: (o[0], o[1], o[2], o[3]),
    });
    let net = wasi::sockets::instance_network::instance_network();
    let sock = wasi::sockets::tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4)
        .map_err(|e| format!("{e:?}"))?;
    sock.start_connect(&net, remote)
        .map_err(|e| format!("{e:?}"))?;
    let ready = sock.subscribe();
    let timer = wasi::clocks::monotonic_clock::subscribe_duration(t.as_nanos() as u64);
    if !wasi::io::poll::poll(&[&ready, &timer]).contains(&0) {
        return Err("TimedOut".into());
    }
    let (input, output) = sock.finish_connect().map_err(|e| format!("{e:?}"))?;
    let peer = sock.remote_address().map_err(|e| format!("{e:?}"))?;
    output
        .blocking_write_and_flush(b"ping\n")
        .map_err(|e| format!("write {e:?}"))?;
    let mut got = Vec::new();
    while !got.ends_with(b"\n") {
        match input.blocking_read(4096) {
            Ok(chunk) => got.extend(chunk),
            Err(e) => return Err(format!("read {e:?}")),
        }
    }
    let wasi::sockets::network::IpSocketAddress::Ipv4(p) = peer else {
        return Err("not IPv4".into());
    };
    let (a, b, c, d) = p.address;
    Ok(format!("ok connected {a}.{b}.{c}.{d}:{}", p.port))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, target, rest @ ..] = &args[..] else {
        eprintln!("usage: connect_modes MODE HOST:PORT [TIMEOUT_MS]");
        std::process::exit(2);
    };
    use std::net::ToSocketAddrs;
    let addr = match target.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("err lookup found nothing");
            return;
        }
        Err(e) => {
            println!("err lookup {}", kind(e));
            return;
        }
    };
    let t = Duration::from_millis(rest.first().map_or(3000, |s| s.parse().expect("ms")));
    let result = match mode.as_str() {
        "blocking" => blocking(addr),
        "timeout" => timeout(addr, t),
        "tokio" => with_tokio(addr, t),
        "libc" => with_libc(addr, t),
        "raw" => raw(addr, t),
        _ => Err(format!("unknown mode {mode}")),
    };
    match result {
        Ok(line) => println!("{line}"),
        Err(e) => println!("err {e}"),
    }
}
