//! Helpers shared by the end-to-end tests: the real `warden` binary with a
//! clean environment, and its output.
#![allow(dead_code, reason = "each test file uses a different subset")]

pub mod server;
pub mod serving;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output};
use std::time::{Duration, Instant};

/// The compile cache shared by the tests: most runs are warm, as in use.
pub fn shared_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("warden-test-cache")
}

/// `warden` with a clean environment and the shared cache.
pub fn warden() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
    cmd.env_clear().env("WARDEN_TEST_HOST_VAR", "host-only");
    cmd
}

pub fn run_cmd(args: &[&str]) -> Command {
    let mut cmd = warden();
    cmd.arg("run")
        .arg("--cache-dir")
        .arg(shared_cache())
        .args(args);
    cmd
}

pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn ran(out: Output) -> Ran {
    Ran {
        code: out
            .status
            .code()
            .expect("warden exited normally, not by signal"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

pub fn run(args: &[&str]) -> Ran {
    ran(run_cmd(args).output().unwrap())
}

/// A port on 127.0.0.1 that was free a moment ago (for a listener the
/// test must name before Warden binds it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

pub fn wat(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../test-programs/wat")
        .join(name)
}

pub fn lines(text: &[&str]) -> String {
    text.iter().map(|l| format!("{l}\n")).collect()
}

/// Wait for `child` to exit, at most `limit`; kill it and fail the test
/// past that (`what` says what was expected).
pub fn wait_bounded(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("warden did not exit: {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
pub mod otlp;
pub mod peers;
pub mod tls;

/// How a measured run went: its output, the most memory it held, and how
/// long it took.
pub struct Measured {
    pub ran: Ran,
    /// The child's peak resident set, KiB (`getrusage`'s `ru_maxrss`).
    pub max_rss_kib: i64,
    pub elapsed: Duration,
}

/// Run `cmd` to its end (stdin closed, stdout and stderr collected), at
/// most `limit` (then it is killed and the test fails), and measure it.
#[allow(
    clippy::zombie_processes,
    reason = "reaped with wait4, which also gives its resource use"
)]
pub fn measure(mut cmd: Command, limit: Duration) -> Measured {
    use std::process::Stdio;
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    // Keep only the last 1 MiB of each: the test process must stay small,
    // since a child's peak RSS counts what it shared with its parent
    // before exec.
    let read_out = std::thread::spawn(move || tail(&mut out));
    let read_err = std::thread::spawn(move || tail(&mut err));
    // Reap with wait4 to get the child's own resource use.
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to a status and an rusage; WNOHANG.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break;
        }
        assert!(r == 0, "wait4 failed");
        if started.elapsed() > limit {
            child.kill().unwrap();
            panic!("warden ran past {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed();
    assert!(libc::WIFEXITED(status), "warden was killed by a signal");
    Measured {
        ran: Ran {
            code: libc::WEXITSTATUS(status),
            stdout: String::from_utf8_lossy(&read_out.join().unwrap()).into_owned(),
            stderr: String::from_utf8_lossy(&read_err.join().unwrap()).into_owned(),
        },
        max_rss_kib: usage.ru_maxrss,
        elapsed,
    }
}

/// The last 1 MiB read from `r`, reading it to its end.
fn tail(r: &mut impl std::io::Read) -> Vec<u8> {
    const KEEP: usize = 1 << 20;
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * KEEP {
                    kept.drain(..kept.len() - KEEP);
                }
            }
        }
    }
}
