//! The built-in providers, end to end with real wit-bindgen components:
//! `wasi:config/store` from `--config` and `[config]`, and the in-memory
//! `wasi:keyvalue` from `--keyvalue` and `[keyvalue]` (bounded; an
//! instance's own under `run`, an app's shared by its instances under
//! `serve`). The twin of each: without the grant, the component is
//! refused by name.

mod common;

use common::serving::{exchange, serve_cmd, serve_manifest, stop};
use common::{p, run};
use warden_test_artifacts::{Target, guest};

#[test]
fn config_values_come_from_flags_and_the_manifest_and_nothing_without_them() {
    let prog = guest(Target::P2, "config_get");
    let r = run(&[p(&prog), "greeting"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(r.stdout, "");
    assert!(
        r.stderr.contains(
            "\n  wasi:config/store@0.2.0-rc.1 (satisfy it with Warden's config store: --config KEY=VALUE"
        ),
        "{}",
        r.stderr
    );
    let r = run(&[
        "--config",
        "greeting=hello",
        "--config",
        "empty=",
        p(&prog),
        "greeting",
        "empty",
        "nope",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "greeting=hello\nempty=\nnope unset\nall 2\n");
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("config.toml");
    std::fs::write(
        &manifest,
        "version = 1\n[config]\ngreeting = \"hi\"\nmode = \"test\"\n",
    )
    .unwrap();
    let r = run(&["--manifest", p(&manifest), p(&prog), "greeting", "mode"]);
    assert_eq!(r.stdout, "greeting=hi\nmode=test\nall 2\n", "{}", r.stderr);
    // A flag wins for its key and keeps the others.
    let r = run(&[
        "--manifest",
        p(&manifest),
        "--config",
        "greeting=hello",
        p(&prog),
        "greeting",
        "mode",
    ]);
    assert_eq!(
        r.stdout, "greeting=hello\nmode=test\nall 2\n",
        "{}",
        r.stderr
    );
    // check names the keys, never the values.
    let checked = common::ran(
        common::warden()
            .args(["check", p(&manifest)])
            .output()
            .unwrap(),
    );
    assert!(
        checked
            .stdout
            .contains("config wasi:config/store with keys greeting, mode\n"),
        "{}",
        checked.stdout
    );
    assert!(!checked.stdout.contains("test"), "{}", checked.stdout);
}

#[test]
fn the_keyvalue_store_works_is_bounded_and_is_the_instances_own() {
    let prog = guest(Target::P2, "kv");
    let r = run(&[p(&prog), "get:a"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("\n  wasi:keyvalue/store@0.2.0-draft (satisfy it with Warden's in-memory store: --keyvalue memory"),
        "{}",
        r.stderr
    );
    let r = run(&[
        "--keyvalue",
        "memory",
        p(&prog),
        "set:a=1",
        "get:a",
        "incr:n",
        "incr:n",
        "list",
        "get:zz",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "set:a=1: ok\nget:a: 1\nincr:n: 1\nincr:n: 2\nlist: a,n\nget:zz: none\n"
    );
    // Another run starts with an empty store.
    let r = run(&["--keyvalue", "memory", p(&prog), "get:a"]);
    assert_eq!(r.stdout, "get:a: none\n");
    // Bounded: each 100-byte value under a 5-byte key counts 169 bytes
    // (with 64 of bookkeeping), so 1 KiB holds six, and the seventh fails
    // inside the guest.
    let r = run(&["--keyvalue", "memory:1KiB", p(&prog), "fill:100"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .starts_with("fill:100: full after 6: Error::Other(\"the key-value store is full"),
        "{}",
        r.stdout
    );
    let r = run(&["--keyvalue", "redis://127.0.0.1", p(&prog), "get:a"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("expected memory or memory:SIZE"),
        "{}",
        r.stderr
    );
}

#[test]
fn an_apps_instances_share_its_store_and_another_app_has_its_own() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        guest(Target::P2, "kv_counter"),
        dir.path().join("counter.wasm"),
    )
    .unwrap();
    let manifest = dir.path().join("apps.toml");
    std::fs::write(
        &manifest,
        "version = 1\n\n\
         [[app]]\nname = \"one\"\ncomponent = \"counter.wasm\"\npath = \"/one\"\nkeyvalue = \"memory\"\n\n\
         [[app]]\nname = \"two\"\ncomponent = \"counter.wasm\"\npath = \"/two\"\nkeyvalue = \"memory:64KiB\"\n",
    )
    .unwrap();
    let server = serve_manifest(&manifest);
    let ask = |path: &str| {
        exchange(
            server.port,
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .body
    };
    // Each request is a fresh instance; the count goes on.
    assert_eq!(ask("/one"), "1\n");
    assert_eq!(ask("/one"), "2\n");
    assert_eq!(ask("/one"), "3\n");
    assert_eq!(ask("/two"), "1\n");
    assert_eq!(ask("/one"), "4\n");
    stop(server);
    // Without a store the server does not start, and says why.
    let out = serve_cmd(&["--addr", "127.0.0.1:0", p(&dir.path().join("counter.wasm"))])
        .output()
        .unwrap();
    let r = common::ran(out);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--keyvalue memory"), "{}", r.stderr);
}
