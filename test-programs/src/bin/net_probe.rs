//! Tries every kind of network access a WASI 0.2 guest has and prints one
//! line per attempt: `ok` or the error it saw. Usage: net_probe PORT
//! PORT is a real loopback listener (TCP and UDP) run by the test, so a
//! failure can only be the runtime's refusal.
use std::io::Write;
use std::net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket};

fn show<T>(r: std::io::Result<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!("{:?}", e.kind()),
    }
}

fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .expect("usage: net_probe PORT")
        .parse()
        .expect("PORT is a number");

    let connect = TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| s.write_all(b"hi"));
    println!("tcp connect 127.0.0.1: {}", show(connect));
    println!("tcp connect [::1]: {}", show(TcpStream::connect(("::1", port))));
    println!("tcp bind: {}", show(TcpListener::bind("127.0.0.1:0")));
    let lookup = ("localhost", port).to_socket_addrs().map(|a| a.count());
    println!("name lookup: {}", show(lookup));
    let udp = UdpSocket::bind("127.0.0.1:0").and_then(|s| s.send_to(b"hi", ("127.0.0.1", port)));
    println!("udp send: {}", show(udp));
    println!("http get: {}", http_get(&format!("127.0.0.1:{port}")));
}

/// A plain wasi:http GET, reporting the wasi:http error code on failure.
fn http_get(authority: &str) -> String {
    use wasi::http::outgoing_handler;
    use wasi::http::types::{Fields, OutgoingRequest, Scheme};
    let req = OutgoingRequest::new(Fields::new());
    req.set_scheme(Some(&Scheme::Http)).unwrap();
    req.set_authority(Some(authority)).unwrap();
    req.set_path_with_query(Some("/")).unwrap();
    let response = match outgoing_handler::handle(req, None) {
        Ok(fut) => {
            fut.subscribe().block();
            fut.get().expect("ready after block")
        }
        Err(e) => return format!("{e:?}"),
    };
    match response {
        Ok(Ok(resp)) => format!("status {}", resp.status()),
        Ok(Err(e)) => format!("{e:?}"),
        Err(()) => "response already taken".into(),
    }
}
