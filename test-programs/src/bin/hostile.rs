//! A WASI 0.2 guest that tries to make the host spend memory, queries or
//! output without bound. One scenario per run; each prints one line saying
//! how far it got.
//!
//!   long-names BYTES COUNT  look up COUNT names of BYTES bytes each
//!   lookups COUNT           start COUNT lookups of distinct names at once,
//!                           then wait for all; print how each kind ended
//!   fields COUNT BYTES      make COUNT header maps of about BYTES bytes
//!                           each and keep them all (a map over the host's
//!                           size limit, or one map too many, traps)
//!   sockets COUNT           open COUNT UDP sockets and keep them all
//!   read PATH               read PATH to its end (a FIFO nobody writes
//!                           to blocks forever)
//!   datagrams COUNT PORTS   bind a UDP socket to 0.0.0.0:0, then send
//!                           COUNT datagrams to 127.0.0.1, to PORTS ports
//!                           in turn from 9 up; print how many failed
use std::collections::BTreeMap;

use wasi::http::types::{Fields, HeaderError};
use wasi::sockets::ip_name_lookup;

fn arg(i: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .expect("a number argument")
}

fn datagrams(count: usize, ports: usize) {
    let s = match std::net::UdpSocket::bind("0.0.0.0:0") {
        Ok(s) => s,
        Err(e) => {
            println!("datagrams: bind {:?}", e.kind());
            return;
        }
    };
    let mut failed = 0;
    for i in 0..count {
        let port = 9 + (i % ports.max(1)) as u16;
        if s.send_to(b"x", ("127.0.0.1", port)).is_err() {
            failed += 1;
        }
    }
    println!("datagrams: {failed} of {count} failed");
}

fn long_names(bytes: usize, count: usize) {
    let name = "a".repeat(bytes);
    let mut refused = 0;
    for _ in 0..count {
        if std::net::ToSocketAddrs::to_socket_addrs(&(name.as_str(), 80)).is_err() {
            refused += 1;
        }
    }
    println!("long-names: {refused} of {count} refused");
}

fn lookups(count: usize) {
    let network = wasi::sockets::instance_network::instance_network();
    let mut streams = Vec::new();
    let mut ended: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..count {
        match ip_name_lookup::resolve_addresses(&network, &format!("n{i}.silent.test")) {
            Ok(s) => streams.push(s),
            Err(e) => *ended.entry(format!("{e:?}")).or_default() += 1,
        }
    }
    for s in streams {
        let outcome = loop {
            match s.resolve_next_address() {
                Ok(_) => break "ok".to_string(),
                Err(wasi::sockets::network::ErrorCode::WouldBlock) => s.subscribe().block(),
                Err(e) => break format!("{e:?}"),
            }
        };
        *ended.entry(outcome).or_default() += 1;
    }
    let summary: Vec<String> = ended.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("lookups: {}", summary.join(" "));
}

fn fields(count: usize, bytes: usize) {
    let value = vec![b'v'; 1000];
    let mut kept = Vec::new();
    for i in 0..count {
        let entries: Vec<(String, Vec<u8>)> = (0..bytes / 1000)
            .map(|j| (format!("x-h{j}"), value.clone()))
            .collect();
        match Fields::from_list(&entries) {
            Ok(f) => kept.push(f),
            Err(HeaderError::InvalidSyntax | HeaderError::Forbidden | HeaderError::Immutable) => {
                println!("fields: refused at {i}");
                return;
            }
        }
    }
    println!("fields: kept {} maps", kept.len());
}

fn leak_sockets(count: usize) {
    let mut kept = Vec::new();
    for i in 0..count {
        match std::net::UdpSocket::bind("127.0.0.1:0") {
            Ok(s) => kept.push(s),
            Err(e) => {
                println!("sockets: refused at {i}: {:?}", e.kind());
                return;
            }
        }
    }
    println!("sockets: kept {}", kept.len());
}

fn main() {
    let scenario = std::env::args().nth(1).expect("a scenario");
    match scenario.as_str() {
        "long-names" => long_names(arg(2), arg(3)),
        "lookups" => lookups(arg(2)),
        "fields" => fields(arg(2), arg(3)),
        "sockets" => leak_sockets(arg(2)),
        "datagrams" => datagrams(arg(2), arg(3)),
        "read" => {
            let path = std::env::args().nth(2).expect("a path");
            match std::fs::read(&path) {
                Ok(b) => println!("read: {} bytes", b.len()),
                Err(e) => println!("read: {:?}", e.kind()),
            }
        }
        other => panic!("unknown scenario {other}"),
    }
}
