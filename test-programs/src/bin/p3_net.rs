//! A WASI 0.3 network client and server driven by its arguments, one step
//! per argument, printing one line per step: `ok ...` or the error it saw.
//! (The 0.3 twin of net_client, through wasi:sockets@0.3.0.)
//!
//! Steps:
//!   connect:IP:PORT    connect, send a line, print the peer's reply
//!   resolve:NAME       look NAME up, print the addresses
//!   listen:IP:PORT     bind and listen, print `listening on ADDR`, accept
//!                      one client, echo its line back, print it
//!   http:URL           wasi:http@0.3.0 GET, print the status and body
//!   udp:IP:PORT        send `ping` in a datagram, print the reply and
//!                      who sent it
//!   time:MS            print the system clock (SECS.NANOS), the monotonic
//!                      clock, the clock again after waiting MS ms, and the
//!                      monotonic time that wait took (ms)
//!   hold:N:IP:PORT     connect until one fails (at most N), hold them,
//!                      close them, connect again
//!   udps:N             the same with UDP sockets
//!   udpsend:N:IP:PORT  send N bytes in 1 KiB datagrams; the ms it took
//!   random:N           print N secure random bytes, N insecure ones and
//!                      the insecure seed, in hex
wit_bindgen::generate!({
    world: "p3-net",
    features: ["clocks-timezone"],
    generate_all
});

use std::net::{IpAddr, SocketAddr};

use crate::wasi::sockets::ip_name_lookup;
use crate::wasi::sockets::types::{
    IpAddress, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress, TcpSocket,
    UdpSocket,
};

fn to_wasi(addr: SocketAddr) -> (IpAddressFamily, IpSocketAddress) {
    match addr {
        SocketAddr::V4(a) => {
            let o = a.ip().octets();
            (
                IpAddressFamily::Ipv4,
                IpSocketAddress::Ipv4(Ipv4SocketAddress {
                    port: a.port(),
                    address: (o[0], o[1], o[2], o[3]),
                }),
            )
        }
        SocketAddr::V6(a) => {
            let s = a.ip().segments();
            (
                IpAddressFamily::Ipv6,
                IpSocketAddress::Ipv6(Ipv6SocketAddress {
                    port: a.port(),
                    flow_info: 0,
                    address: (s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
                    scope_id: 0,
                }),
            )
        }
    }
}

fn show(addr: &IpSocketAddress) -> String {
    match addr {
        IpSocketAddress::Ipv4(a) => {
            let (b0, b1, b2, b3) = a.address;
            format!("{b0}.{b1}.{b2}.{b3}:{}", a.port)
        }
        IpSocketAddress::Ipv6(a) => {
            let (s0, s1, s2, s3, s4, s5, s6, s7) = a.address;
            let ip = std::net::Ipv6Addr::new(s0, s1, s2, s3, s4, s5, s6, s7);
            format!("[{ip}]:{}", a.port)
        }
    }
}

/// Send `line` and read until a newline (or the end) on a connected socket.
async fn exchange(sock: &TcpSocket, line: &[u8]) -> Result<String, String> {
    let (mut tx, rx) = wit_stream::new();
    let (mut incoming, incoming_done) = sock.receive();
    let ((), sent) = futures::join!(
        async {
            let rest = tx.write_all(line.to_vec()).await;
            assert!(rest.is_empty());
            drop(tx);
        },
        async { sock.send(rx).await }
    );
    sent.map_err(|e| format!("send {e:?}"))?;
    let mut got = Vec::new();
    while !got.ends_with(b"\n") {
        let (result, chunk) = incoming.read(Vec::with_capacity(4096)).await;
        if chunk.is_empty() {
            if let wit_bindgen::StreamResult::Dropped = result {
                break;
            }
        }
        got.extend_from_slice(&chunk);
        if let wit_bindgen::StreamResult::Dropped = result {
            break;
        }
    }
    drop(incoming);
    let _ = incoming_done.await;
    Ok(String::from_utf8_lossy(&got).trim_end().to_string())
}

async fn connect(target: &str) -> Result<String, String> {
    let addr: SocketAddr = target.parse().map_err(|_| "expected IP:PORT")?;
    let (family, addr) = to_wasi(addr);
    let sock = TcpSocket::create(family).map_err(|e| format!("create {e:?}"))?;
    sock.connect(addr).await.map_err(|e| format!("{e:?}"))?;
    Ok(format!("ok {}", exchange(&sock, b"ping\n").await?))
}

/// `hold:N:IP:PORT`: connect until one fails (at most N), holding them
/// all; close them; connect again.
async fn hold(arg: &str) -> Result<String, String> {
    let (n, target) = arg.split_once(':').ok_or("expected N:IP:PORT")?;
    let n: usize = n.parse().map_err(|_| "expected N:IP:PORT")?;
    let addr: SocketAddr = target.parse().map_err(|_| "expected IP:PORT")?;
    let (family, addr) = to_wasi(addr);
    let mut held = Vec::new();
    let mut failed = String::from("none failed");
    for _ in 0..n {
        let sock = TcpSocket::create(family).map_err(|e| format!("create {e:?}"))?;
        match sock.connect(addr).await {
            Ok(()) => held.push(sock),
            Err(e) => {
                failed = format!("{e:?}");
                break;
            }
        }
    }
    let open = held.len();
    drop(held);
    let sock = TcpSocket::create(family).map_err(|e| format!("create {e:?}"))?;
    let again = match sock.connect(addr).await {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("{e:?}"),
    };
    Ok(format!("{open} open, then {failed}; again {again}"))
}

/// `udps:N`: make UDP sockets until one fails (at most N), holding them
/// all; close them; make one again.
fn udps(n: &str) -> Result<String, String> {
    let n: usize = n.parse().map_err(|_| "expected N")?;
    let mut held = Vec::new();
    let mut failed = String::from("none failed");
    for _ in 0..n {
        match UdpSocket::create(IpAddressFamily::Ipv4) {
            Ok(s) => held.push(s),
            Err(e) => {
                failed = format!("{e:?}");
                break;
            }
        }
    }
    let open = held.len();
    drop(held);
    let again = match UdpSocket::create(IpAddressFamily::Ipv4) {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("{e:?}"),
    };
    Ok(format!("{open} open, then {failed}; again {again}"))
}

async fn resolve(name: &str) -> Result<String, String> {
    let found = ip_name_lookup::resolve_addresses(name.to_string())
        .await
        .map_err(|e| format!("{e:?}"))?;
    let mut shown: Vec<String> = found
        .iter()
        .map(|a| match a {
            IpAddress::Ipv4((a, b, c, d)) => IpAddr::from([*a, *b, *c, *d]).to_string(),
            IpAddress::Ipv6((a, b, c, d, e, f, g, h)) => {
                IpAddr::from([*a, *b, *c, *d, *e, *f, *g, *h]).to_string()
            }
        })
        .collect();
    shown.sort();
    Ok(format!("ok {}", shown.join(",")))
}

async fn listen(target: &str) -> Result<String, String> {
    let addr: SocketAddr = target.parse().map_err(|_| "expected IP:PORT")?;
    let (family, addr) = to_wasi(addr);
    let sock = TcpSocket::create(family).map_err(|e| format!("create {e:?}"))?;
    sock.bind(addr).map_err(|e| format!("bind {e:?}"))?;
    let mut clients = sock.listen().map_err(|e| format!("listen {e:?}"))?;
    let local = sock.get_local_address().map_err(|e| format!("{e:?}"))?;
    println!("listening on {}", show(&local));
    let client = clients.next().await.ok_or("no client")?;
    let (mut incoming, incoming_done) = client.receive();
    let mut got = Vec::new();
    while !got.ends_with(b"\n") {
        let (result, chunk) = incoming.read(Vec::with_capacity(4096)).await;
        got.extend_from_slice(&chunk);
        if let wit_bindgen::StreamResult::Dropped = result {
            break;
        }
    }
    drop(incoming);
    let _ = incoming_done.await;
    let line = String::from_utf8_lossy(&got).trim_end().to_string();
    let (mut tx, rx) = wit_stream::new();
    let ((), sent) = futures::join!(
        async {
            let rest = tx.write_all(format!("echo {line}\n").into_bytes()).await;
            assert!(rest.is_empty());
            drop(tx);
        },
        async { client.send(rx).await }
    );
    sent.map_err(|e| format!("send {e:?}"))?;
    Ok(format!("ok accepted {line}"))
}

async fn udp(target: &str) -> Result<String, String> {
    let addr: SocketAddr = target.parse().map_err(|_| "expected IP:PORT")?;
    let (family, addr) = to_wasi(addr);
    let sock = UdpSocket::create(family).map_err(|e| format!("create {e:?}"))?;
    sock.send(b"ping".to_vec(), Some(addr))
        .await
        .map_err(|e| format!("send {e:?}"))?;
    let (data, from) = sock.receive().await.map_err(|e| format!("receive {e:?}"))?;
    Ok(format!(
        "ok {} from {}",
        String::from_utf8_lossy(&data),
        show(&from)
    ))
}

/// `udpsend:N:IP:PORT`: send N bytes in 1 KiB datagrams; the ms it took.
async fn udpsend(arg: &str) -> Result<String, String> {
    let (n, target) = arg.split_once(':').ok_or("expected N:IP:PORT")?;
    let n: usize = n.parse().map_err(|_| "expected N:IP:PORT")?;
    let addr: SocketAddr = target.parse().map_err(|_| "expected IP:PORT")?;
    let (family, addr) = to_wasi(addr);
    let started = std::time::Instant::now();
    let sock = UdpSocket::create(family).map_err(|e| format!("create {e:?}"))?;
    let mut sent = 0;
    while sent < n {
        let k = (n - sent).min(1024);
        sock.send(vec![7u8; k], Some(addr))
            .await
            .map_err(|e| format!("send {e:?}"))?;
        sent += k;
    }
    Ok(format!("sent {sent} in {} ms", started.elapsed().as_millis()))
}

async fn http(url: &str) -> Result<String, String> {
    use crate::wasi::http::client;
    use crate::wasi::http::types::{Fields, Method, Request, Response, Scheme};
    let (scheme, rest) = url.split_once("://").ok_or("expected a URL")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    drop(trailers_tx);
    let (request, _sent) = Request::new(Fields::new(), None, trailers_rx, None);
    request.set_method(&Method::Get).map_err(|()| "method")?;
    let scheme = if scheme == "https" { Scheme::Https } else { Scheme::Http };
    request.set_scheme(Some(&scheme)).map_err(|()| "scheme")?;
    request.set_authority(Some(authority)).map_err(|()| "authority")?;
    request.set_path_with_query(Some(path)).map_err(|()| "path")?;
    let response = client::send(request).await.map_err(|e| format!("{e:?}"))?;
    let status = response.get_status_code();
    let (_, result_rx) = wit_future::new(|| Ok(()));
    let (body, trailers) = Response::consume_body(response, result_rx);
    let body = body.collect().await;
    let _ = trailers.await;
    Ok(format!("ok status {status} {}", String::from_utf8_lossy(&body)))
}

async fn time(ms: &str) -> Result<String, String> {
    use crate::wasi::clocks::{monotonic_clock, system_clock};
    let ms: u64 = ms.parse().map_err(|_| "time:MS takes a number")?;
    let wall = || {
        let t = system_clock::now();
        format!("{}.{:09}", t.seconds, t.nanoseconds)
    };
    let (before, mono) = (wall(), monotonic_clock::now());
    monotonic_clock::wait_for(ms * 1_000_000).await;
    let waited = (monotonic_clock::now() - mono) / 1_000_000;
    Ok(format!("ok wall {before} mono {mono} wall-after {} waited-ms {waited}", wall()))
}

fn random(n: &str) -> Result<String, String> {
    use crate::wasi::random::{insecure, insecure_seed, random};
    let n: u64 = n.parse().map_err(|_| "random:N takes a number")?;
    let hex = |b: Vec<u8>| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let (a, b) = insecure_seed::get_insecure_seed();
    Ok(format!(
        "ok random {} insecure {} seed {a:016x}{b:016x}",
        hex(random::get_random_bytes(n)),
        hex(insecure::get_insecure_random_bytes(n))
    ))
}

struct Component;
export!(Component);

impl exports::wasi::cli::run::Guest for Component {
    async fn run() -> Result<(), ()> {
        for step in std::env::args().skip(1) {
            let (verb, arg) = step.split_once(':').expect("steps are VERB:ARG");
            let result = match verb {
                "connect" => connect(arg).await,
                "resolve" => resolve(arg).await,
                "listen" => listen(arg).await,
                "http" => http(arg).await,
                "udp" => udp(arg).await,
                "time" => time(arg).await,
                "random" => random(arg),
                "hold" => hold(arg).await,
                "udps" => udps(arg),
                "udpsend" => udpsend(arg).await,
                _ => Err(format!("unknown step {verb}")),
            };
            match result {
                Ok(r) => println!("{step}: {r}"),
                Err(e) => println!("{step}: {e}"),
            }
        }
        Ok(())
    }
}

fn main() {
    unreachable!("the WASI 0.3 run export is the program")
}
