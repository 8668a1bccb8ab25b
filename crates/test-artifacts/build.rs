//! Builds the guest programs in `test-programs/` for both WASI targets, in
//! their own target directory, before any test that uses them compiles.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let programs = manifest_dir
        .join("../../test-programs")
        .canonicalize()
        .unwrap();
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join("guests");
    for path in [
        "src",
        "wit",
        "Cargo.toml",
        "Cargo.lock",
        ".cargo/config.toml",
    ] {
        println!("cargo:rerun-if-changed={}", programs.join(path).display());
    }

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // WASI 0.2 and 0.3 programs are both built for wasm32-wasip2 (see
    // test-programs/Cargo.toml's `p3` feature).
    for (target, features) in [("wasm32-wasip1", "p1"), ("wasm32-wasip2", "p2,p3")] {
        let mut cmd = Command::new(&cargo);
        // Run from test-programs/ so its .cargo/config.toml applies.
        cmd.current_dir(&programs)
            .arg("build")
            .arg("--release")
            .arg("--locked")
            .arg("--target")
            .arg(target)
            .arg("--manifest-path")
            .arg(programs.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&out);
        if !features.is_empty() {
            cmd.arg("--features").arg(features);
        }
        // The outer build's flags and wrappers (clippy-driver under `cargo
        // clippy`, host RUSTFLAGS) are not for the guests.
        for var in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTC_WORKSPACE_WRAPPER",
            "CARGO_BUILD_TARGET",
            "CARGO_TARGET_DIR",
        ] {
            cmd.env_remove(var);
        }
        let status = cmd
            .status()
            .expect("running cargo to build the test guests");
        assert!(
            status.success(),
            "building the test guests for {target} failed; is the target installed? \
             Run: rustup target add wasm32-wasip1 wasm32-wasip2"
        );
    }
    build_c_guests(&programs.join("c"), &out.join("c"));
    println!("cargo:rustc-env=WARDEN_GUESTS_DIR={}", out.display());
}

/// C guests: clang with Debian's wasi-libc, as ../../shared/TOOLCHAIN.md
/// describes (`apt-get install clang-19 lld-19 wasi-libc
/// libclang-rt-19-dev-wasm32`). `WARDEN_CLANG` overrides the compiler.
fn build_c_guests(src: &std::path::Path, out: &std::path::Path) {
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-env-changed=WARDEN_CLANG");
    let clang = std::env::var_os("WARDEN_CLANG").unwrap_or_else(|| "clang-19".into());
    std::fs::create_dir_all(out).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "c") {
            continue;
        }
        let wasm = out.join(path.file_stem().unwrap()).with_extension("wasm");
        // Every program is linked with lib/warden_socket.c, the POSIX socket
        // calls on Warden's preview1 socket extension (unused ones drop out).
        let lib = src.join("lib");
        let status = Command::new(&clang)
            .args(["--target=wasm32-wasi", "-O2", "-Wall", "-Werror", "-o"])
            .arg(&wasm)
            .arg("-I")
            .arg(&lib)
            .arg(&path)
            .arg(lib.join("warden_socket.c"))
            .status()
            .unwrap_or_else(|e| {
                panic!(
                    "running {} to build {}: {e}; install it with: \
                     apt-get install clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32",
                    clang.to_string_lossy(),
                    path.display()
                )
            });
        assert!(
            status.success(),
            "building {} with clang failed",
            path.display()
        );
    }
}
