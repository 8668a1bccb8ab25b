//! An echo server on mio 1.x, one poll loop, listener at fd 3: each client
//! gets back what it sent, and its connection is closed once the client has
//! ended its side and everything was written back. Exits after CLIENTS
//! clients. Usage: echo_mio CLIENTS both|read
//!
//! `both` keeps every connection registered for READABLE | WRITABLE for
//! its whole life (valid mio code: the socket is almost always writable, so
//! the loop never blocks while a client is connected); `read` registers
//! READABLE, and WRITABLE only while there is something left to write.
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::os::wasi::io::FromRawFd;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const LISTENER: Token = Token(0);

struct Conn {
    stream: TcpStream,
    pending: Vec<u8>,
    ended: bool,
}

impl Conn {
    /// Read what there is, write back what it can; true when done.
    fn step(&mut self) -> bool {
        let mut buf = [0u8; 16 * 1024];
        while !self.ended {
            match self.stream.read(&mut buf) {
                Ok(0) => self.ended = true,
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => return true,
            }
        }
        while !self.pending.is_empty() {
            match self.stream.write(&self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => return true,
            }
        }
        self.ended && self.pending.is_empty()
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let clients: usize = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .expect("usage: echo_mio CLIENTS both|read");
    let both = match args.get(2).map(String::as_str) {
        Some("both") => true,
        Some("read") => false,
        _ => panic!("usage: echo_mio CLIENTS both|read"),
    };
    // SAFETY: the runtime hands the guest a listening socket at fd 3.
    let std_listener = unsafe { std::net::TcpListener::from_raw_fd(3) };
    std_listener.set_nonblocking(true).unwrap();
    let mut listener = TcpListener::from_std(std_listener);
    let mut poll = Poll::new().unwrap();
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .unwrap();
    let mut events = Events::with_capacity(64);
    let mut conns: HashMap<Token, Conn> = HashMap::new();
    let (mut next, mut done) = (1usize, 0usize);
    while done < clients {
        poll.poll(&mut events, None).unwrap();
        for event in events.iter() {
            if event.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            let token = Token(next);
                            next += 1;
                            let interest = if both {
                                Interest::READABLE | Interest::WRITABLE
                            } else {
                                Interest::READABLE
                            };
                            poll.registry()
                                .register(&mut stream, token, interest)
                                .unwrap();
                            conns.insert(
                                token,
                                Conn {
                                    stream,
                                    pending: Vec::new(),
                                    ended: false,
                                },
                            );
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => panic!("accept: {e}"),
                    }
                }
                continue;
            }
            let token = event.token();
            let Some(conn) = conns.get_mut(&token) else {
                continue;
            };
            if conn.step() {
                let mut conn = conns.remove(&token).unwrap();
                poll.registry().deregister(&mut conn.stream).unwrap();
                done += 1;
            } else if !both {
                let interest = if conn.pending.is_empty() {
                    Interest::READABLE
                } else {
                    Interest::READABLE | Interest::WRITABLE
                };
                poll.registry()
                    .reregister(&mut conn.stream, token, interest)
                    .unwrap();
            }
        }
    }
    println!("echoed for {done} clients");
}
