//! A non-blocking HTTP/1.1 server on mio 1.x: one thread, one poll loop,
//! many clients at once, and a timer (the poll timeout) that ticks while it
//! waits. Each connection gets one response and is closed. Listener at
//! fd 3. Exits after REQUESTS responses.   Usage: http_mio REQUESTS
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
// The same program builds natively for the benchmarks, where the script
// hands it the listener at fd 3 the way Warden does.
#[cfg(unix)]
use std::os::fd::FromRawFd;
#[cfg(target_os = "wasi")]
use std::os::wasi::io::FromRawFd;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const LISTENER: Token = Token(0);
const TICK: Duration = Duration::from_millis(50);

struct Conn {
    stream: TcpStream,
    request: Vec<u8>,
    response: Option<(Vec<u8>, usize)>,
}

fn main() {
    let wanted: usize = std::env::args()
        .nth(1)
        .expect("usage: http_mio REQUESTS")
        .parse()
        .expect("REQUESTS is a number");
    // SAFETY: the runtime hands the guest a listening socket at fd 3.
    let std_listener = unsafe { std::net::TcpListener::from_raw_fd(3) };
    std_listener.set_nonblocking(true).unwrap();
    let mut listener = TcpListener::from_std(std_listener);
    let mut poll = Poll::new().unwrap();
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE).unwrap();

    let mut events = Events::with_capacity(256);
    let mut conns: HashMap<Token, Conn> = HashMap::new();
    let (mut next, mut served, mut peak, mut ticks) = (1usize, 0usize, 0usize, 0u64);
    let mut last_tick = Instant::now();
    while served < wanted {
        poll.poll(&mut events, Some(TICK)).unwrap();
        if last_tick.elapsed() >= TICK {
            ticks += 1;
            last_tick = Instant::now();
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            let token = Token(next);
                            next += 1;
                            poll.registry().register(&mut stream, token, Interest::READABLE).unwrap();
                            conns.insert(token, Conn { stream, request: Vec::new(), response: None });
                            peak = peak.max(conns.len());
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => panic!("accept: {e}"),
                    }
                }
                continue;
            }
            let token = event.token();
            let Some(conn) = conns.get_mut(&token) else { continue };
            if step(conn, served) {
                let mut conn = conns.remove(&token).unwrap();
                poll.registry().deregister(&mut conn.stream).unwrap();
                if conn.response.as_ref().is_some_and(|(r, sent)| *sent == r.len()) {
                    served += 1;
                }
            } else if conn.response.is_some() {
                poll.registry().reregister(&mut conn.stream, token, Interest::WRITABLE).unwrap();
            }
        }
    }
    println!("served {served} requests; peak {peak} connections at once; timer ticked: {}", ticks > 0);
}

/// Read the request and write the response as far as the socket allows.
/// True when the connection is finished (answered, or gone).
fn step(conn: &mut Conn, served: usize) -> bool {
    let mut buf = [0u8; 4096];
    while conn.response.is_none() {
        match conn.stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => {
                conn.request.extend_from_slice(&buf[..n]);
                if conn.request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let path = conn.request.split(|b| *b == b' ').nth(1).unwrap_or(b"?");
                    let body = format!("hello from mio, you asked for {}, request {served}\n", String::from_utf8_lossy(path));
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                    conn.response = Some(([head.into_bytes(), body.into_bytes()].concat(), 0));
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
    let (response, sent) = conn.response.as_mut().unwrap();
    while *sent < response.len() {
        match conn.stream.write(&response[*sent..]) {
            Ok(n) => *sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
    true
}
