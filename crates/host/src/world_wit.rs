//! The operator's world read from WIT (`--world DIR[:WORLD]`): the
//! interfaces (and plain functions) a WIT world imports become the world's
//! patterns, each admitting the versions wasmtime's linker would take for
//! it (`0.2.x` for `@0.2.0`, `1.x` for `@1.0.0`; a prerelease only
//! itself), so a component built against a later patch of the same
//! interfaces fits.

use std::path::Path;

use warden_policy::world::{ImportPattern, World};
use wit_parser::{Resolve, WorldItem};

/// The imports of `world` (or the package's only world) in the WIT
/// package at `dir` (with its `deps/`), as a [`World`]; or what is wrong.
pub fn from_wit(dir: &Path, world: Option<&str>) -> Result<World, String> {
    let mut resolve = Resolve::default();
    let (pkg, _) = resolve
        .push_dir(dir)
        .map_err(|e| format!("cannot read the WIT package in {}: {e:#}", dir.display()))?;
    let id = resolve
        .select_world(&[pkg], world)
        .map_err(|e| format!("{}: {e:#}", dir.display()))?;
    let w = &resolve.worlds[id];
    let mut imports = Vec::new();
    for (key, item) in &w.imports {
        if matches!(item, WorldItem::Type { .. }) {
            continue;
        }
        let name = resolve.name_world_key(key);
        let pattern = compatible(&name);
        imports.push(
            ImportPattern::parse(&pattern)
                .map_err(|e| format!("{}: import {name}: {e}", dir.display()))?,
        );
    }
    Ok(World { imports })
}

/// `name` as a pattern admitting its semver-compatible versions.
fn compatible(name: &str) -> String {
    let Some((base, version)) = name.split_once('@') else {
        return name.to_string();
    };
    let parts: Vec<&str> = version.split('.').collect();
    let prerelease = version.contains('-') || version.contains('+');
    match parts.as_slice() {
        _ if prerelease => name.to_string(),
        [major, ..] if *major != "0" => format!("{base}@{major}.*"),
        ["0", minor, ..] if *minor != "0" => format!("{base}@0.{minor}.*"),
        _ => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_widen_as_the_linker_would_and_no_further() {
        assert_eq!(compatible("wasi:cli/stdout@0.2.0"), "wasi:cli/stdout@0.2.*");
        assert_eq!(compatible("example:kv/store@1.4.0"), "example:kv/store@1.*");
        assert_eq!(
            compatible("wasi:config/store@0.2.0-rc.1"),
            "wasi:config/store@0.2.0-rc.1"
        );
        assert_eq!(compatible("x:y/z@0.0.3"), "x:y/z@0.0.3");
        assert_eq!(compatible("example:kv/store"), "example:kv/store");
        assert_eq!(compatible("log"), "log");
    }

    #[test]
    fn a_wit_world_gives_its_imports() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("w.wit"),
            "package op:host@1.0.0;\n\
             interface kv { get: func(k: string) -> string; }\n\
             world narrow { import kv; import log: func(msg: string); export run: func(); }\n\
             world other { import kv; }\n",
        )
        .unwrap();
        let w = from_wit(dir.path(), Some("narrow")).unwrap();
        assert!(w.allows("op:host/kv@1.0.0") && w.allows("op:host/kv@1.9.2"));
        assert!(w.allows("log"));
        assert!(!w.allows("op:host/kv@2.0.0") && !w.allows("wasi:sockets/tcp@0.2.0"));
        assert!(!w.allows("run"), "exports are not imports");
        // Two worlds: one must be named.
        assert!(
            from_wit(dir.path(), None)
                .unwrap_err()
                .contains("multiple worlds")
        );
        assert!(from_wit(dir.path(), Some("missing")).is_err());
        assert!(
            from_wit(&dir.path().join("nope"), None)
                .unwrap_err()
                .contains("cannot read")
        );
    }
}
