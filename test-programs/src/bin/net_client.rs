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
//!   talk:HOST:PORT           connect, send a line, shut down the writing
//!                            side, read to the end: `ok REPLY eof`, or the
//!                            error that ended the reading
//!   hold:N:HOST:PORT         connect until one fails (at most N), hold them,
//!                            close them, connect again
//!   holdnb:N:IP:PORT         the same with std's connect_timeout (a
//!                            non-blocking connect, then poll)
//!   udps:N                   the same with UDP sockets bound to 127.0.0.1:0
//!   busyhttp:HOST:PORT:URL   hold a connection to HOST:PORT during http:URL
//!   udpsend:N:IP:PORT        send N bytes in 1 KiB datagrams; the ms it took
//!   upload:N:HOST:PORT       send N bytes, end the writing side, print the
//!                            peer's reply and the milliseconds it took
//!   twice:HOST:PORT          connect twice, the first still open while the
//!                            second is made; print both outcomes
//!   relay:ADDR:TARGET        listen on ADDR (IP:PORT), accept one client,
//!                            connect to TARGET (HOST:PORT) and move bytes
//!                            both ways until both ends are done
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
    println!("listening on {}", l.local_addr().map_err(kind)?);
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

fn talk(target: &str) -> Result<String, String> {
    use std::io::Read;
    let mut s = TcpStream::connect(target).map_err(kind)?;
    s.write_all(b"ping\n").map_err(kind)?;
    s.shutdown(std::net::Shutdown::Write).map_err(kind)?;
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => Ok(format!("ok {} eof", String::from_utf8_lossy(&got).trim_end())),
        Err(e) => Err(format!(
            "read failed ({}) after {:?}",
            kind(e),
            String::from_utf8_lossy(&got).trim_end()
        )),
    }
}

/// `hold:N:HOST:PORT`: connect until one fails (at most N), holding them
/// all; close them; connect again.
fn hold(arg: &str, nonblocking: bool) -> Result<String, String> {
    let (n, target) = arg.split_once(':').ok_or("expected N:HOST:PORT")?;
    let n: usize = n.parse().map_err(|_| "expected N:HOST:PORT")?;
    let connect = |target: &str| {
        if nonblocking {
            // std's connect_timeout: a non-blocking connect, then poll.
            let addr: SocketAddr = target.parse().map_err(|_| std::io::ErrorKind::InvalidInput)?;
            TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(3))
        } else {
            TcpStream::connect(target)
        }
    };
    let mut held = Vec::new();
    let mut failed = String::from("none failed");
    for _ in 0..n {
        match connect(target) {
            Ok(s) => held.push(s),
            Err(e) => {
                failed = kind(e);
                break;
            }
        }
    }
    let open = held.len();
    drop(held);
    let again = match connect(target) {
        Ok(_) => "ok".to_string(),
        Err(e) => kind(e),
    };
    Ok(format!("{open} open, then {failed}; again {again}"))
}

/// `udps:N`: bind UDP sockets until one fails (at most N), holding them
/// all; close them; bind one again.
fn udps(n: &str) -> Result<String, String> {
    let n: usize = n.parse().map_err(|_| "expected N")?;
    let mut held = Vec::new();
    let mut failed = String::from("none failed");
    for _ in 0..n {
        match UdpSocket::bind("127.0.0.1:0") {
            Ok(s) => held.push(s),
            Err(e) => {
                failed = format!("{} ({:?})", kind_of(&e), e.raw_os_error());
                break;
            }
        }
    }
    let open = held.len();
    drop(held);
    let again = match UdpSocket::bind("127.0.0.1:0") {
        Ok(_) => "ok".to_string(),
        Err(e) => kind(e),
    };
    Ok(format!("{open} open, then {failed}; again {again}"))
}

/// `udpsend:N:IP:PORT`: send N bytes to IP:PORT in 1 KiB datagrams from
/// a socket bound to 127.0.0.1:0; the milliseconds it took.
fn udpsend(arg: &str) -> Result<String, String> {
    let (n, target) = arg.split_once(':').ok_or("expected N:IP:PORT")?;
    let n: usize = n.parse().map_err(|_| "expected N:IP:PORT")?;
    let started = std::time::Instant::now();
    let s = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("bind {}", kind(e)))?;
    let datagram = [7u8; 1024];
    let mut sent = 0;
    while sent < n {
        let k = (n - sent).min(datagram.len());
        s.send_to(&datagram[..k], target)
            .map_err(|e| format!("send {}", kind(e)))?;
        sent += k;
    }
    Ok(format!("sent {sent} in {} ms", started.elapsed().as_millis()))
}

fn kind_of(e: &std::io::Error) -> String {
    format!("{:?}", e.kind())
}

/// `busyhttp:HOST:PORT:URL`: hold a connection to HOST:PORT while making
/// a wasi:http GET of URL.
fn busyhttp(arg: &str) -> Result<String, String> {
    let mut parts = arg.splitn(3, ':');
    let (host, port, url) = match (parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(u)) => (h, p, u),
        _ => return Err("expected HOST:PORT:URL".into()),
    };
    let held = TcpStream::connect(format!("{host}:{port}")).map_err(kind)?;
    let got = http(url);
    drop(held);
    got
}

/// `upload:N:HOST:PORT`: connect, send N bytes, end the writing side,
/// read the peer's reply to the end; the reply and the milliseconds it
/// all took.
fn upload(arg: &str) -> Result<String, String> {
    let (n, target) = arg.split_once(':').ok_or("expected N:HOST:PORT")?;
    let n: usize = n.parse().map_err(|_| "expected N:HOST:PORT")?;
    let started = std::time::Instant::now();
    let mut s = TcpStream::connect(target).map_err(kind)?;
    let chunk = vec![7u8; 64 * 1024];
    let mut left = n;
    while left > 0 {
        let k = left.min(chunk.len());
        s.write_all(&chunk[..k]).map_err(kind)?;
        left -= k;
    }
    s.shutdown(std::net::Shutdown::Write).map_err(kind)?;
    let mut reply = String::new();
    std::io::Read::read_to_string(&mut s, &mut reply).map_err(kind)?;
    Ok(format!(
        "peer got {} in {} ms",
        reply.trim_end(),
        started.elapsed().as_millis()
    ))
}

fn twice(target: &str) -> Result<String, String> {
    let first = TcpStream::connect(target);
    let second = TcpStream::connect(target);
    let say = |r: &std::io::Result<TcpStream>| match r {
        Ok(_) => "connected".to_string(),
        Err(e) => format!("{:?}", e.kind()),
    };
    let text = format!("first {}, second {}", say(&first), say(&second));
    drop((first, second));
    Ok(format!("ok {text}"))
}

/// Move bytes both ways between two non-blocking streams until both ends
/// are done, or 30 s pass.
fn relay(spec: &str) -> Result<String, String> {
    use std::io::{ErrorKind, Read};
    let (listen_on, target) = (1..spec.len())
        .filter(|&i| spec.as_bytes()[i] == b':')
        .find_map(|i| {
            let (l, r) = (&spec[..i], &spec[i + 1..]);
            Some((l.parse::<SocketAddr>().ok()?, r))
        })
        .ok_or("usage: relay:ADDR:TARGET")?;
    let l = TcpListener::bind(listen_on).map_err(kind)?;
    println!("listening on {}", l.local_addr().map_err(kind)?);
    std::io::stdout().flush().unwrap();
    let (a, _) = l.accept().map_err(kind)?;
    let b = TcpStream::connect(target).map_err(kind)?;
    a.set_nonblocking(true).map_err(kind)?;
    b.set_nonblocking(true).map_err(kind)?;
    let mut ends = [(a, false), (b, false)];
    let mut moved = [0u64; 2];
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !(ends[0].1 && ends[1].1) {
        if std::time::Instant::now() > deadline {
            return Err("relay timed out".into());
        }
        let mut progress = false;
        for from in 0..2 {
            if ends[from].1 {
                continue;
            }
            let to = 1 - from;
            match ends[from].0.read(&mut buf) {
                Ok(0) => {
                    ends[from].1 = true;
                    let _ = ends[to].0.shutdown(std::net::Shutdown::Write);
                    progress = true;
                }
                Ok(n) => {
                    let mut done = 0;
                    while done < n {
                        match ends[to].0.write(&buf[done..n]) {
                            Ok(k) => done += k,
                            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                                std::thread::sleep(std::time::Duration::from_millis(1))
                            }
                            Err(e) => return Err(format!("write {}", kind(e))),
                        }
                    }
                    moved[from] += n as u64;
                    progress = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("read {}", kind(e))),
            }
        }
        if !progress {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    Ok(format!("ok relayed {} and {} bytes", moved[0], moved[1]))
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
            "talk" => talk(arg),
            "twice" => twice(arg),
            "hold" => hold(arg, false),
            "holdnb" => hold(arg, true),
            "udps" => udps(arg),
            "busyhttp" => busyhttp(arg),
            "upload" => upload(arg),
            "udpsend" => udpsend(arg),
            "relay" => relay(arg),
            _ => Err(format!("unknown step {verb}")),
        };
        match result {
            Ok(r) => println!("{step}: {r}"),
            Err(e) => println!("{step}: {e}"),
        }
    }
}
