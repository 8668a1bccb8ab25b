//! Helpers shared by the end-to-end tests: the real `warden` binary with a
//! clean environment, and its output.
#![allow(dead_code, reason = "each test file uses a different subset")]

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
pub mod peers;
