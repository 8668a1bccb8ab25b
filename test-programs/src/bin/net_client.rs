//! A WASI 0.2 network client and server driven by its arguments, one step
//! per argument, printing one line per step: `ok ...` or the error it saw.
//!
//! Steps:
//!   connect:HOST:PORT        connect (resolving HOST if it is a name), send
//!                            a line, print the peer's reply
//!   resolve:NAME             look NAME up, print the addresses
//!   listen:ADDR              bind and listen, print, accept one client,
//!                            echo its line back, print it
//!   udp:LOCAL:REMOTE         bind LOCAL, send a datagram to REMOTE, print
//!                            the reply
//!   http:URL                 wasi:http GET, print the status and body
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};

fn kind(e: std::io::Error) -> String {
    format!("{:?}", e.kind())
}

fn connect(target: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(target).map_err(kind)?;
    s.write_all(b"ping\n").map_err(kind)?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).map_err(kind)?;
    Ok(format!("ok {}", line.trim_end()))
}

fn resolve(name: &str) -> Result<String, String> {
    let mut addrs: Vec<String> = (name, 0)
        .to_socket_addrs()
        .map_err(kind)?
        .map(|a| a.ip().to_string())
        .collect();
    addrs.sort();
    addrs.dedup();
    Ok(format!("ok {}", addrs.join(",")))
}

fn listen(addr: &str) -> Result<String, String> {
    let l = TcpListener::bind(addr).map_err(kind)?;
    println!("listening on {addr}");
    std::io::stdout().flush().unwrap();
    let (s, _) = l.accept().map_err(kind)?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).map_err(kind)?;
    (&s).write_all(format!("echo {line}").as_bytes()).map_err(kind)?;
    Ok(format!("ok accepted {}", line.trim_end()))
}

fn udp(spec: &str) -> Result<String, String> {
    // LOCAL and REMOTE are socket addresses; split at the first `:` that
    // starts a valid REMOTE.
    let (local, remote) = (1..spec.len())
        .filter(|&i| spec.as_bytes()[i] == b':')
        .find_map(|i| {
            let (l, r) = (&spec[..i], &spec[i + 1..]);
            Some((l.parse::<SocketAddr>().ok()?, r))
        })
        .ok_or("usage: udp:LOCAL:REMOTE")?;
    let s = UdpSocket::bind(local).map_err(|e| format!("bind {}", kind(e)))?;
    s.send_to(b"ping", remote)
        .map_err(|e| format!("send {}", kind(e)))?;
    let mut buf = [0u8; 512];
    let (n, from) = s
        .recv_from(&mut buf)
        .map_err(|e| format!("recv {}", kind(e)))?;
    Ok(format!("ok {} from {from}", String::from_utf8_lossy(&buf[..n])))
}

fn http(url: &str) -> Result<String, String> {
    use wasi::http::outgoing_handler;
    use wasi::http::types::{Fields, OutgoingRequest, Scheme};
    let (scheme, rest) = url.split_once("://").ok_or("expected a URL")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let req = OutgoingRequest::new(Fields::new());
    let scheme = if scheme == "https" { Scheme::Https } else { Scheme::Http };
    req.set_scheme(Some(&scheme)).unwrap();
    req.set_authority(Some(authority)).unwrap();
    req.set_path_with_query(Some(path)).unwrap();
    let fut = outgoing_handler::handle(req, None).map_err(|e| format!("{e:?}"))?;
    fut.subscribe().block();
    let resp = fut
        .get()
        .expect("ready after block")
        .map_err(|()| "response taken")?
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status();
    let body = resp.consume().map_err(|()| "body taken")?;
    let stream = body.stream().map_err(|()| "stream taken")?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(65536) {
            Ok(chunk) => bytes.extend(chunk),
            Err(wasi::io::streams::StreamError::Closed) => break,
            Err(e) => return Err(format!("{e:?}")),
        }
    }
    Ok(format!("ok status {status} {}", String::from_utf8_lossy(&bytes)))
}

fn main() {
    for step in std::env::args().skip(1) {
        let (verb, arg) = step.split_once(':').expect("steps are VERB:ARG");
        let result = match verb {
            "connect" => connect(arg),
            "resolve" => resolve(arg),
            "listen" => listen(arg),
            "udp" => udp(arg),
            "http" => http(arg),
            _ => Err(format!("unknown step {verb}")),
        };
        match result {
            Ok(r) => println!("{step}: {r}"),
            Err(e) => println!("{step}: {e}"),
        }
    }
}
