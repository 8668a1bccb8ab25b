//! The seeds' blocking server: Rust std on a listener the runtime
//! pre-opened at fd 3. Echoes each connection until the client closes its
//! side, then closes; serves CONNECTIONS connections one after another and
//! exits. Usage: echo_std CONNECTIONS
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
// The same program builds natively for the benchmarks, where the script
// hands it the listener at fd 3 the way Warden does.
#[cfg(unix)]
use std::os::fd::FromRawFd;
#[cfg(target_os = "wasi")]
use std::os::wasi::io::FromRawFd;

fn echo(stream: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<u64> {
    let mut total = 0;
    loop {
        let n = stream.read(buf)?;
        if n == 0 {
            return Ok(total);
        }
        stream.write_all(&buf[..n])?;
        total += n as u64;
    }
}

fn main() {
    let connections: usize = std::env::args()
        .nth(1)
        .expect("usage: echo_std CONNECTIONS")
        .parse()
        .expect("CONNECTIONS is a number");
    // SAFETY: the runtime hands the guest a listening socket at fd 3.
    let listener = unsafe { TcpListener::from_raw_fd(3) };
    let mut buf = vec![0u8; 64 * 1024];
    let mut echoed = 0u64;
    for i in 0..connections {
        let (mut stream, _) = listener.accept().expect("accept");
        match echo(&mut stream, &mut buf) {
            Ok(n) => echoed += n,
            // A client may reset; the server goes on with the next one.
            Err(e) => eprintln!("connection {i}: {:?}", e.kind()),
        }
    }
    println!("served {connections} connections, echoed {echoed} bytes");
}
