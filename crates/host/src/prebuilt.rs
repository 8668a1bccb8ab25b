//! Code Warden compiled ahead of time, for an embedder that keeps it
//! between runs (the containerd shim: compiled once per node and image,
//! kept in containerd's content store, handed to every container of the
//! image). [`precompile`] makes it; a run given a [`Prebuilt`] uses it in
//! place of compiling when it belongs to the same program and fits the
//! run's engine (a run with a timeout or fuel has another engine, and
//! compiles).

use sha2::{Digest, Sha256};

use crate::compile;
use crate::{HostError, Limits};

/// Compiled code for one program, trusted by whoever made it.
#[derive(Clone)]
pub struct Prebuilt {
    pub(crate) artifact: Vec<u8>,
    pub(crate) source_sha256: [u8; 32],
}

impl std::fmt::Debug for Prebuilt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prebuilt")
            .field("bytes", &self.artifact.len())
            .field("source_sha256", &hex::encode(self.source_sha256))
            .finish()
    }
}

impl Prebuilt {
    /// Code [`precompile`] made from the program whose SHA-256 is
    /// `source_sha256`.
    ///
    /// # Safety
    ///
    /// Loading compiled code runs it: `artifact` must be exactly what
    /// [`precompile`] returned, kept where only the embedder could write
    /// it. Bytes from anywhere else must never get here.
    pub unsafe fn trusted(artifact: Vec<u8>, source_sha256: [u8; 32]) -> Prebuilt {
        Prebuilt {
            artifact,
            source_sha256,
        }
    }
}

/// Compile `source` (a preview1 module or a component, binary) for a run
/// without a timeout or fuel, the way a run would.
pub fn precompile(source: &[u8]) -> Result<Vec<u8>, HostError> {
    let engine = compile::engine(&Limits::default())?;
    let kind = crate::load::classify(std::path::Path::new("<precompiled>"), source)?;
    let artifact = match kind {
        crate::GuestKind::Preview1 => engine.precompile_module(source),
        _ => engine.precompile_component(source),
    }
    .map_err(|e| HostError::Compile {
        path: "<precompiled>".into(),
        reason: format!("{e:#}"),
    })?;
    Ok(artifact)
}

/// What prebuilt code depends on besides its program (Warden's version
/// and the engine's configuration and compiler), as a key: code made
/// under another key does not load.
pub fn precompile_key() -> Result<String, HostError> {
    use std::hash::Hash;
    let engine = compile::engine(&Limits::default())?;
    let mut h = crate::cache::ShaHasher(Sha256::new());
    h.0.update(b"warden prebuilt v1\0");
    h.0.update(env!("CARGO_PKG_VERSION").as_bytes());
    engine.precompile_compatibility_hash().hash(&mut h);
    Ok(hex::encode(&h.0.finalize()[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_precompiles_and_the_key_is_stable() {
        let source = wat::parse_str("(module (func (export \"_start\")))").unwrap();
        assert!(!precompile(&source).unwrap().is_empty());
        assert_eq!(precompile_key().unwrap(), precompile_key().unwrap());
        assert!(precompile(b"not wasm").is_err());
    }
}
