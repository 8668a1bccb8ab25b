//! Reading a guest file and deciding what it is, from its bytes alone.

use std::path::Path;

use sha2::{Digest, Sha256};
use wasmparser::{Parser, Payload};

use crate::HostError;
use warden_wasi::ComponentAbi;

/// What kind of program a guest file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestKind {
    /// A WASI preview1 core module (`wasm32-wasip1`).
    Preview1,
    /// A command component exporting `wasi:cli/run` of the given WASI
    /// version (the newest, when it exports several).
    Component(ComponentAbi),
    /// An HTTP component: `wasi:http/incoming-handler@0.2.x` (a
    /// `wasi:http/proxy`, P2) or `wasi:http/handler@0.3.x` (a
    /// `wasi:http/service`, P3). It may also export `wasi:cli/run`, as Rust
    /// programs built with the usual guest libraries do; it is still an
    /// HTTP component.
    Http(ComponentAbi),
}

impl GuestKind {
    /// A short human name, used in messages.
    pub fn describe(self) -> &'static str {
        match self {
            GuestKind::Preview1 => "WASI preview1 module",
            GuestKind::Component(ComponentAbi::P2) => "WASI 0.2 component",
            GuestKind::Component(ComponentAbi::P3) => "WASI 0.3 component",
            GuestKind::Http(ComponentAbi::P2) => "wasi:http/proxy 0.2 component",
            GuestKind::Http(ComponentAbi::P3) => "wasi:http/service 0.3 component",
        }
    }
}

/// A guest program read from disk: binary bytes, their digest and kind.
#[derive(Debug, Clone)]
pub struct Guest {
    /// The binary (text input is converted).
    pub bytes: Vec<u8>,
    /// SHA-256 of `bytes`.
    pub sha256: [u8; 32],
    /// What it is.
    pub kind: GuestKind,
}

const SUPPORTED: &str = "supported: WASI preview1 core modules (.wasm or .wat), components exporting wasi:cli/run@0.2.x or @0.3.x, and HTTP components exporting wasi:http/incoming-handler@0.2.x or wasi:http/handler@0.3.x";

/// Read `path` (at most `max_size` bytes, else an error) and classify it.
pub fn read_guest(path: &Path, max_size: u64) -> Result<Guest, HostError> {
    let bytes = read_binary(path, max_size)?;
    let kind = classify(path, &bytes)?;
    Ok(Guest {
        sha256: Sha256::digest(&bytes).into(),
        bytes,
        kind,
    })
}

/// Read `path` (at most `max_size` bytes, else an error) as WebAssembly
/// binary (text is converted), without asking what it is.
pub(crate) fn read_binary(path: &Path, max_size: u64) -> Result<Vec<u8>, HostError> {
    use std::io::Read;
    let read_error = |source| HostError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let len = file.metadata().map_err(read_error)?.len();
    let too_large = |size| HostError::TooLarge {
        path: path.to_path_buf(),
        size,
        limit: max_size,
    };
    if len > max_size {
        return Err(too_large(len));
    }
    // Read one byte past the limit: a file that grows, or a device that
    // never ends, is refused too.
    let mut raw = Vec::with_capacity(len as usize);
    file.take(max_size + 1)
        .read_to_end(&mut raw)
        .map_err(read_error)?;
    if raw.len() as u64 > max_size {
        return Err(too_large(raw.len() as u64));
    }
    to_binary(path, raw)
}

/// Binary input passes through; WebAssembly text is converted.
fn to_binary(path: &Path, raw: Vec<u8>) -> Result<Vec<u8>, HostError> {
    if raw.starts_with(b"\0asm") {
        return Ok(raw);
    }
    if looks_like_wat(&raw) {
        return wat::parse_bytes(&raw).map(|b| b.into_owned()).map_err(|e| {
            HostError::Unsupported {
                path: path.to_path_buf(),
                what: format!("invalid WebAssembly text: {}", one_line(&e.to_string())),
            }
        });
    }
    Err(HostError::Unsupported {
        path: path.to_path_buf(),
        what: format!(
            "not WebAssembly (no \\0asm header and not WebAssembly text; starts with {}); {SUPPORTED}",
            preview(&raw)
        ),
    })
}

/// Text whose first significant character opens an s-expression.
fn looks_like_wat(raw: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(raw) else {
        return false;
    };
    let mut rest = text.trim_start();
    while let Some(line_comment) = rest.strip_prefix(";;") {
        rest = line_comment
            .split_once('\n')
            .map_or("", |(_, r)| r)
            .trim_start();
    }
    rest.starts_with('(')
}

fn preview(raw: &[u8]) -> String {
    if raw.is_empty() {
        return "nothing: the file is empty".into();
    }
    let hex: Vec<String> = raw.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("bytes {}", hex.join(" "))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Decide what a binary is, without compiling it.
pub(crate) fn classify(path: &Path, bytes: &[u8]) -> Result<GuestKind, HostError> {
    let unsupported = |what: String| HostError::Unsupported {
        path: path.to_path_buf(),
        what,
    };
    if Parser::is_core_wasm(bytes) {
        return Ok(GuestKind::Preview1);
    }
    if !Parser::is_component(bytes) {
        return Err(unsupported(format!(
            "a WebAssembly binary of an unknown version or layer ({}); {SUPPORTED}",
            preview(bytes)
        )));
    }
    let exports = component_exports(bytes)
        .map_err(|e| unsupported(format!("a malformed component: {}", one_line(&e))))?;
    let version_of = |prefix: &str| -> Vec<&str> {
        exports
            .iter()
            .filter_map(|n| n.strip_prefix(prefix))
            .collect()
    };
    // An HTTP handler makes it an HTTP component, whatever else it exports.
    if version_of("wasi:http/handler@")
        .iter()
        .any(|v| v.starts_with("0.3."))
    {
        return Ok(GuestKind::Http(ComponentAbi::P3));
    }
    if version_of("wasi:http/incoming-handler@")
        .iter()
        .any(|v| v.starts_with("0.2."))
    {
        return Ok(GuestKind::Http(ComponentAbi::P2));
    }
    // A command: the newest WASI version it exports `run` for (toolchains
    // that build 0.3 programs also export a 0.2 `run`).
    let runs = version_of("wasi:cli/run@");
    if runs.iter().any(|v| v.starts_with("0.3.")) {
        return Ok(GuestKind::Component(ComponentAbi::P3));
    }
    if runs.iter().any(|v| v.starts_with("0.2.")) {
        return Ok(GuestKind::Component(ComponentAbi::P2));
    }
    if let Some(version) = runs.first() {
        return Err(unsupported(format!(
            "a component exporting wasi:cli/run@{version}, a WASI version Warden does not support; {SUPPORTED}"
        )));
    }
    let found = if exports.is_empty() {
        "a component with no exports".to_string()
    } else {
        format!(
            "a component of another world (it exports {})",
            exports.join(", ")
        )
    };
    Err(unsupported(format!("{found}; {SUPPORTED}")))
}

/// The names a component exports at its top level.
fn component_exports(bytes: &[u8]) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    // Nested modules and components bring their own sections; only depth 0
    // is the component's own interface.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| e.to_string())? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    names.push(export.map_err(|e| e.to_string())?.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify_wat(wat: &str) -> Result<GuestKind, HostError> {
        let bytes = to_binary(Path::new("t.wat"), wat.as_bytes().to_vec())?;
        classify(Path::new("t.wat"), &bytes)
    }

    fn err_text(r: Result<GuestKind, HostError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn core_module_is_preview1() {
        let k = classify_wat(";; a comment\n(module (func (export \"_start\")))").unwrap();
        assert_eq!(k, GuestKind::Preview1);
    }

    #[test]
    fn component_world_is_read_from_its_exports() {
        let p2 = r#"(component
            (core module $m (func (export "run") (result i32) i32.const 0))
            (core instance $i (instantiate $m))
            (func $run (result (result)) (canon lift (core func $i "run")))
            (instance $r (export "run" (func $run)))
            (export "wasi:cli/run@0.2.3" (instance $r)))"#;
        assert_eq!(
            classify_wat(p2).unwrap(),
            GuestKind::Component(ComponentAbi::P2)
        );
        let p3 = p2.replace("0.2.3", "0.3.0");
        assert_eq!(
            classify_wat(&p3).unwrap(),
            GuestKind::Component(ComponentAbi::P3)
        );
        let proxy = p2.replace("wasi:cli/run@0.2.3", "wasi:http/incoming-handler@0.2.3");
        assert_eq!(
            classify_wat(&proxy).unwrap(),
            GuestKind::Http(ComponentAbi::P2)
        );
        let other = p2.replace("wasi:cli/run@0.2.3", "example:thing/run@1.0.0");
        assert_eq!(
            err_text(classify_wat(&other)),
            format!(
                "t.wat: a component of another world (it exports example:thing/run@1.0.0); {SUPPORTED}"
            )
        );
        // Both a 0.2 and a 0.3 `run`: the 0.3 one is the program.
        let both = p2.replace(
            r#"(export "wasi:cli/run@0.2.3" (instance $r)))"#,
            r#"(export "wasi:cli/run@0.2.0" (instance $r)) (export "wasi:cli/run@0.3.0" (instance $r)))"#,
        );
        assert_eq!(
            classify_wat(&both).unwrap(),
            GuestKind::Component(ComponentAbi::P3)
        );
        let future = p2.replace("0.2.3", "0.4.0");
        assert!(err_text(classify_wat(&future)).contains("wasi:cli/run@0.4.0"));
    }

    #[test]
    fn garbage_is_named() {
        let e = to_binary(Path::new("x.bin"), b"\x7fELF\x02\x01\x01\x00rest".to_vec());
        assert_eq!(
            e.unwrap_err().to_string(),
            format!(
                "x.bin: not WebAssembly (no \\0asm header and not WebAssembly text; starts with bytes 7f 45 4c 46 02 01 01 00); {SUPPORTED}"
            )
        );
        let empty = to_binary(Path::new("e.wasm"), Vec::new()).unwrap_err();
        assert!(empty.to_string().contains("nothing: the file is empty"));
        let bad_text = to_binary(Path::new("b.wat"), b"(module (func $f (bogus)))".to_vec());
        assert!(
            bad_text
                .unwrap_err()
                .to_string()
                .starts_with("b.wat: invalid WebAssembly text: ")
        );
        let unknown_version = classify(Path::new("v.wasm"), b"\0asm\x02\x00\x00\x00");
        assert!(err_text(unknown_version).contains("unknown version or layer"));
    }
}
