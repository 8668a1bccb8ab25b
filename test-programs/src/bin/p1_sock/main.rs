//! A Rust preview1 program on Warden's socket extension (see sock.rs):
//! a TCP and UDP client, name resolution, and `probe`, which hands the
//! host hostile arguments and prints the errno each call returns.
//! Usage: p1_sock connect IP:PORT [POOL] | udp IP:PORT | resolve NAME ROOM
//!        | probe PORT (a peer listens on 127.0.0.1:PORT; 127.0.0.2 is denied)
//!        | hold IP:PORT N (connect until one fails, at most N, hold them all,
//!          close them, connect again) | udps N (the same with UDP sockets)

mod sock;

use std::io::{Read, Write};
use std::net::SocketAddr;

use sock::{WasiAddr, encode, raw};

fn name(e: u16) -> &'static str {
    match e {
        0 => "ok",
        2 => "EACCES",
        5 => "EAFNOSUPPORT",
        8 => "EBADF",
        21 => "EFAULT",
        28 => "EINVAL",
        37 => "ENAMETOOLONG",
        53 => "ENOTCONN",
        57 => "ENOTSOCK",
        58 => "ENOTSUP",
        76 => "ENOTCAPABLE",
        34 => "EMLINK",
        33 => "EMFILE",
        48 => "ENOMEM",
        _ => "other",
    }
}

fn pool(named: Option<&String>) -> i32 {
    let Some(named) = named else { return -1 };
    let pools = std::env::var("WARDEN_POOLS").unwrap_or_default();
    pools
        .split(',')
        .find_map(|p| p.strip_prefix(&format!("{named}=")))
        .and_then(|fd| fd.parse().ok())
        .unwrap_or_else(|| panic!("no pool {named} in WARDEN_POOLS={pools}"))
}

#[link(wasm_import_module = "warden")]
unsafe extern "C" {
    fn sock_pool_narrow(pool: i32, spec: *const u8, out: *mut i32) -> u16;
}

fn narrow(pool: i32, spec: &str) -> (u16, i32) {
    let spec = format!("{spec}\0");
    let mut fd = -1;
    let e = unsafe { sock_pool_narrow(pool, spec.as_ptr(), &mut fd) };
    (e, fd)
}

fn open(pool: i32, af: i32, ty: i32) -> (u16, i32) {
    let mut fd = -1;
    let e = unsafe { raw::sock_open(pool, af, ty, &mut fd) };
    (e, fd)
}

fn connect_raw(fd: i32, addr: *const WasiAddr) -> u16 {
    unsafe { raw::sock_connect(fd, addr) }
}

fn probe(port: u16) {
    let say = |what: &str, e: u16| println!("{what}: {}", name(e));
    say("open unknown family", open(-1, 7, 1).0);
    say("open unknown type", open(-1, 0, 9).0);
    say("open pool closed", open(999, 0, 1).0);
    say("open pool file", open(1, 0, 1).0);
    let (_, s) = open(-1, 0, 1);
    say("open pool socket", open(s, 0, 1).0);

    let mut bad = encode(format!("127.0.0.1:{port}").parse().unwrap());
    bad.kind = 9;
    say("connect unknown kind", connect_raw(open(-1, 0, 1).1, &bad));
    let end = core::arch::wasm32::memory_size(0) * 65536;
    say(
        "connect truncated",
        connect_raw(open(-1, 0, 1).1, (end - 10) as *const WasiAddr),
    );
    let zero = encode("127.0.0.1:0".parse().unwrap());
    say("connect port 0", connect_raw(open(-1, 0, 1).1, &zero));
    let v6 = encode(format!("[::1]:{port}").parse().unwrap());
    say(
        "connect v6 on v4 socket",
        connect_raw(open(-1, 0, 1).1, &v6),
    );
    let denied = encode(format!("[::ffff:127.0.0.2]:{port}").parse().unwrap());
    say(
        "connect mapped denied",
        connect_raw(open(-1, 1, 1).1, &denied),
    );
    let allowed = encode(format!("[::ffff:127.0.0.1]:{port}").parse().unwrap());
    let (_, mapped) = open(-1, 1, 1);
    say("connect mapped allowed", connect_raw(mapped, &allowed));
    // Closed, so the peer serves the next connection at once.
    unsafe { raw::sock_close(mapped) };

    let long = "a".repeat(300);
    say(
        "resolve long name",
        sock::resolve(&long, 80, 4).err().unwrap_or(0),
    );
    say(
        "resolve bad name",
        sock::resolve("bad name!", 80, 4).err().unwrap_or(0),
    );

    let local = encode("127.0.0.1:0".parse().unwrap());
    say("bind stdout", unsafe { raw::sock_bind(1, &local) });
    say("bind closed", unsafe { raw::sock_bind(999, &local) });
    let (_, u) = open(-1, 0, 0);
    say("listen udp", unsafe { raw::sock_listen(u, 8) });
    let (_, t) = open(-1, 0, 1);
    let mut fd = 0u32;
    say("accept unlistened", unsafe {
        wasi_p1::wasi_snapshot_preview1::sock_accept(t, 0, (&raw mut fd) as i32)
    } as u16);
    let mut buf = [0u8; 8];
    let iov = [wasi_p1::Iovec {
        buf: buf.as_mut_ptr(),
        buf_len: buf.len(),
    }];
    say(
        "recv unconnected",
        unsafe { wasi_p1::sock_recv(t as u32, &iov, 0) }
            .err()
            .map_or(0, |e| e.raw()),
    );
    // Buffers and out-pointers past the end of memory: EFAULT, never a
    // trap, and nothing sent or received.
    let end = core::arch::wasm32::memory_size(0) * 65536;
    let past = [sock::Iovec {
        buf: (end - 10) as *const u8,
        len: 100,
    }];
    let to = encode(format!("127.0.0.1:{port}").parse().unwrap());
    let (_, u) = open(-1, 0, 0);
    let mut n = 0u32;
    say("send_to buffer past memory", unsafe {
        raw::sock_send_to(u, past.as_ptr(), 1, 0, &to, &mut n)
    });
    say("send_to iovecs past memory", unsafe {
        raw::sock_send_to(u, (end - 4) as *const sock::Iovec, 1, 0, &to, &mut n)
    });
    say("send_to address past memory", unsafe {
        raw::sock_send_to(u, past.as_ptr(), 1, 0, (end - 4) as *const WasiAddr, &mut n)
    });
    let c = sock::TcpStream::connect(format!("127.0.0.1:{port}").parse().unwrap(), -1).unwrap();
    let cfd = c.fd();
    let mut from = encode("0.0.0.0:0".parse().unwrap());
    say("recv_from buffer past memory", unsafe {
        raw::sock_recv_from(cfd, past.as_ptr().cast(), 1, 0, &mut from, &mut n)
    });
    let bad_ciov = [wasi_p1::Ciovec {
        buf: (end - 10) as *const u8,
        buf_len: 100,
    }];
    say(
        "sock_send buffer past memory",
        unsafe { wasi_p1::sock_send(cfd as u32, &bad_ciov, 0) }
            .err()
            .map_or(0, |e| e.raw()),
    );
    let bad_iov = [wasi_p1::Iovec {
        buf: (end - 10) as *mut u8,
        buf_len: 100,
    }];
    say(
        "sock_recv buffer past memory",
        unsafe { wasi_p1::sock_recv(cfd as u32, &bad_iov, 0) }
            .err()
            .map_or(0, |e| e.raw()),
    );
    say("addr_local out past memory", unsafe {
        raw::sock_addr_local(cfd, (end - 4) as *mut WasiAddr)
    });
    say("get option out past memory", unsafe {
        raw::sock_get_recv_buf_size(cfd, (end - 2) as *mut u32)
    });
    // The connection still works after all that.
    let mut c = c;
    c.write_all(b"after\n").unwrap();
    c.shutdown_write().unwrap();
    let mut reply = String::new();
    c.read_to_string(&mut reply).unwrap();
    println!("still works: {}", reply.trim_end());
    if let Ok(pools) = std::env::var("WARDEN_POOLS") {
        let fd: u32 = pools.split('=').nth(1).unwrap().parse().unwrap();
        say(
            "read pool",
            unsafe { wasi_p1::fd_read(fd, &iov) }
                .err()
                .map_or(0, |e| e.raw()),
        );
        let stat = unsafe { wasi_p1::fd_fdstat_get(fd) }.unwrap();
        println!("pool filetype: {}", stat.fs_filetype.raw());
        say("narrow no pool", narrow(-1, "n=connect@127.0.0.1:1").0);
        say("narrow a socket", narrow(s, "n=connect@127.0.0.1:1").0);
        say("narrow bad spec", narrow(fd as i32, "n=connect").0);
        let end = core::arch::wasm32::memory_size(0) * 65536;
        let mut out = -1;
        say("narrow spec off memory", unsafe {
            sock_pool_narrow(fd as i32, end as *const u8, &mut out)
        });
        let mut deepest = fd as i32;
        let mut e = 0;
        while e == 0 {
            (e, deepest) = match narrow(deepest, "n=connect@127.0.0.1:*") {
                (0, next) => (0, next),
                (e, _) => (e, deepest),
            };
        }
        say("narrow too deep", e);
        say("close pool", unsafe { raw::sock_close(fd as i32) });
        say("open closed pool", open(fd as i32, 0, 1).0);
    }
}

/// Narrow `pool` `times` times, keeping every new descriptor, each from a
/// `big` spec of about 4,000 bytes (hundreds of targets) or a `tiny` one;
/// print how many of each errno came back.
fn narrow_flood(pool: i32, times: usize, size: &str) {
    let targets: Vec<String> = (0..230)
        .map(|i| format!("10.{}.{}.0/24:1-9", i / 250, i % 250))
        .collect();
    let spec = match size {
        "big" => format!("n=connect@{}", targets.join(",")),
        _ => "n=connect@10.0.0.1:1".to_string(),
    };
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..times {
        *counts.entry(name(narrow(pool, &spec).0)).or_insert(0) += 1;
    }
    let shown: Vec<String> = counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("{size} {} bytes: {}", spec.len(), shown.join(" "));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("connect") => {
            let addr: SocketAddr = args[2].parse().unwrap();
            match sock::TcpStream::connect(addr, pool(args.get(3))) {
                Ok(mut s) => {
                    println!("peer {}", s.peer_addr().unwrap());
                    println!(
                        "local is loopback: {}",
                        s.local_addr().unwrap().ip().is_loopback()
                    );
                    s.set_nodelay(true).unwrap();
                    s.write_all(b"hello\n").unwrap();
                    s.shutdown_write().unwrap();
                    let mut reply = String::new();
                    s.read_to_string(&mut reply).unwrap();
                    println!("got: {}", reply.trim_end());
                }
                Err(e) => {
                    println!("connect failed: {e}");
                    std::process::exit(1);
                }
            }
        }
        Some("udp") => {
            let addr: SocketAddr = args[2].parse().unwrap();
            let u = sock::UdpSocket::open(addr, pool(args.get(3))).unwrap();
            match u.send_to(b"ping", addr) {
                Ok(_) => {
                    let mut buf = [0u8; 64];
                    let (n, from) = u.recv_from(&mut buf).unwrap();
                    println!("udp got {} from {from}", String::from_utf8_lossy(&buf[..n]));
                }
                Err(e) => {
                    println!("send failed: {e}");
                    std::process::exit(1);
                }
            }
        }
        Some("resolve") => {
            let room: u32 = args[3].parse().unwrap();
            match sock::resolve(&args[2], 443, room) {
                Ok((addrs, total)) => {
                    let shown: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
                    println!("resolved {} of {total}: {}", addrs.len(), shown.join(" "));
                }
                Err(e) => {
                    println!("resolve failed: {}", name(e));
                    std::process::exit(1);
                }
            }
        }
        Some("hold") => {
            // Open connections until one fails (at most N), hold them, then
            // close them all and connect once more.
            let addr: SocketAddr = args[2].parse().unwrap();
            let n: usize = args[3].parse().unwrap();
            let mut held = Vec::new();
            let mut failed = String::from("none failed");
            for _ in 0..n {
                match sock::TcpStream::connect(addr, -1) {
                    Ok(s) => held.push(s),
                    Err(e) => {
                        failed = e.to_string();
                        break;
                    }
                }
            }
            println!("hold: {} open, then {failed}", held.len());
            drop(held);
            match sock::TcpStream::connect(addr, -1) {
                Ok(_) => println!("again: ok"),
                Err(e) => println!("again: {e}"),
            }
        }
        Some("udps") => {
            // The same with UDP sockets.
            let like: SocketAddr = "127.0.0.1:9".parse().unwrap();
            let n: usize = args[2].parse().unwrap();
            let mut held = Vec::new();
            let mut failed = String::from("none failed");
            for _ in 0..n {
                match sock::UdpSocket::open(like, -1) {
                    Ok(s) => held.push(s),
                    Err(e) => {
                        failed = e.to_string();
                        break;
                    }
                }
            }
            println!("udps: {} open, then {failed}", held.len());
            drop(held);
            match sock::UdpSocket::open(like, -1) {
                Ok(_) => println!("again: ok"),
                Err(e) => println!("again: {e}"),
            }
        }
        Some("probe") => probe(args[2].parse().unwrap()),
        Some("narrow-flood") => narrow_flood(pool(args.get(2)), args[3].parse().unwrap(), &args[4]),
        _ => {
            eprintln!(
                "usage: p1_sock connect IP:PORT [POOL] | udp IP:PORT | resolve NAME ROOM | probe PORT | narrow-flood POOL TIMES big|tiny | hold IP:PORT N | udps N"
            );
            std::process::exit(2);
        }
    }
}
