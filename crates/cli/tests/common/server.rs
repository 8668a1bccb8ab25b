//! A `warden run` serving on pre-opened listeners, for the tests that are
//! its clients: the port it bound (from its first stderr line), the
//! guest's stdout line by line, and the rest of its output at the end.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::process::{Child, ChildStderr, ChildStdout, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{Ran, run_cmd, wait_bounded};

/// A running `warden run --listen 127.0.0.1:0 ...` and the port it bound.
/// Dropped without [`Server::finish`] (a test that failed), it kills the
/// process: no test leaves a server running.
pub struct Server {
    pub child: Child,
    pub port: u16,
    stdout: BufReader<ChildStdout>,
    stderr: Option<JoinHandle<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The port in a line that says `listening on IP:PORT` (and perhaps more
/// after it), or `serving http://IP:PORT/`.
pub fn listening_port(line: &str) -> Option<u16> {
    let addr = match line.split_once("listening on ") {
        Some((_, rest)) => rest.split_whitespace().next()?,
        None => {
            let (_, rest) = line.split_once("://")?;
            rest.split('/').next()?
        }
    };
    addr.parse::<std::net::SocketAddr>().ok().map(|a| a.port())
}

fn spawn(args: &[&str]) -> (Child, BufReader<ChildStdout>, BufReader<ChildStderr>) {
    spawn_cmd(run_cmd(args))
}

fn spawn_cmd(
    mut cmd: std::process::Command,
) -> (Child, BufReader<ChildStdout>, BufReader<ChildStderr>) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let stderr = BufReader::new(child.stderr.take().unwrap());
    (child, stdout, stderr)
}

/// The rest of `stderr` (after `first`), read on a thread of its own.
fn collect(first: String, mut stderr: BufReader<ChildStderr>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut all = first;
        stderr.read_to_string(&mut all).unwrap();
        all
    })
}

impl Server {
    /// Start `warden run ARGS` and take the port from its first stderr
    /// line after any warnings (`warden: fd 3 (NAME) listening on
    /// 127.0.0.1:PORT`).
    pub fn start(args: &[&str]) -> Server {
        Server::start_with(run_cmd(args))
    }

    /// [`Server::start`] for a command already made (`warden serve ...`).
    pub fn start_with(cmd: std::process::Command) -> Server {
        let (mut child, stdout, mut stderr) = spawn_cmd(cmd);
        // Warnings (a random seed, an allow-all grant) come first.
        let mut first = String::new();
        let mut line = String::new();
        while stderr.read_line(&mut line).unwrap() > 0 && line.starts_with("warden: warning:") {
            first.push_str(&line);
            line.clear();
        }
        first.push_str(&line);
        let Some(port) = listening_port(&line) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no listening line: {first:?}");
        };
        Server {
            child,
            port,
            stdout,
            stderr: Some(collect(first, stderr)),
        }
    }

    /// Like [`Server::start`], for a guest that binds its own listener and
    /// says `listening on IP:PORT` on stdout.
    pub fn start_guest(args: &[&str]) -> Server {
        let (mut child, mut stdout, stderr) = spawn(args);
        let stderr = collect(String::new(), stderr);
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let Some(port) = listening_port(&first) else {
            let _ = child.kill();
            panic!(
                "no listening line: {first:?}; stderr: {}",
                stderr.join().unwrap()
            );
        };
        Server {
            child,
            port,
            stdout,
            stderr: Some(stderr),
        }
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s
    }

    /// The guest's next stdout line.
    pub fn line(&mut self) -> String {
        let mut l = String::new();
        self.stdout.read_line(&mut l).unwrap();
        l.trim_end().to_string()
    }

    /// Wait (bounded) for warden to exit; the rest of its output.
    pub fn finish(mut self) -> Ran {
        let status = wait_bounded(
            &mut self.child,
            Duration::from_secs(60),
            "the server should stop",
        );
        let mut stdout = String::new();
        self.stdout.read_to_string(&mut stdout).unwrap();
        Ran {
            code: status.code().expect("exited normally"),
            stdout,
            stderr: self
                .stderr
                .take()
                .map(|h| h.join().unwrap())
                .unwrap_or_default(),
        }
    }
}
