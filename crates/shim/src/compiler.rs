//! The node's compile cache, through runwasi's compiler hook: the first
//! container of an image with wasm OCI layers has its program compiled by
//! the shim (outside any container), and containerd keeps the result in its
//! content store, labelled with Warden's version and engine; every later
//! container of that image on the node is handed it and starts without
//! compiling. Images that carry their program as a file in their root
//! file system have no such hook: their containers compile at start.
//!
//! What is kept is a bundle: the program and its compiled code, so a
//! container whose manifest asks for another engine (a timeout, fuel) can
//! still compile the program it was given.

use containerd_shim_wasm::sandbox::context::WasmLayer;
use containerd_shim_wasm::shim::Compiler;
use sha2::{Digest, Sha256};

/// The bundle's first bytes.
const MAGIC: &[u8; 16] = b"warden-prebuilt1";

/// The compiler runwasi calls for an image's wasm layers.
pub struct WardenCompiler {
    key: String,
}

impl WardenCompiler {
    /// A compiler, if this Warden can compile here.
    pub fn new() -> Option<WardenCompiler> {
        match warden_host::precompile_key() {
            Ok(key) => Some(WardenCompiler { key }),
            Err(e) => {
                log::warn!("no compile cache: {e}");
                None
            }
        }
    }
}

impl Compiler for WardenCompiler {
    fn cache_key(&self) -> impl std::hash::Hash {
        self.key.clone()
    }

    async fn compile(&self, layers: &[WasmLayer]) -> anyhow::Result<Vec<Option<Vec<u8>>>> {
        Ok(layers
            .iter()
            .map(|l| match warden_host::precompile(&l.layer) {
                Ok(artifact) => Some(pack(&l.layer, &artifact)),
                // Not a program Warden runs: the container says why when it
                // starts.
                Err(e) => {
                    log::info!("not precompiled: {e}");
                    None
                }
            })
            .collect())
    }
}

/// A bundle of `source` and its compiled `artifact`.
pub fn pack(source: &[u8], artifact: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + 8 + source.len() + artifact.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(source.len() as u64).to_le_bytes());
    out.extend_from_slice(source);
    out.extend_from_slice(artifact);
    out
}

/// A bundle's program, its SHA-256 and its compiled code; `None` if the
/// bytes are not a bundle.
pub fn unpack(bundle: &[u8]) -> Option<(&[u8], [u8; 32], &[u8])> {
    let rest = bundle.strip_prefix(MAGIC.as_slice())?;
    let (len, rest) = rest.split_first_chunk::<8>()?;
    let len = usize::try_from(u64::from_le_bytes(*len)).ok()?;
    if len > rest.len() {
        return None;
    }
    let (source, artifact) = rest.split_at(len);
    Some((source, Sha256::digest(source).into(), artifact))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_round_trip_and_garbage_is_not_one() {
        let b = pack(b"\0asm-source", b"compiled");
        let (source, sha, artifact) = unpack(&b).unwrap();
        assert_eq!(source, b"\0asm-source");
        assert_eq!(artifact, b"compiled");
        assert_eq!(sha, <[u8; 32]>::from(Sha256::digest(b"\0asm-source")));
        assert!(unpack(b"\0asm").is_none());
        let mut short = b.clone();
        short.truncate(MAGIC.len() + 8 + 3);
        assert!(unpack(&short).is_none());
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(unpack(&huge).is_none());
    }
}
