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

fn recv(fd: u32, buf: &mut [u8], flags: wasi_p1::Riflags) -> usize {
    let iov = wasi_p1::Iovec { buf: buf.as_mut_ptr(), buf_len: buf.len() };
    // SAFETY: one iovec over a live buffer.
    unsafe { wasi_p1::sock_recv(fd, &[iov], flags) }.unwrap().0
}

fn read(userdata: u64, fd: u32) -> wasi_p1::Subscription {
    fd_sub(userdata, wasi_p1::EVENTTYPE_FD_READ, fd)
}

fn write(userdata: u64, fd: u32) -> wasi_p1::Subscription {
    fd_sub(userdata, wasi_p1::EVENTTYPE_FD_WRITE, fd)
}

fn fd_sub(userdata: u64, kind: wasi_p1::Eventtype, fd: u32) -> wasi_p1::Subscription {
    let rw = wasi_p1::SubscriptionFdReadwrite { file_descriptor: fd };
    let u = if kind == wasi_p1::EVENTTYPE_FD_READ {
        wasi_p1::SubscriptionUU { fd_read: rw }
    } else {
        wasi_p1::SubscriptionUU { fd_write: rw }
    };
    wasi_p1::Subscription { userdata, u: wasi_p1::SubscriptionU { tag: kind.raw(), u } }
}

fn clock(userdata: u64, nanos: u64) -> wasi_p1::Subscription {
    let clock = wasi_p1::SubscriptionClock {
        id: wasi_p1::CLOCKID_MONOTONIC,
        timeout: nanos,
        precision: 0,
        flags: 0,
    };
    wasi_p1::Subscription {
        userdata,
        u: wasi_p1::SubscriptionU { tag: wasi_p1::EVENTTYPE_CLOCK.raw(), u: wasi_p1::SubscriptionUU { clock } },
    }
}

/// The events one poll_oneoff returns, as `userdata:type` in order.
fn poll(subs: &[wasi_p1::Subscription]) -> String {
    let mut events = vec![
        wasi_p1::Event {
            userdata: 0,
            error: wasi_p1::ERRNO_SUCCESS,
            type_: wasi_p1::EVENTTYPE_CLOCK,
            fd_readwrite: wasi_p1::EventFdReadwrite { nbytes: 0, flags: 0 },
        };
        subs.len()
    ];
    // SAFETY: input and output arrays of the given length.
    let n = unsafe { wasi_p1::poll_oneoff(subs.as_ptr(), events.as_mut_ptr(), subs.len()) }.unwrap();
    let mut seen: Vec<String> = events[..n]
        .iter()
        .map(|e| format!("{}:{}", e.userdata, ["clock", "read", "write"][e.type_.raw() as usize]))
        .collect();
    seen.sort();
    seen.join(" ")
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
    // What fd_fdstat_get and fd_filestat_get say about sockets.
    // SAFETY: plain preview1 calls on descriptors this program holds.
    let stat3 = unsafe { wasi_p1::fd_fdstat_get(3) }.unwrap();
    say(&format!(
        "fd 3: socket {}, may accept {}",
        stat3.fs_filetype == wasi_p1::FILETYPE_SOCKET_STREAM,
        stat3.fs_rights_base & wasi_p1::RIGHTS_SOCK_ACCEPT != 0
    ));
    let stat_b = unsafe { wasi_p1::fd_fdstat_get(b.as_raw_fd() as u32) }.unwrap();
    say(&format!(
        "B: socket {}, may read {}, nonblocking {}",
        stat_b.fs_filetype == wasi_p1::FILETYPE_SOCKET_STREAM,
        stat_b.fs_rights_base & wasi_p1::RIGHTS_FD_READ != 0,
        stat_b.fs_flags & wasi_p1::FDFLAGS_NONBLOCK != 0
    ));
    // SAFETY: a plain preview1 call on a descriptor this program holds.
    let filestat3 = unsafe { wasi_p1::fd_filestat_get(3) }.unwrap();
    say(&format!("fd 3 filestat is a socket: {}", filestat3.filetype == wasi_p1::FILETYPE_SOCKET_STREAM));
    drop(b);

    // poll_oneoff over a socket, another kind of descriptor and clocks.
    say(&format!("poll listener + stdout + 5s clock: {}", poll(&[read(1, 3), write(2, 1), clock(3, 5_000_000_000)])));
    say(&format!("poll listener + 50ms clock: {}", poll(&[read(1, 3), clock(9, 50_000_000)])));

    // Client C: flags on sock_recv.
    say("ready for C");
    let (c, _) = listener.accept().unwrap();
    let fd = c.as_raw_fd() as u32;
    let mut buf = [0u8; 16];
    let n = recv(fd, &mut buf[..4], wasi_p1::RIFLAGS_RECV_PEEK);
    say(&format!("peek: {}", String::from_utf8_lossy(&buf[..n])));
    let n = recv(fd, &mut buf[..8], 0);
    say(&format!("then recv: {}", String::from_utf8_lossy(&buf[..n])));
    let n = recv(fd, &mut buf[..10], wasi_p1::RIFLAGS_RECV_WAITALL);
    say(&format!("waitall: {}", String::from_utf8_lossy(&buf[..n])));
    drop(c);

    // Descriptors the guest was never given.
    // SAFETY: deliberately wrong descriptors; forgotten so nothing closes them.
    let stray = unsafe { TcpStream::from_raw_fd(77) };
    say(&format!("write to fd 77: {:?}", (&stray).write(b"x").unwrap_err().raw_os_error()));
    std::mem::forget(stray);
    let stdout_as_listener = unsafe { TcpListener::from_raw_fd(1) };
    say(&format!("accept on stdout: {:?}", stdout_as_listener.accept().unwrap_err().raw_os_error()));
    std::mem::forget(stdout_as_listener);
    // SAFETY: plain preview1 calls; fd 3 is ours to close.
    let shut = unsafe { wasi_p1::sock_shutdown(3, wasi_p1::SDFLAGS_WR) };
    say(&format!("shutdown on the listener: {}", shut.unwrap_err().raw()));
    unsafe { wasi_p1::fd_close(3) }.unwrap();
    std::mem::forget(listener);
    say("closed the listener");
    // Wait for the test to try (and fail) to connect.
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    let again = unsafe { wasi_p1::sock_accept(3, 0) };
    say(&format!("accept after close: {}", again.unwrap_err().raw()));
    say("done");
}
