//! An echo server on tokio (current-thread runtime) over the listener the
//! runtime pre-opened at fd 3. Each connection is its own task; the server
//! exits once CONNECTIONS connections have finished.
//! Usage: echo_tokio CONNECTIONS
// The same program builds natively for the benchmarks, where the script
// hands it the listener at fd 3 the way Warden does.
#[cfg(unix)]
use std::os::fd::FromRawFd;
#[cfg(target_os = "wasi")]
use std::os::wasi::io::FromRawFd;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let connections: usize = std::env::args()
        .nth(1)
        .expect("usage: echo_tokio CONNECTIONS")
        .parse()
        .expect("CONNECTIONS is a number");
    // SAFETY: the runtime hands the guest a listening socket at fd 3.
    let std_listener = unsafe { std::net::TcpListener::from_raw_fd(3) };
    std_listener.set_nonblocking(true).unwrap();
    let listener = TcpListener::from_std(std_listener).unwrap();
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (mut stream, _) = listener.accept().await.unwrap();
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut echoed = 0u64;
            loop {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<u64, std::io::Error>(echoed);
                }
                stream.write_all(&buf[..n]).await?;
                echoed += n as u64;
            }
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap().unwrap_or(0);
    }
    println!("tokio served {connections} connections, echoed {total} bytes");
}
