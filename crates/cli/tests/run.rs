//! `warden run` end to end: the real binary, spawned as a process, running
//! real guest programs (test-programs/, built for wasm32-wasip1 and
//! wasm32-wasip2) and asserting their exact output and exit codes.

mod common;

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

use common::*;
use warden_test_artifacts::{Target, guest};

/// One test per WASI target for each check that takes the target: a check
/// `name` becomes the tests `name::p1` and `name::p2`.
macro_rules! for_each_target {
    ($($check:ident),* $(,)?) => {$(
        mod $check {
            #[test]
            fn p1() {
                super::$check(warden_test_artifacts::Target::P1)
            }
            #[test]
            fn p2() {
                super::$check(warden_test_artifacts::Target::P2)
            }
        }
    )*};
}

for_each_target!(
    hello,
    args_and_granted_env,
    no_env_without_grant,
    fs_read_only_dir_refuses_writes,
    fs_read_write_grant_allows_writes,
    fs_nothing_without_grant,
    trap_reports_reason_and_named_backtrace,
    memory_limit_refuses_growth_inside_the_guest,
    memory_under_the_limit_grows,
    timeout_stops_a_busy_guest,
    timeout_stops_a_guest_blocked_in_the_host,
    within_timeout_and_fuel_the_guest_finishes,
    fuel_stops_a_busy_guest,
    second_start_does_not_compile,
);

// ---------------------------------------------------------------- hello

fn hello(t: Target) {
    let r = run(&[p(&guest(t, "hello"))]);
    assert_eq!(r.stdout, "hello from a warden guest\n");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stderr, "");
}

// ---------------------------------------------------------------- args, env, exit

fn args_and_granted_env(t: Target) {
    let mut cmd = run_cmd(&[
        "--env",
        "A=1",
        "--env",
        "COPIED",
        "--env",
        "E=",
        p(&guest(t, "cli")),
        "x",
        "y z",
        "--flag",
    ]);
    let r = ran(cmd.env("COPIED", "from host").output().unwrap());
    assert_eq!(
        r.stdout,
        lines(&[
            "arg[0]=cli.wasm",
            "arg[1]=x",
            "arg[2]=y z",
            "arg[3]=--flag",
            "env count=3",
            "env A=1",
            "env COPIED=from host",
            "env E=",
        ])
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
}

fn no_env_without_grant(t: Target) {
    // warden's own environment has WARDEN_TEST_HOST_VAR; the guest must not.
    let r = run(&[p(&guest(t, "cli"))]);
    assert_eq!(r.stdout, lines(&["arg[0]=cli.wasm", "env count=0"]));
    assert_eq!(r.code, 0);
}

#[test]
fn env_copy_of_unset_variable_is_a_usage_error() {
    let r = run(&["--env", "NOT_SET_ANYWHERE", p(&guest(Target::P1, "hello"))]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("NOT_SET_ANYWHERE is not set in Warden's environment"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stdout, "");
}

#[test]
fn preview1_proc_exit_code_is_warden_exit_code() {
    let r = run(&[p(&guest(Target::P1, "cli")), "exit=7"]);
    assert_eq!(r.code, 7);
    assert_eq!(
        r.stdout,
        lines(&["arg[0]=cli.wasm", "arg[1]=exit=7", "env count=0"])
    );
}

#[test]
fn p2_std_exit_nonzero_is_exit_err_which_is_1() {
    // Rust's std on wasip2 imports only wasi:cli/exit#exit(result): a
    // non-zero code reaches the host as `err`, which is exit code 1.
    let r = run(&[p(&guest(Target::P2, "cli")), "exit=7"]);
    assert_eq!(r.code, 1);
    let r = run(&[p(&guest(Target::P2, "cli")), "exit=0"]);
    assert_eq!(r.code, 0);
}

#[test]
fn p2_exit_with_code_is_warden_exit_code() {
    // 40 + the number of arguments, argv[0] included.
    let r = run(&[p(&wat("exit_code_p2.wat")), "a", "b"]);
    assert_eq!((r.code, r.stderr.as_str()), (43, ""));
}

#[test]
fn p3_component_runs_and_exit_with_code_is_warden_exit_code() {
    let r = run(&[p(&wat("exit_code_p3.wat")), "a", "b", "c"]);
    assert_eq!((r.code, r.stderr.as_str()), (44, ""));
    let r = run(&["-v", p(&wat("exit_code_p3.wat"))]);
    assert_eq!(r.code, 41);
    assert!(r.stderr.contains("is a WASI 0.3 component"), "{}", r.stderr);
}

// ---------------------------------------------------------------- filesystem

struct FsFixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl FsFixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        std::fs::create_dir(root.join("rw")).unwrap();
        std::fs::create_dir(root.join("ro")).unwrap();
        std::fs::write(root.join("ro/input.txt"), "ro content\n").unwrap();
        std::fs::write(root.join("secret.txt"), "host secret\n").unwrap();
        std::os::unix::fs::symlink("..", root.join("rw/up")).unwrap();
        Self { _tmp: tmp, root }
    }

    fn dir(&self, name: &str) -> String {
        self.root.join(name).to_str().unwrap().to_string()
    }

    fn listing(&self, name: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.root.join(name))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }
}

/// Run the fs guest with `rw` granted read-write at /rw and `ro` granted
/// at /ro with `ro_flag` (`--dir-ro`, or `--dir` for the twin).
fn run_fs(t: Target, ro_flag: &str) -> (FsFixture, Ran) {
    let fx = FsFixture::new();
    let rw = format!("{}::/rw", fx.dir("rw"));
    let ro = format!("{}::/ro", fx.dir("ro"));
    let r = run(&["--dir", &rw, ro_flag, &ro, p(&guest(t, "fs")), "/rw", "/ro"]);
    (fx, r)
}

fn fs_read_only_dir_refuses_writes(t: Target) {
    let (fx, r) = run_fs(t, "--dir-ro");
    assert_eq!(
        r.stdout,
        lines(&[
            "write rw: ok",
            "read back rw: guest was here",
            "read ro: ro content",
            "write ro: PermissionDenied",
            "create in ro: PermissionDenied",
            "mkdir in ro: PermissionDenied",
            "remove in ro: PermissionDenied",
            "escape rw: PermissionDenied",
            "escape ro: PermissionDenied",
            "absolute host path: NotFound",
            "symlink escape: PermissionDenied",
        ])
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Nothing changed on the host but the one granted write.
    assert_eq!(
        std::fs::read_to_string(fx.root.join("ro/input.txt")).unwrap(),
        "ro content\n"
    );
    assert_eq!(fx.listing("ro"), ["input.txt"]);
    assert_eq!(fx.listing("rw"), ["up", "written-by-guest.txt"]);
    assert_eq!(
        std::fs::read_to_string(fx.root.join("secret.txt")).unwrap(),
        "host secret\n"
    );
}

/// The twin: the same directory granted read-write takes the writes.
fn fs_read_write_grant_allows_writes(t: Target) {
    let (fx, r) = run_fs(t, "--dir");
    assert_eq!(
        r.stdout,
        lines(&[
            "write rw: ok",
            "read back rw: guest was here",
            "read ro: ro content",
            "write ro: ok",
            "create in ro: ok",
            "mkdir in ro: ok",
            "remove in ro: ok",
            "escape rw: PermissionDenied",
            "escape ro: PermissionDenied",
            "absolute host path: NotFound",
            "symlink escape: PermissionDenied",
        ])
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(fx.listing("ro"), ["new.txt", "newdir"]);
}

fn fs_nothing_without_grant(t: Target) {
    let fx = FsFixture::new();
    let r = run(&[p(&guest(t, "fs")), &fx.dir("rw"), &fx.dir("ro")]);
    assert!(
        r.stdout
            .starts_with("write rw: NotFound\nread back rw: NotFound\nread ro: NotFound\n"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains(": ok"), "{}", r.stdout);
    assert_eq!(fx.listing("rw"), ["up"]);
}

// ---------------------------------------------------------------- network

/// The allow twin of this test is `policy.rs`'s
/// `net_probe_works_when_everything_it_tries_is_granted`.
#[test]
fn network_is_denied_inside_the_guest_and_nothing_reaches_the_peer() {
    // Real loopback peers on one port: TCP (also the HTTP target) and UDP.
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    let udp = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    let r = run(&[p(&guest(Target::P2, "net_probe")), &port.to_string()]);
    assert_eq!(
        r.stdout,
        lines(&[
            "tcp connect 127.0.0.1: PermissionDenied",
            "tcp connect [::1]: PermissionDenied",
            "tcp bind: PermissionDenied",
            "name lookup: PermissionDenied",
            "udp send: PermissionDenied",
            "http get: ErrorCode::HttpRequestDenied",
        ])
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The operator is told what was refused and by which rule: creating
    // a socket is no network access, every address it is used with is.
    assert!(
        r.stderr
            .contains("warden: denied resolve localhost (rule default-deny)"),
        "{}",
        r.stderr
    );
    // A connect is one decision: the line names the connect (and what
    // would allow it), never the ephemeral bind its grant would cover.
    assert!(
        r.stderr.contains(&format!(
            "warden: denied connect 127.0.0.1:{port} (rule default-deny): no grant allows connect to 127.0.0.1:{port}; network access is denied by default; to allow it: --allow-connect 127.0.0.1:{port}\n"
        )),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("bind 0.0.0.0:0"), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "warden: denied http-request 127.0.0.1:{port} (rule default-deny)"
        )),
        "{}",
        r.stderr
    );
    // And nothing arrived at the peers.
    tcp.set_nonblocking(true).unwrap();
    assert_eq!(
        tcp.accept().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock
    );
    udp.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        udp.recv_from(&mut buf).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock
    );
}

/// A WASI 0.3 guest's UDP is wasmtime-wasi's, linked beside Warden's own
/// TCP in the same `types` interface: a datagram goes where `--allow-udp`
/// grants and, without it, is denied in the guest and never sent.
#[test]
fn a_0_3_guests_udp_goes_where_granted_and_nowhere_else() {
    let peer = common::peers::UdpPeer::start("127.0.0.1");
    let prog = guest(Target::P3, "p3_net");
    let step = format!("udp:{}", peer.addr);
    let r = run(&[p(&prog), &step]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, format!("{step}: send ErrorCode::AccessDenied\n"));
    assert_eq!(peer.received(), 0);
    let grant = peer.addr.to_string();
    let r = run(&["--allow-udp", &grant, p(&prog), &step]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        format!("{step}: ok pong from {}\n", peer.addr),
        "{}",
        r.stderr
    );
    assert_eq!(peer.received(), 1);
}

// ---------------------------------------------------------------- traps

fn trap_reports_reason_and_named_backtrace(t: Target) {
    let r = run(&[p(&guest(t, "trap"))]);
    assert_eq!(r.code, 134);
    assert_eq!(r.stdout, "about to trap\n");
    let mut err = r.stderr.lines();
    assert_eq!(
        err.next(),
        Some("warden: guest trapped: wasm trap: wasm `unreachable` instruction executed")
    );
    assert_eq!(err.next(), Some("wasm backtrace:"));
    let first_frame = err.next().unwrap();
    assert!(first_frame.contains("trap::guest_gives_up"), "{}", r.stderr);
    // No host-side detail unless asked for.
    assert!(!r.stderr.contains("full error"), "{}", r.stderr);
    assert!(!r.stderr.contains("Caused by"), "{}", r.stderr);
}

#[test]
fn trap_with_verbose_shows_the_full_error() {
    let r = run(&["--verbose", p(&guest(Target::P1, "trap"))]);
    assert_eq!(r.code, 134);
    assert!(r.stderr.contains("warden: full error:"), "{}", r.stderr);
}

// ---------------------------------------------------------------- limits

fn memory_limit_refuses_growth_inside_the_guest(t: Target) {
    // The limit covers linear memory and the guest's function table (8
    // bytes an element), so the last 64 KiB page of 64 MiB does not fit.
    let r = run(&["--max-memory", "64MiB", p(&guest(t, "memory_hog")), "2048"]);
    assert_eq!(
        r.stdout,
        lines(&["memory.grow refused at 1023 pages", "try_reserve: refused"])
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("--max-memory refused"), "{}", r.stderr);
}

fn memory_under_the_limit_grows(t: Target) {
    let r = run(&["--max-memory", "256MiB", p(&guest(t, "memory_hog")), "2048"]);
    assert_eq!(r.stdout, "grew to 2048 pages\n");
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
}

#[test]
fn initial_memory_over_the_limit_is_a_start_error() {
    // The module asks for 2 MiB up front; the limit is 1 MiB.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.wat");
    std::fs::write(&file, r#"(module (memory 32) (func (export "_start")))"#).unwrap();
    let r = run(&["--max-memory", "1MiB", p(&file)]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.starts_with("warden: error: cannot start "),
        "{}",
        r.stderr
    );
}

/// Ctrl-C stops even a guest spinning in wasm code (which never yields to
/// Warden's runtime): Warden waits for signals in a thread of its own.
#[test]
fn sigint_stops_a_spinning_guest() {
    use std::io::BufRead;
    let mut child = run_cmd(&["-v", p(&guest(Target::P1, "busy")), "forever"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("ready to start") {
        let mut l = String::new();
        assert_ne!(err.read_line(&mut l).unwrap(), 0, "no start line: {seen}");
        seen.push_str(&l);
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let status = wait_bounded(
        &mut child,
        std::time::Duration::from_secs(20),
        "SIGINT stops it",
    );
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(rest.ends_with("warden: stopped by SIGINT\n"), "{rest}");
}

fn timeout_stops_a_busy_guest(t: Target) {
    let r = run(&["--timeout", "300ms", p(&guest(t, "busy")), "forever"]);
    assert_eq!(r.code, 124);
    assert_eq!(r.stderr, "warden: guest stopped: --timeout 300ms reached\n");
    assert_eq!(r.stdout, "");
}

fn timeout_stops_a_guest_blocked_in_the_host(t: Target) {
    let r = run(&["--timeout", "300ms", p(&guest(t, "sleepy")), "60000"]);
    assert_eq!(r.code, 124);
    assert_eq!(r.stderr, "warden: guest stopped: --timeout 300ms reached\n");
}

fn within_timeout_and_fuel_the_guest_finishes(t: Target) {
    let r = run(&[
        "--timeout",
        "20s",
        "--fuel",
        "100000000",
        p(&guest(t, "busy")),
        "1000",
    ]);
    assert_eq!(r.stdout, "done after 1000 iterations\n");
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    let r = run(&["--timeout", "20s", p(&guest(t, "sleepy")), "10"]);
    assert_eq!(r.stdout, "woke after 10ms\n");
    assert_eq!(r.code, 0);
}

fn fuel_stops_a_busy_guest(t: Target) {
    let r = run(&["--fuel", "1000000", p(&guest(t, "busy")), "forever"]);
    assert_eq!(r.code, 124);
    assert_eq!(
        r.stderr,
        "warden: guest stopped: --fuel 1000000 exhausted\n"
    );
}

// ---------------------------------------------------------------- compile cache

fn cache_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn verbose_run(cache: &Path, file: &Path) -> Ran {
    let mut cmd = warden();
    cmd.args(["run", "-v", "--cache-dir", p(cache), p(file)]);
    ran(cmd.output().unwrap())
}

fn second_start_does_not_compile(t: Target) {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let hello = guest(t, "hello");
    let first = verbose_run(&cache, &hello);
    assert_eq!(first.stdout, "hello from a warden guest\n");
    assert!(
        first.stderr.contains("warden: cache miss: "),
        "{}",
        first.stderr
    );
    assert!(
        first.stderr.contains("warden: compiled in "),
        "{}",
        first.stderr
    );
    assert_eq!(cache_entries(&cache).len(), 1);

    let second = verbose_run(&cache, &hello);
    assert_eq!(second.stdout, "hello from a warden guest\n");
    assert!(
        second.stderr.contains("warden: cache hit: "),
        "{}",
        second.stderr
    );
    assert!(!second.stderr.contains("compiled in"), "{}", second.stderr);
}

#[test]
fn corrupt_cache_entry_is_ignored_and_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let hello = guest(Target::P1, "hello");
    verbose_run(&cache, &hello);
    let entry = cache_entries(&cache).pop().unwrap();
    let mut bytes = std::fs::read(&entry).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&entry, &bytes).unwrap();

    let r = verbose_run(&cache, &hello);
    assert_eq!(r.stdout, "hello from a warden guest\n");
    assert_eq!(r.code, 0);
    assert!(
        r.stderr
            .contains("checksum mismatch (corrupt or foreign entry); recompiling"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("compiled in"), "{}", r.stderr);

    let r = verbose_run(&cache, &hello);
    assert!(r.stderr.contains("cache hit"), "{}", r.stderr);
}

#[test]
fn foreign_cache_entry_is_ignored_and_replaced() {
    // An entry compiled for another engine configuration (with fuel) put in
    // place of the plain entry must not be loaded.
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let hello = guest(Target::P1, "hello");
    verbose_run(&cache, &hello);
    let plain = cache_entries(&cache).pop().unwrap();
    let mut cmd = warden();
    cmd.args([
        "run",
        "--fuel",
        "100000000",
        "--cache-dir",
        p(&cache),
        p(&hello),
    ]);
    assert_eq!(ran(cmd.output().unwrap()).code, 0);
    let fuel = cache_entries(&cache)
        .into_iter()
        .find(|e| *e != plain)
        .unwrap();
    std::fs::copy(&fuel, &plain).unwrap();

    let r = verbose_run(&cache, &hello);
    assert_eq!(r.stdout, "hello from a warden guest\n");
    assert!(
        r.stderr.contains("corrupt or foreign entry"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("compiled in"), "{}", r.stderr);
}

#[test]
fn no_cache_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let mut cmd = warden();
    cmd.env("XDG_CACHE_HOME", p(&cache))
        .env("HOME", p(tmp.path()));
    cmd.args(["run", "--no-cache", "-v", p(&guest(Target::P1, "hello"))]);
    let r = ran(cmd.output().unwrap());
    assert_eq!(r.stdout, "hello from a warden guest\n");
    assert!(r.stderr.contains("compile cache disabled"), "{}", r.stderr);
    assert!(!cache.exists());
}

#[test]
fn default_cache_is_under_the_user_cache_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = warden();
    cmd.env("XDG_CACHE_HOME", p(tmp.path()))
        .env("HOME", p(tmp.path()));
    cmd.args(["run", p(&guest(Target::P1, "hello"))]);
    assert_eq!(ran(cmd.output().unwrap()).code, 0);
    assert_eq!(cache_entries(&tmp.path().join("warden")).len(), 1);
}

// ---------------------------------------------------------------- what runs and what does not

fn usage_error(file: &Path) -> String {
    let r = run(&[p(file)]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(r.stdout, "");
    assert_eq!(r.stderr.lines().count(), 1, "one line: {}", r.stderr);
    r.stderr
}

#[test]
fn unsupported_files_get_one_clear_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let elf = dir.path().join("prog");
    std::fs::write(&elf, b"\x7fELF\x02\x01\x01\x00\x00\x00").unwrap();
    assert_eq!(
        usage_error(&elf),
        format!(
            "warden: error: {}: not WebAssembly (no \\0asm header and not WebAssembly text; starts with bytes 7f 45 4c 46 02 01 01 00); supported: WASI preview1 core modules (.wasm or .wat), components exporting wasi:cli/run@0.2.x or @0.3.x, and HTTP components exporting wasi:http/incoming-handler@0.2.x or wasi:http/handler@0.3.x\n",
            p(&elf)
        )
    );

    let proxy = dir.path().join("proxy.wat");
    std::fs::write(
        &proxy,
        r#"(component
            (core module $m (func (export "handle")))
            (core instance $i (instantiate $m))
            (func $h (canon lift (core func $i "handle")))
            (instance $ih (export "handle" (func $h)))
            (export "wasi:http/incoming-handler@0.2.3" (instance $ih)))"#,
    )
    .unwrap();
    assert_eq!(
        usage_error(&proxy),
        format!(
            "warden: error: {}: a wasi:http/proxy 0.2 component: it handles HTTP requests, so it is served, not run\n",
            p(&proxy)
        )
    );

    let missing = dir.path().join("missing.wasm");
    assert_eq!(
        usage_error(&missing),
        format!(
            "warden: error: cannot read {}: No such file or directory (os error 2)\n",
            p(&missing)
        )
    );

    let reactor = dir.path().join("reactor.wat");
    std::fs::write(&reactor, r#"(module (func (export "_initialize")))"#).unwrap();
    assert_eq!(
        usage_error(&reactor),
        format!(
            "warden: error: cannot start {}: the module exports no `_start` function, so it is not a WASI command\n",
            p(&reactor)
        )
    );

    let foreign_import = dir.path().join("env.wat");
    std::fs::write(
        &foreign_import,
        r#"(module (import "env" "launch" (func)) (func (export "_start")))"#,
    )
    .unwrap();
    let e = usage_error(&foreign_import);
    assert!(
        e.starts_with(&format!(
            "warden: error: cannot start {}: ",
            p(&foreign_import)
        )),
        "{e}"
    );
    assert!(e.contains("env::launch"), "{e}");

    let broken = dir.path().join("broken.wasm");
    std::fs::write(&broken, b"\0asm\x01\x00\x00\x00\x01\xff\xff").unwrap();
    let e = usage_error(&broken);
    assert!(
        e.starts_with(&format!("warden: error: {}: cannot compile: ", p(&broken))),
        "{e}"
    );
}

// ---------------------------------------------------------------- the command line itself

#[test]
fn version_prints_name_and_version() {
    let out = warden().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("warden {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_explains_every_run_flag_with_an_example() {
    let out = warden().args(["help", "run"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--dir ",
        "--dir-ro",
        "--env",
        "--max-memory",
        "--timeout",
        "--fuel",
        "--cache-dir",
        "--no-cache",
        "--verbose",
        "--manifest",
        "--allow-connect",
        "--allow-listen",
        "--allow-udp",
        "--allow-resolve",
        "--deny",
        "--dns-server",
        "--audit",
    ] {
        assert!(help.contains(flag), "{flag} missing from help:\n{help}");
    }
    // Examples may wrap across lines.
    let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for example in [
        "--allow-connect api.example.com:443",
        "--allow-listen 127.0.0.1:8080",
        "--allow-udp 127.0.0.1:5353",
        "--allow-resolve *.example.com",
        "--deny 169.254.0.0/16:*",
        "--dns-server 127.0.0.1:53",
        "--audit audit.jsonl",
        "--manifest warden.toml",
        "--dir ./data::/data",
        "--max-memory 64MiB",
        "--timeout 500ms",
        "--fuel 100000000",
        "--no-cache app.wasm",
        "-v app.wasm",
        "Exit status",
    ] {
        assert!(
            flat.contains(example),
            "{example} missing from help:\n{help}"
        );
    }
    let out = warden().args(["run", "--help"]).output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), help);
    let top = warden().arg("--help").output().unwrap();
    assert!(String::from_utf8(top.stdout).unwrap().contains("run  "));
}

#[test]
fn bad_flag_values_exit_2_naming_the_flag() {
    let hello = guest(Target::P1, "hello");
    for (flag, value, says) in [
        ("--max-memory", "64XB", "unknown unit `XB`"),
        ("--timeout", "5", "`5` has no unit"),
        ("--fuel", "lots", "not a whole number"),
        (
            "--dir",
            "/no/such/dir",
            "/no/such/dir: No such file or directory",
        ),
    ] {
        let r = run(&[flag, value, p(&hello)]);
        assert_eq!(r.code, 2, "{flag} {value}");
        assert!(r.stderr.contains(flag), "{}", r.stderr);
        assert!(r.stderr.contains(says), "{}", r.stderr);
        assert_eq!(r.stdout, "");
    }
    let r = ran(warden()
        .args(["run", "--frobnicate", p(&hello)])
        .output()
        .unwrap());
    assert_eq!(r.code, 2);
    let r = ran(warden().args(["launch"]).output().unwrap());
    assert_eq!(r.code, 2);
}

/// A preview1 text module that copies stdin to stdout.
const CAT_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 1024))
    (loop $more
      (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
      (if (i32.load (i32.const 8))
        (then
          (i32.store (i32.const 16) (i32.const 64))
          (i32.store (i32.const 20) (i32.load (i32.const 8)))
          (drop (call $write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))
          (br $more))))))"#;

fn cat_guest(dir: &tempfile::TempDir) -> PathBuf {
    let cat = dir.path().join("cat.wat");
    std::fs::write(&cat, CAT_WAT).unwrap();
    cat
}

#[test]
fn stdin_is_the_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = run_cmd(&[p(&cat_guest(&dir))])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"piped through the guest\n")
        .unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(out, "piped through the guest\n");
}

#[test]
fn timeout_stops_a_guest_blocked_reading_stdin() {
    // stdin stays open and silent: the guest blocks in fd_read until the
    // timeout, and warden must not wait for that read to finish.
    let dir = tempfile::tempdir().unwrap();
    let mut child = run_cmd(&["--timeout", "300ms", p(&cat_guest(&dir))])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take();
    let status = wait_bounded(
        &mut child,
        std::time::Duration::from_secs(30),
        "after --timeout while the guest read stdin",
    );
    drop(stdin);
    assert_eq!(status.code(), Some(124));
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(err, "warden: guest stopped: --timeout 300ms reached\n");
}

#[test]
fn bundled_example_runs_as_the_readme_says() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello.wat");
    let r = run(&[p(&example)]);
    assert_eq!(
        r.stdout,
        lines(&[
            "Hello from a Warden guest!",
            "opening /etc/passwd: refused, as nothing was granted",
        ])
    );
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
}

#[test]
fn the_manifest_limits_apply_and_flags_win_over_them() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("warden.toml");
    std::fs::write(&manifest, "version = 1\n[limits]\ntimeout = \"300ms\"\n").unwrap();
    let busy = guest(Target::P1, "busy");
    let r = run(&["--manifest", p(&manifest), p(&busy), "forever"]);
    assert_eq!(r.code, 124, "{}", r.stderr);
    // The flag wins: a longer time lets the guest finish.
    let r = run(&[
        "--manifest",
        p(&manifest),
        "--timeout",
        "20s",
        p(&busy),
        "1000",
    ]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "done after 1000 iterations\n")
    );
    // A limit that does not read is an error naming its key, before the run.
    std::fs::write(&manifest, "version = 1\n[limits]\ntimeout = \"5\"\n").unwrap();
    let r = run(&["--manifest", p(&manifest), p(&busy), "1"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("limits.timeout: `5` has no unit"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stdout, "");
}
