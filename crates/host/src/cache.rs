//! The on-disk compilation cache.
//!
//! Compiled code is native code, so a cache entry must never be trusted just
//! because it is there. An entry's file name is derived from the guest's
//! SHA-256 and a hash of everything in the engine that affects code
//! generation (wasmtime's compatibility hash, the wasmtime and Warden
//! versions). The file starts with a magic tag and a SHA-256 over the key
//! and the artifact, so a truncated, corrupted or renamed entry fails the
//! check; wasmtime then refuses artifacts from another engine or version.
//! Any failed check means: ignore the entry, compile, and replace it.
//!
//! The directory must belong to the current user and not be writable by
//! anyone else; otherwise it is not used at all (another user could plant
//! native code there). Entries are written to a temporary file and renamed
//! into place, so concurrent runs never see a half-written entry.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;

const MAGIC: &[u8; 8] = b"WARDNC01";
const HEADER: usize = MAGIC.len() + 32;

/// What happened when an artifact was looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A verified entry was found.
    Hit(Entry),
    /// No entry exists.
    Miss,
    /// An entry existed but failed verification; the reason says why.
    Rejected(String),
}

/// A verified entry as read: its header and the artifact, in the one
/// buffer the file was read into (a warm start copies the artifact once,
/// into wasmtime's code memory, and no more).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry(Vec<u8>);

impl Entry {
    /// The compiled artifact.
    pub fn artifact(&self) -> &[u8] {
        &self.0[HEADER..]
    }
}

/// A compilation cache directory that passed the ownership checks.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

/// The default cache location: `<user cache dir>/warden`.
pub fn default_dir() -> Option<PathBuf> {
    dirs::cache_dir().map(|d| d.join("warden"))
}

impl Cache {
    /// Open (creating if needed) the cache at `dir`. Fails with a reason when
    /// the directory cannot be created or is not safe to load code from.
    pub fn open(dir: &Path) -> Result<Self, String> {
        create_private_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        check_private(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// The cache key for a guest with digest `sha256` compiled by `engine`
    /// as `kind` (modules and components are separate artifact kinds).
    pub fn key(engine: &Engine, sha256: &[u8; 32], kind: &str) -> String {
        let mut h = ShaHasher(Sha256::new());
        h.0.update(b"warden compile cache v1\0");
        h.0.update(env!("CARGO_PKG_VERSION").as_bytes());
        h.0.update(b"\0wasmtime 48\0");
        h.0.update(kind.as_bytes());
        h.0.update(sha256);
        engine.precompile_compatibility_hash().hash(&mut h);
        hex::encode(h.0.finalize())
    }

    /// Where the entry for `key` lives.
    pub fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.cwasm"))
    }

    /// Look up and verify the entry for `key`.
    pub fn get(&self, key: &str) -> Lookup {
        let path = self.path(key);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Lookup::Miss,
            Err(e) => return Lookup::Rejected(format!("unreadable: {e}")),
        };
        if let Err(why) = check_private(&path) {
            return Lookup::Rejected(why);
        }
        if data.len() < HEADER || &data[..MAGIC.len()] != MAGIC {
            return Lookup::Rejected("not a Warden cache entry".into());
        }
        let artifact = &data[HEADER..];
        if data[MAGIC.len()..HEADER] != digest(key, artifact) {
            return Lookup::Rejected("checksum mismatch (corrupt or foreign entry)".into());
        }
        Lookup::Hit(Entry(data))
    }

    /// Store `artifact` under `key`, atomically replacing any old entry.
    pub fn put(&self, key: &str, artifact: &[u8]) -> std::io::Result<()> {
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        tmp.write_all(MAGIC)?;
        tmp.write_all(&digest(key, artifact))?;
        tmp.write_all(artifact)?;
        tmp.as_file().sync_data()?;
        tmp.persist(self.path(key)).map_err(|e| e.error)?;
        Ok(())
    }
}

fn digest(key: &str, artifact: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(key.as_bytes());
    h.update(artifact);
    h.finalize().into()
}

/// Feeds `Hash` output into SHA-256 so the engine hash is stable on disk.
/// A `Hasher` that feeds a SHA-256 (for hashes wasmtime gives as `Hash`).
pub(crate) struct ShaHasher(pub(crate) Sha256);

impl Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        // Only `write` is used; the digest is taken from the inner state.
        0
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

/// Refuse paths owned by someone else or writable by group or others.
#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path).map_err(|e| format!("cannot inspect {}: {e}", path.display()))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(format!(
            "{} belongs to uid {}, not to the current user (uid {me})",
            path.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is writable by other users (mode {:o})",
            path.display(),
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), String> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The artifact of a hit (and a failure for anything else).
    fn hit(lookup: Lookup) -> Vec<u8> {
        match lookup {
            Lookup::Hit(entry) => entry.artifact().to_vec(),
            other => panic!("expected a hit, got {other:?}"),
        }
    }

    #[test]
    fn round_trip_and_rejections() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::open(&tmp.path().join("c")).unwrap();
        assert_eq!(cache.get("k1"), Lookup::Miss);
        cache.put("k1", b"artifact bytes").unwrap();
        assert_eq!(hit(cache.get("k1")), b"artifact bytes");

        // An entry copied under another key does not verify.
        fs::copy(cache.path("k1"), cache.path("k2")).unwrap();
        assert!(matches!(cache.get("k2"), Lookup::Rejected(r) if r.contains("checksum")));

        // A flipped byte does not verify.
        let mut data = fs::read(cache.path("k1")).unwrap();
        *data.last_mut().unwrap() ^= 1;
        fs::write(cache.path("k1"), &data).unwrap();
        assert!(matches!(cache.get("k1"), Lookup::Rejected(r) if r.contains("checksum")));

        // A truncated or foreign file is not an entry.
        fs::write(cache.path("k3"), b"short").unwrap();
        assert!(matches!(cache.get("k3"), Lookup::Rejected(r) if r.contains("not a Warden")));

        // Replacing works and restores a hit.
        cache.put("k1", b"fresh").unwrap();
        assert_eq!(hit(cache.get("k1")), b"fresh");
    }

    #[cfg(unix)]
    #[test]
    fn group_writable_dir_or_entry_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("shared");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let err = Cache::open(&dir).unwrap_err();
        assert!(err.contains("writable by other users"), "{err}");

        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        let cache = Cache::open(&dir).unwrap();
        cache.put("k", b"x").unwrap();
        fs::set_permissions(cache.path("k"), fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(cache.get("k"), Lookup::Rejected(r) if r.contains("writable")));
    }

    #[test]
    fn key_depends_on_guest_kind_and_engine() {
        let plain = Engine::default();
        let mut cfg = wasmtime::Config::new();
        cfg.consume_fuel(true);
        let fuel = Engine::new(&cfg).unwrap();
        let a = [1u8; 32];
        let b = [2u8; 32];
        let k = Cache::key(&plain, &a, "module");
        assert_eq!(k, Cache::key(&plain, &a, "module"));
        assert_ne!(k, Cache::key(&plain, &b, "module"));
        assert_ne!(k, Cache::key(&plain, &a, "component"));
        assert_ne!(k, Cache::key(&fuel, &a, "module"));
    }
}
