//! Plugs, worlds and imports nothing provides, end to end, with real
//! components built by wit-bindgen (test-programs/wit/guests.wit's
//! greeter worlds): a guest importing a custom interface, a mock plug, a
//! bridge over another plug, a bridge over wasi:http egress (decided and
//! audited by the gate), the operator's world, and a served app with a
//! plug. Each allow has its deny twin.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;

use common::serving::{exchange, serve_cmd, serve_manifest, stop};
use common::{p, run};
use warden_test_artifacts::{Target, guest};

fn g(name: &str) -> PathBuf {
    guest(Target::P2, name)
}

const MISSING_GREETER: &str =
    "  warden:test-programs/greeter (satisfy it with a component that exports it: --plug FILE)\n";

#[test]
fn an_import_nothing_provides_is_named_and_a_mock_plug_satisfies_it() {
    let greet = g("greet");
    let r = run(&[p(&greet), "Ada"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(r.stdout, "");
    assert_eq!(
        r.stderr,
        format!(
            "warden: error: {}: nothing provides what it imports, so it cannot start:\n{MISSING_GREETER}",
            greet.display()
        )
    );
    let mock = g("greeter_mock");
    let r = run(&["--plug", p(&mock), p(&greet), "Ada", "Bob"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "hello, Ada (mock)\nhello, Bob (mock)\n");
}

#[test]
fn plugs_chain_and_each_missing_link_is_named() {
    let (greet, loud, shout) = (g("greet"), g("greeter_loud"), g("shout_mock"));
    let r = run(&["--plug", p(&loud), "--plug", p(&shout), p(&greet), "Ada"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "HELLO, ADA!\n");
    // The bridge alone: its own import is what nothing provides now.
    let r = run(&["--plug", p(&loud), p(&greet), "Ada"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("\n  warden:test-programs/shout (satisfy it with"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("greeter"), "{}", r.stderr);
}

#[test]
fn a_plug_that_satisfies_nothing_is_an_error_naming_its_exports() {
    let (greet, mock, shout) = (g("greet"), g("greeter_mock"), g("shout_mock"));
    let r = run(&["--plug", p(&mock), "--plug", p(&shout), p(&greet), "Ada"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(r.stdout, "");
    assert!(
        r.stderr.starts_with(&format!(
            "warden: error: plug {}: it satisfies nothing",
            shout.display()
        )),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("it exports wasi:cli/run@0.2.0, warden:test-programs/shout"),
        "{}",
        r.stderr
    );
    // A preview1 module has no component imports to plug.
    let r = run(&["--plug", p(&mock), p(&guest(Target::P1, "hello"))]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("this is a preview1 module"),
        "{}",
        r.stderr
    );
}

fn sha256(path: &std::path::Path) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_pinned_plug_runs_and_one_with_another_digest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (greet, mock, shout) = (g("greet"), g("greeter_mock"), g("shout_mock"));
    let manifest = dir.path().join("plugs.toml");
    let write = |digest: &str| {
        std::fs::write(
            &manifest,
            format!(
                "version = 1\n[[plug]]\nfile = \"{}\"\nsha256 = \"{digest}\"\n",
                p(&mock)
            ),
        )
        .unwrap()
    };
    write(&sha256(&mock));
    let r = run(&["--manifest", p(&manifest), p(&greet), "Ada"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "hello, Ada (mock)\n");
    // `warden check` lists it with its digest and what it exports.
    let checked = common::ran(
        common::warden()
            .args(["check", p(&manifest)])
            .output()
            .unwrap(),
    );
    assert_eq!(checked.code, 0, "{}", checked.stderr);
    assert!(
        checked.stdout.contains(&format!(
            "plug {}: sha256 {} (pinned), exports wasi:cli/run@0.2.0, warden:test-programs/greeter\n",
            mock.display(),
            sha256(&mock)
        )),
        "{}",
        checked.stdout
    );
    // The twin: pinned to another file's digest, it is refused.
    write(&sha256(&shout));
    let r = run(&["--manifest", p(&manifest), p(&greet), "Ada"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(r.stdout, "");
    assert!(
        r.stderr.contains(&format!(
            "its sha256 is {}, not the {} it is pinned to",
            sha256(&mock),
            sha256(&shout)
        )),
        "{}",
        r.stderr
    );
    // A digest that is not one is a manifest error, with where it is.
    write("12ab");
    let r = run(&["--manifest", p(&manifest), p(&greet), "Ada"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("plugs.toml:4:10: sha256: `12ab` is not a SHA-256 digest"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_composition_is_cached_like_compiled_code() {
    let cache = tempfile::tempdir().unwrap();
    let (greet, mock) = (g("greet"), g("greeter_mock"));
    let go = || {
        let out = common::warden()
            .args([
                "run",
                "-v",
                "--cache-dir",
                p(cache.path()),
                "--plug",
                p(&mock),
                p(&greet),
                "Ada",
            ])
            .output()
            .unwrap();
        common::ran(out)
    };
    let first = go();
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(
        first.stderr.contains("composed with its plugs in"),
        "{}",
        first.stderr
    );
    assert!(first.stderr.contains("cache miss"), "{}", first.stderr);
    let second = go();
    assert_eq!(second.stdout, "hello, Ada (mock)\n");
    assert!(second.stderr.contains("cache hit"), "{}", second.stderr);
    assert!(!second.stderr.contains("composed"), "{}", second.stderr);
}

/// An HTTP server on loopback answering `hello, NAME (over http)` to
/// `GET /greet?name=NAME`, for at most `n` requests; the request lines it
/// got.
fn greeting_server(n: usize) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let mut seen = Vec::new();
        listener.set_nonblocking(false).unwrap();
        for stream in listener.incoming().take(n) {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap() == 0 || header == "\r\n" {
                    break;
                }
            }
            let name = line
                .split("name=")
                .nth(1)
                .unwrap_or("")
                .split(' ')
                .next()
                .unwrap_or("")
                .to_string();
            let body = format!("hello, {name} (over http)");
            write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            seen.push(line.trim_end().to_string());
        }
        seen
    });
    (port, handle)
}

#[test]
fn a_bridge_plugs_egress_is_decided_and_audited_as_the_instances() {
    let (port, server) = greeting_server(1);
    let dir = tempfile::tempdir().unwrap();
    let (greet, bridge) = (g("greet"), g("greeter_http"));
    let url = format!("GREETER_URL=http://127.0.0.1:{port}/greet");
    let audit = dir.path().join("audit.jsonl");
    // Denied: the plug gets nothing of its own.
    let r = run(&[
        "--audit",
        p(&audit),
        "--env",
        &url,
        "--plug",
        p(&bridge),
        p(&greet),
        "Ada",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "error: ErrorCode::HttpRequestDenied\n");
    assert!(
        r.stderr.contains(&format!(
            "warden: denied http-request 127.0.0.1:{port} (rule default-deny)"
        )),
        "{}",
        r.stderr
    );
    let denied = common::serving::lines_of(&audit);
    assert!(
        denied
            .iter()
            .any(|l| l["event"] == "http-request" && l["decision"] == "deny"),
        "{denied:?}"
    );
    // Allowed: the same request, granted, reaches the server.
    let grant = format!("127.0.0.1:{port}");
    let r = run(&[
        "--audit",
        p(&audit),
        "--allow-connect",
        &grant,
        "--env",
        &url,
        "--plug",
        p(&bridge),
        p(&greet),
        "Ada",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "hello, Ada (over http)\n");
    assert_eq!(
        server.join().unwrap(),
        vec!["GET /greet?name=Ada HTTP/1.1".to_string()]
    );
    let all = common::serving::lines_of(&audit);
    assert!(
        all.iter()
            .any(|l| l["event"] == "http-request" && l["decision"] == "allow"),
        "{all:?}"
    );
}

/// The interfaces a std command uses, and no sockets.
const NO_SOCKETS: [&str; 10] = [
    "--world-import",
    "wasi:cli/*",
    "--world-import",
    "wasi:io/*",
    "--world-import",
    "wasi:clocks/*",
    "--world-import",
    "wasi:random/*",
    "--world-import",
    "wasi:filesystem/*",
];

#[test]
fn a_world_refuses_what_it_does_not_name_and_admits_what_it_does() {
    let mut args: Vec<&str> = NO_SOCKETS.to_vec();
    let client = g("net_client");
    args.extend([p(&client), "resolve:localhost"]);
    let r = run(&args);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(r.stdout, "");
    assert!(
        r.stderr
            .contains("it imports what the operator's world does not allow, so it cannot start:\n")
            && r.stderr.contains("\n  wasi:sockets/network@"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("--world-import PATTERN"), "{}", r.stderr);
    // Its twin: a guest without sockets runs under the same world.
    let mut args: Vec<&str> = NO_SOCKETS.to_vec();
    let hello = g("hello");
    args.push(p(&hello));
    let r = run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "hello from a warden guest\n");
    // A world is checked after the plugs: the greeter import a plug
    // satisfies is not the component's any more.
    let mut args: Vec<&str> = NO_SOCKETS.to_vec();
    let (greet, mock) = (g("greet"), g("greeter_mock"));
    args.extend(["--plug", p(&mock), p(&greet), "Ada"]);
    let r = run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The manifest's [world] says the same.
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("world.toml");
    std::fs::write(
        &manifest,
        "version = 1\n[world]\nimports = [\"wasi:cli/*\", \"wasi:io/*\", \"wasi:clocks/*\", \"wasi:random/*\", \"wasi:filesystem/*\"]\n",
    )
    .unwrap();
    let r = run(&["--manifest", p(&manifest), p(&client), "resolve:localhost"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("\n  wasi:sockets/"), "{}", r.stderr);
    let r = run(&["--manifest", p(&manifest), p(&hello)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // A pattern that does not read is refused with what would.
    let r = run(&["--world-import", "wasi:cli/ru*", p(&hello)]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("such as wasi:cli/*"), "{}", r.stderr);
}

#[test]
fn a_world_applies_to_0_3_components_too() {
    let prog = guest(Target::P3, "p3_net");
    let mut args: Vec<&str> = NO_SOCKETS.to_vec();
    args.extend([p(&prog), "resolve:localhost"]);
    let r = run(&args);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("\n  wasi:sockets/"), "{}", r.stderr);
    let r = run(&["--world-import", "wasi:*/*", p(&prog), "time:1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn a_served_app_gets_its_plug_and_without_it_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(g("greet_service"), dir.path().join("svc.wasm")).unwrap();
    std::fs::copy(g("greeter_mock"), dir.path().join("mock.wasm")).unwrap();
    let manifest = dir.path().join("apps.toml");
    std::fs::write(
        &manifest,
        "version = 1\n\n[[app]]\nname = \"greet\"\ncomponent = \"svc.wasm\"\nplugs = [{ file = \"mock.wasm\" }]\n",
    )
    .unwrap();
    let server = serve_manifest(&manifest);
    let r = exchange(
        server.port,
        b"GET /Ada HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "hello, Ada (mock)\n");
    stop(server);
    // Without the plug the server does not start, and says why.
    let out = serve_cmd(&["--addr", "127.0.0.1:0", p(&dir.path().join("svc.wasm"))])
        .output()
        .unwrap();
    let r = common::ran(out);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains(MISSING_GREETER), "{}", r.stderr);
}

#[test]
fn a_0_3_guest_takes_a_0_2_plug_and_is_refused_without_it() {
    let prog = guest(Target::P3, "p3_greet");
    let r = run(&[p(&prog), "Ada"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains(MISSING_GREETER), "{}", r.stderr);
    let (loud, shout) = (g("greeter_loud"), g("shout_mock"));
    let r = run(&["--plug", p(&loud), "--plug", p(&shout), p(&prog), "Ada"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "HELLO, ADA!\n");
}

#[test]
fn a_wit_world_admits_what_it_imports_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let wit = dir.path().join("wit");
    std::fs::create_dir_all(wit.join("deps")).unwrap();
    std::fs::write(
        wit.join("tenant.wit"),
        "package op:tenant;\nworld narrow { import warden:test-programs/greeter; }\nworld none {}\n",
    )
    .unwrap();
    std::fs::write(
        wit.join("deps/greeter.wit"),
        "package warden:test-programs;\ninterface greeter { greet: func(name: string) -> string; }\n",
    )
    .unwrap();
    let (greet, mock) = (g("greet"), g("greeter_mock"));
    let narrow = format!("{}:narrow", p(&wit));
    // The WIT world admits greeter: past the world, it is what nothing
    // provides yet, and a plug runs it.
    let r = run(&[
        "--world",
        &narrow,
        "--world-import",
        "wasi:*/*",
        p(&greet),
        "Ada",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains(MISSING_GREETER), "{}", r.stderr);
    let r = run(&[
        "--world",
        &narrow,
        "--world-import",
        "wasi:*/*",
        "--plug",
        p(&mock),
        p(&greet),
        "Ada",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "hello, Ada (mock)\n");
    // A world that imports nothing admits nothing of it.
    let none = format!("{}:none", p(&wit));
    let r = run(&[
        "--world",
        &none,
        "--world-import",
        "wasi:*/*",
        p(&greet),
        "Ada",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("does not allow, so it cannot start:\n  warden:test-programs/greeter\n"),
        "{}",
        r.stderr
    );
    // A package with two worlds needs one named.
    let r = run(&["--world", p(&wit), p(&greet), "Ada"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--world "), "{}", r.stderr);
    assert!(r.stderr.contains("multiple worlds"), "{}", r.stderr);
}
