//! Where Warden's guest test programs are, once this crate's build script
//! has compiled them (see `test-programs/`).

use std::path::PathBuf;

/// The WASI target a guest was built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `wasm32-wasip1`: a preview1 core module.
    P1,
    /// `wasm32-wasip2`: a WASI 0.2 component.
    P2,
    /// A WASI 0.3 component (built for `wasm32-wasip2`, exporting
    /// `wasi:cli/run@0.3.0`).
    P3,
}

impl Target {
    /// The rustc target name.
    pub fn triple(self) -> &'static str {
        match self {
            Target::P1 => "wasm32-wasip1",
            Target::P2 | Target::P3 => "wasm32-wasip2",
        }
    }
}

/// The path of guest program `name` built for `target`.
///
/// Panics if it was not built: that is a bug in the test, not a condition
/// to handle.
pub fn guest(target: Target, name: &str) -> PathBuf {
    let path = PathBuf::from(env!("WARDEN_GUESTS_DIR"))
        .join(target.triple())
        .join("release")
        .join(format!("{name}.wasm"));
    assert!(path.is_file(), "guest {} was not built", path.display());
    path
}

/// The path of C guest program `name` (test-programs/c/NAME.c), built with
/// clang for wasm32-wasi (preview1).
pub fn c_guest(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("WARDEN_GUESTS_DIR"))
        .join("c")
        .join(format!("{name}.wasm"));
    assert!(path.is_file(), "C guest {} was not built", path.display());
    path
}
