//! Walks through the preview1 socket surface step by step, printing one line
//! per step; the test drives the client side in between. Listener at fd 3.
//! Usage: sock_probe FILE   (FILE is in a pre-opened directory)
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::wasi::io::{AsRawFd, FromRawFd};

fn say(line: &str) {
    println!("{line}");
    std::io::stdout().flush().unwrap();
}

fn main() {
    let file = std::env::args().nth(1).expect("usage: sock_probe FILE");
    for var in ["LISTEN_FDS", "LISTEN_FDNAMES", "FD_COUNT", "FD_NAMES"] {
        say(&format!("{var}={}", std::env::var(var).unwrap_or_default()));
    }
    // The directory comes after the listener and must still be found.
    say(&format!("file: {}", std::fs::read_to_string(&file).map(|s| s.trim().to_string()).unwrap_or_else(|e| format!("{:?}", e.kind()))));

    // SAFETY: the runtime hands the guest a listening socket at fd 3.
    let listener = unsafe { TcpListener::from_raw_fd(3) };
    listener.set_nonblocking(true).unwrap();
    say(&format!("nonblocking accept: {:?}", listener.accept().map(|_| ()).unwrap_err().kind()));
    listener.set_nonblocking(false).unwrap();
    say("ready");

    // Client A: the guest half-closes first, then reads what the client
    // sends after that.
    let (mut a, _) = listener.accept().unwrap();
    let first = a.as_raw_fd();
    say(&format!("accepted A on fd {first}"));
    a.write_all(b"hello\n").unwrap();
    a.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    a.read_to_end(&mut rest).unwrap();
    say(&format!("A sent {} bytes after our half-close", rest.len()));
    drop(a);

    // Client B gets the number A had: descriptors are reused after close.
    let (b, _) = listener.accept().unwrap();
    say(&format!("accepted B on the same fd: {}", b.as_raw_fd() == first));
    b.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    say(&format!("nonblocking read with nothing sent: {:?}", (&b).read(&mut byte).unwrap_err().kind()));
    drop(b);

    // Descriptors the guest was never given.
    // SAFETY: deliberately wrong descriptors; forgotten so nothing closes them.
    let stray = unsafe { TcpStream::from_raw_fd(77) };
    say(&format!("write to fd 77: {:?}", (&stray).write(b"x").unwrap_err().raw_os_error()));
    std::mem::forget(stray);
    let stdout_as_listener = unsafe { TcpListener::from_raw_fd(1) };
    say(&format!("accept on stdout: {:?}", stdout_as_listener.accept().unwrap_err().raw_os_error()));
    std::mem::forget(stdout_as_listener);
    say("done");
}
