//! The client side of bench/tls.py's outgoing runs, as a WASI 0.2 guest
//! (through Warden's TLS) and natively (through a native TLS originator):
//! it speaks plaintext to 127.0.0.1:PORT and prints the seconds its work
//! took, timed inside the program.
//!
//!   bench_client get ADDR BYTES    ask for BYTES, read them to the end
//!   bench_client put ADDR BYTES    send BYTES, end, read the count back
//!   bench_client ping ADDR COUNT   COUNT connections, each one ping/pong
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, addr, n] = args.as_slice() else {
        eprintln!("usage: bench_client get|put|ping ADDR N");
        std::process::exit(2);
    };
    let addr: SocketAddr = addr.parse().expect("ADDR is IP:PORT");
    assert!(addr.ip().is_loopback(), "loopback only");
    let n: u64 = n.parse().expect("N is a number");
    let started = Instant::now();
    match mode.as_str() {
        "get" => {
            let mut s = TcpStream::connect(addr).unwrap();
            writeln!(s, "get {n}").unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            let mut got = 0u64;
            loop {
                let k = s.read(&mut buf).unwrap();
                if k == 0 {
                    break;
                }
                got += k as u64;
            }
            assert_eq!(got, n, "all of it");
        }
        "put" => {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"put\n").unwrap();
            let chunk = vec![0x3cu8; 64 * 1024];
            let mut left = n;
            while left > 0 {
                let k = left.min(chunk.len() as u64) as usize;
                s.write_all(&chunk[..k]).unwrap();
                left -= k as u64;
            }
            s.shutdown(Shutdown::Write).unwrap();
            let mut line = String::new();
            BufReader::new(&s).read_line(&mut line).unwrap();
            assert_eq!(line.trim_end(), format!("got {n}"));
        }
        "ping" => {
            for _ in 0..n {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(b"ping\n").unwrap();
                let mut line = String::new();
                BufReader::new(&s).read_line(&mut line).unwrap();
                assert_eq!(line, "pong\n");
            }
        }
        _ => panic!("unknown mode {mode}"),
    }
    println!("{:.6}", started.elapsed().as_secs_f64());
}
