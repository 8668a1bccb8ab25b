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
    for path in ["src", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", programs.join(path).display());
    }

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    for (target, features) in [("wasm32-wasip1", "p1"), ("wasm32-wasip2", "p2")] {
        let mut cmd = Command::new(&cargo);
        cmd.arg("build")
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
    println!("cargo:rustc-env=WARDEN_GUESTS_DIR={}", out.display());
}
