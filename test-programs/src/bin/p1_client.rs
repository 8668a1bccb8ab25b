//! The client side of bench/net.py's outgoing runs: a preview1 program
//! that connects out through Warden's socket extension (p1_sock/sock.rs)
//! and, built natively, the same program on std's `TcpStream`. It talks
//! to an echo server on 127.0.0.1 and prints the seconds its work took,
//! timed inside the program so start-up is not counted.
//!
//!   p1_client echo ADDR BYTES   one connection; BYTES go out and come back
//!                               in 64 KiB rounds (write a chunk, read it back)
//!   p1_client conns ADDR COUNT  COUNT connections one after another, each
//!                               sending 64 bytes, ending its side and
//!                               reading the echo to the end
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

#[cfg(target_os = "wasi")]
#[path = "p1_sock/sock.rs"]
#[allow(dead_code)]
mod sock;

#[cfg(target_os = "wasi")]
type Stream = sock::TcpStream;
#[cfg(not(target_os = "wasi"))]
type Stream = std::net::TcpStream;

#[cfg(target_os = "wasi")]
fn connect(addr: SocketAddr) -> Stream {
    // -1: no pool, the instance's policy alone (what WAMR-built programs pass).
    let s = sock::TcpStream::connect(addr, -1).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s
}

#[cfg(not(target_os = "wasi"))]
fn connect(addr: SocketAddr) -> Stream {
    let s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s
}

#[cfg(target_os = "wasi")]
fn end_writing(s: &Stream) {
    s.shutdown_write().expect("shutdown");
}

#[cfg(not(target_os = "wasi"))]
fn end_writing(s: &Stream) {
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
}

fn echo(addr: SocketAddr, bytes: u64) {
    let mut s = connect(addr);
    let chunk: Vec<u8> = (0..64 * 1024).map(|i| i as u8).collect();
    let mut back = vec![0u8; chunk.len()];
    let mut left = bytes;
    let mut first = true;
    while left > 0 {
        let k = left.min(chunk.len() as u64) as usize;
        s.write_all(&chunk[..k]).expect("write");
        s.read_exact(&mut back[..k]).expect("read the echo");
        // Checked once: comparing every round would time wasm's memcmp
        // rather than the sockets.
        if first {
            assert_eq!(back[..k], chunk[..k], "the echo is what was sent");
            first = false;
        }
        left -= k as u64;
    }
    end_writing(&s);
    assert_eq!(s.read(&mut back).expect("read EOF"), 0, "nothing more");
}

fn conns(addr: SocketAddr, count: u64) {
    let request = [b'x'; 64];
    let mut reply = Vec::with_capacity(64);
    for _ in 0..count {
        let mut s = connect(addr);
        s.write_all(&request).expect("write");
        end_writing(&s);
        reply.clear();
        s.read_to_end(&mut reply).expect("read");
        assert_eq!(reply, request, "the echo is what was sent");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, addr, n] = args.as_slice() else {
        eprintln!("usage: p1_client echo|conns ADDR N");
        std::process::exit(2);
    };
    let addr: SocketAddr = addr.parse().expect("ADDR is IP:PORT");
    assert!(addr.ip().is_loopback(), "loopback only");
    let n: u64 = n.parse().expect("N is a number");
    let started = Instant::now();
    match mode.as_str() {
        "echo" => echo(addr, n),
        "conns" => conns(addr, n),
        _ => {
            eprintln!("usage: p1_client echo|conns ADDR N");
            std::process::exit(2);
        }
    }
    println!("{:.6}", started.elapsed().as_secs_f64());
}
