//! Plugs: the components an operator gives to satisfy a guest's imports
//! (a *mock* with canned answers, or a *bridge* that implements one
//! interface over another), composed with the guest before it is compiled,
//! with wac-graph.
//!
//! Each import of the guest is satisfied by the first plug (in the order
//! given) that exports the same interface, by exact name or a
//! semver-compatible one, with a type the import accepts. A plug's own
//! imports are satisfied the same way by the other plugs, so plugs chain
//! (a bridge's import satisfied by a mock); whatever no plug satisfies
//! stays an import of the composition, for Warden to provide under the
//! guest's policy like any other: a plug is granted nothing of its own,
//! and its calls are the instance's. A plug that satisfies nothing is an
//! error naming what it exports. The composition is compiled and cached
//! under a digest of the guest and its plugs, so a cached run composes
//! nothing.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wac_graph::types::{Package, SubtypeChecker, are_semver_compatible};
use wac_graph::{CompositionGraph, EncodeOptions, NodeId};

use crate::HostError;

/// A plug the operator names: its file, and optionally the SHA-256 it
/// must have (a plug whose digest differs is refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlugSpec {
    /// The component file.
    pub file: PathBuf,
    /// Its pinned digest, if any.
    pub sha256: Option<[u8; 32]>,
}

/// A plug read from its file and checked against its pin.
pub struct Plug {
    /// Where it came from.
    pub file: PathBuf,
    /// The component's bytes.
    pub bytes: Vec<u8>,
    /// Their SHA-256.
    pub sha256: [u8; 32],
}

impl Plug {
    /// Read `spec`'s file (at most `max_size` bytes) and check its pin.
    /// Any component will do: a plug need not be a program Warden could
    /// run (a library exporting one interface is the usual plug).
    pub fn read(spec: &PlugSpec, max_size: u64) -> Result<Plug, HostError> {
        let bytes = crate::load::read_binary(&spec.file, max_size)?;
        if !wasmparser::Parser::is_component(&bytes) {
            return Err(HostError::Plug {
                path: spec.file.clone(),
                reason: "it is a core module (a preview1 program, say); a plug is a component"
                    .into(),
            });
        }
        let sha256: [u8; 32] = Sha256::digest(&bytes).into();
        if let Some(pin) = spec.sha256
            && pin != sha256
        {
            return Err(HostError::Plug {
                path: spec.file.clone(),
                reason: format!(
                    "its sha256 is {}, not the {} it is pinned to",
                    hex::encode(sha256),
                    hex::encode(pin)
                ),
            });
        }
        Ok(Plug {
            file: spec.file.clone(),
            bytes,
            sha256,
        })
    }

    /// The names it exports, for `warden check` and errors.
    pub fn exports(&self) -> Result<Vec<String>, HostError> {
        let mut graph = CompositionGraph::new();
        let pkg = Package::from_bytes("warden:plug", None, self.bytes.clone(), graph.types_mut())
            .map_err(|e| self.invalid(&e))?;
        Ok(graph.types()[pkg.ty()].exports.keys().cloned().collect())
    }

    fn invalid(&self, e: &dyn std::fmt::Display) -> HostError {
        HostError::Plug {
            path: self.file.clone(),
            reason: format!("it is not a component that can be plugged: {e}"),
        }
    }
}

/// The digest a guest composed with `plugs` is cached under: the guest's
/// and each plug's, in order.
pub(crate) fn digest(guest: &[u8; 32], plugs: &[Plug]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"warden composition v1\0");
    h.update(guest);
    for p in plugs {
        h.update(p.sha256);
    }
    h.finalize().into()
}

/// The guest at `path` (its bytes `guest`) with `plugs` plugged in: one
/// component with the guest's exports, and as imports whatever no plug
/// satisfied.
pub(crate) fn compose(path: &Path, guest: &[u8], plugs: &[Plug]) -> Result<Vec<u8>, HostError> {
    let failed = |reason: String| HostError::Plug {
        path: path.to_path_buf(),
        reason,
    };
    let mut graph = CompositionGraph::new();
    let socket = Package::from_bytes("warden:guest", None, guest.to_vec(), graph.types_mut())
        .map_err(|e| failed(format!("cannot read the guest for composing: {e}")))?;
    let socket = graph
        .register_package(socket)
        .map_err(|e| failed(e.to_string()))?;
    let mut ids = Vec::with_capacity(plugs.len());
    for (i, plug) in plugs.iter().enumerate() {
        let pkg = Package::from_bytes(
            &format!("warden:plug{i}"),
            None,
            plug.bytes.clone(),
            graph.types_mut(),
        )
        .map_err(|e| plug.invalid(&e))?;
        ids.push(graph.register_package(pkg).map_err(|e| plug.invalid(&e))?);
    }
    let guest_node = graph.instantiate(socket);
    let mut nodes: Vec<Option<NodeId>> = vec![None; plugs.len()];
    // Instances whose imports are still to be satisfied: the guest, then
    // each plug as it is first used.
    let mut pending = vec![(guest_node, socket, None)];
    let mut cache = HashSet::new();
    while let Some((node, pkg, itself)) = pending.pop() {
        let imports: Vec<_> = graph.types()[graph[pkg].ty()]
            .imports
            .iter()
            .map(|(n, t)| (n.clone(), *t))
            .collect();
        for (import, wanted) in imports {
            for (j, &plug_pkg) in ids.iter().enumerate() {
                if itself == Some(j) {
                    continue;
                }
                let exports = &graph.types()[graph[plug_pkg].ty()].exports;
                let found = exports
                    .get(&import)
                    .map(|t| (import.clone(), *t))
                    .or_else(|| {
                        exports
                            .iter()
                            .find(|(n, _)| are_semver_compatible(n, &import))
                            .map(|(n, t)| (n.clone(), *t))
                    });
                let Some((export, given)) = found else {
                    continue;
                };
                let fits = SubtypeChecker::new(&mut cache)
                    .is_subtype(given, graph.types(), wanted, graph.types())
                    .is_ok();
                if !fits {
                    continue;
                }
                let plug_node = match nodes[j] {
                    Some(n) => n,
                    None => {
                        let n = graph.instantiate(plug_pkg);
                        nodes[j] = Some(n);
                        pending.push((n, plug_pkg, Some(j)));
                        n
                    }
                };
                let alias = graph
                    .alias_instance_export(plug_node, &export)
                    .map_err(|e| failed(format!("cannot use {export}: {e}")))?;
                graph
                    .set_instantiation_argument(node, &import, alias)
                    .map_err(|e| failed(format!("cannot plug {import}: {e}")))?;
                break;
            }
        }
    }
    if let Some(j) = nodes.iter().position(Option::is_none) {
        let plug = &plugs[j];
        let exports = plug.exports()?;
        return Err(HostError::Plug {
            path: plug.file.clone(),
            reason: format!(
                "it satisfies nothing {} or the other plugs import; it exports {}",
                path.display(),
                if exports.is_empty() {
                    "nothing".to_string()
                } else {
                    exports.join(", ")
                }
            ),
        });
    }
    let exports: Vec<String> = graph.types()[graph[socket].ty()]
        .exports
        .keys()
        .cloned()
        .collect();
    for name in exports {
        let alias = graph
            .alias_instance_export(guest_node, &name)
            .map_err(|e| failed(e.to_string()))?;
        graph
            .export(alias, &name)
            .map_err(|e| failed(e.to_string()))?;
    }
    graph
        .encode(EncodeOptions {
            define_components: true,
            validate: true,
            processor: None,
        })
        .map_err(|e| failed(format!("composing it with its plugs failed: {e:#}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A library component: it exports `example:kv/answer` and runs
    /// nothing, which no guest of Warden's is.
    const LIBRARY: &str = r#"(component
        (core module $m (func (export "f") (result i32) i32.const 42))
        (core instance $i (instantiate $m))
        (func $f (result u32) (canon lift (core func $i "f")))
        (instance $answer (export "get" (func $f)))
        (export "example:kv/answer" (instance $answer)))"#;

    #[test]
    fn a_library_component_is_a_plug_though_not_a_guest_and_a_module_is_neither() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("answer.wat");
        std::fs::write(&lib, LIBRARY).unwrap();
        // Not something Warden runs...
        assert!(matches!(
            crate::read_guest(&lib, 1 << 20),
            Err(HostError::Unsupported { .. })
        ));
        // ...and a plug all the same.
        let spec = PlugSpec {
            file: lib.clone(),
            sha256: None,
        };
        let plug = Plug::read(&spec, 1 << 20).unwrap();
        assert_eq!(
            plug.exports().unwrap(),
            vec!["example:kv/answer".to_string()]
        );
        let module = dir.path().join("m.wat");
        std::fs::write(&module, "(module)").unwrap();
        let Err(err) = Plug::read(
            &PlugSpec {
                file: module,
                sha256: None,
            },
            1 << 20,
        ) else {
            panic!("a core module was taken as a plug");
        };
        let err = err.to_string();
        assert!(err.contains("a plug is a component"), "{err}");
    }
}
