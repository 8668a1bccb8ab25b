//! A container as one Warden run: the container's args and env become the
//! guest's, its volumes the guest's directories, and the policy is the
//! manifest inside the image (`/warden.toml`, or the path the container's
//! `WARDEN_MANIFEST` names). Without a manifest nothing is granted. A
//! manifest that does not read stops the container with the error; it
//! never falls back to anything.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use warden_host::manifest::Loaded;
use warden_host::{CacheSetting, Limits, ListenSpec, Network, RunConfig};
use warden_net::AuditDest;
use warden_policy::Policy;
use warden_wasi::{DirGrant, Grants};

use crate::mounts::Mount;

/// The container environment variable that names the manifest (a path in
/// the image); Warden reads it, the guest does not see it.
pub const MANIFEST_ENV: &str = "WARDEN_MANIFEST";

/// The container environment variable that, set to `1`, has Warden say
/// what it does (the program's kind, prebuilt code or compiling, timings)
/// on the container's stderr; the guest does not see it.
pub const VERBOSE_ENV: &str = "WARDEN_VERBOSE";

/// Where the manifest is when `WARDEN_MANIFEST` is not set.
pub const DEFAULT_MANIFEST: &str = "warden.toml";

/// The container, as the shim is given it.
pub struct Container<'a> {
    /// The OCI process args: the entrypoint (the program), then its args.
    pub args: &'a [String],
    /// The OCI process env, `NAME=VALUE`.
    pub envs: &'a [String],
    /// The program file.
    pub file: PathBuf,
    /// The container's root as this process sees it (`/` in a container).
    pub root: &'a Path,
    /// The container's mounts (see [`crate::mounts`]).
    pub mounts: Vec<Mount>,
}

/// The manifest to use: `WARDEN_MANIFEST` (which must exist), else
/// `/warden.toml` if the image has one, else none.
fn manifest_path(c: &Container<'_>) -> anyhow::Result<Option<PathBuf>> {
    let named = c
        .envs
        .iter()
        .find_map(|e| e.strip_prefix(MANIFEST_ENV)?.strip_prefix('='));
    match named {
        Some(p) => {
            let path = c.root.join(p.trim_start_matches('/'));
            if !path.is_file() {
                bail!("{MANIFEST_ENV}={p}: no such file in the container");
            }
            Ok(Some(path))
        }
        None => {
            let path = c.root.join(DEFAULT_MANIFEST);
            Ok(path.is_file().then_some(path))
        }
    }
}

/// The whole run configuration for the container.
pub fn config(c: Container<'_>) -> anyhow::Result<RunConfig> {
    let manifest = manifest_path(&c)?;
    let loaded = match &manifest {
        Some(path) => Loaded::read(path)?,
        None => Loaded::default(),
    };
    let Loaded {
        identity,
        rules,
        kinds,
        listen,
        pools,
        require_tls,
        mode,
        dns,
        audit,
        limits,
        time,
        imports,
        providers,
        // A container's `[telemetry]` is not exported from (see below).
        telemetry: _,
        apps: _,
        base: _,
    } = loaded;
    if mode == warden_policy::Mode::Audit {
        warden_net::out::line(
            "warden: WARNING: the manifest's policy mode is audit: nothing is denied; what the policy would deny is recorded as would-deny and allowed",
        );
    }
    let virt = time.over(warden_wasi::Virtual::default());
    if let Some(seed) = virt.random_seed {
        warden_net::out::line(&format!(
            "warden: warning: the manifest's random seed {seed}: every random source the guest reads is a fixed stream (for tests and replay; anything it makes as a secret is predictable)"
        ));
    }
    let policy = Policy::with_kinds(rules, kinds, require_tls)
        .map_err(|e| anyhow::anyhow!("{}: {e}", shown(&manifest)))?;
    let listeners = listen
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let id = l.id();
            let name = l.name.clone().or_else(|| l.on.default_name(i));
            ListenSpec {
                name,
                on: l.on,
                id,
                tls: l.tls,
            }
        })
        .collect();
    let env = c
        .envs
        .iter()
        .filter_map(|e| e.split_once('='))
        .filter(|(k, _)| *k != MANIFEST_ENV && *k != VERBOSE_ENV)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let dirs = c
        .mounts
        .iter()
        .filter(|m| m.path.is_dir())
        .map(|m| DirGrant {
            host: m.path.clone(),
            guest: m.path.display().to_string(),
            read_only: m.read_only,
        })
        .collect();
    let Some((program, args)) = c.args.split_first() else {
        bail!("the container has no entrypoint (process.args is empty)");
    };
    // The guest's argv[0] is the program's path as the image gives it,
    // without runwasi's `#function` suffix.
    let arg0 = program.split_once('#').map_or(program.as_str(), |(p, _)| p);
    let defaults = Limits::default();
    Ok(RunConfig {
        // The shim exports no telemetry (yet): containerd's own tracing
        // covers the container's life.
        telemetry: None,
        file: c.file,
        grants: Grants {
            args: std::iter::once(arg0.to_string())
                .chain(args.iter().cloned())
                .collect(),
            env,
            dirs,
            closed_stdin: false,
            virt,
            config: providers.config,
            keyvalue: providers.keyvalue.map(warden_wasi::KeyValue::new),
        },
        listeners,
        imports,
        network: Network {
            policy,
            dns,
            // The manifest's file, else the container's stderr: a
            // workload's decisions are always recorded.
            audit: Some(audit.unwrap_or(AuditDest::Stderr)),
            audit_max_size: None,
            // Denials told on the container's stderr, in plain words (a
            // container has no flags to name).
            reporter: Some(std::sync::Arc::new(|n| {
                warden_net::out::line(&warden_net::report::plain(n))
            })),
            handshake_timeout: None,
            pools,
            strict_pools: false,
            mode,
            quotas: limits.quotas,
            egress_rate: limits.egress_rate,
            ingress_rate: limits.ingress_rate,
            identity: identity
                .map(|c| warden_net::identity::Issuer::load(&c))
                .transpose()
                .map_err(|e| anyhow::anyhow!("{}: [identity]: {e}", shown(&manifest)))?,
        },
        limits: Limits {
            max_memory: limits.max_memory,
            timeout: limits.timeout,
            fuel: limits.fuel,
            ..defaults
        },
        // A container's root is its own; a cache written there would die
        // with it (see docs/kubernetes.md on the compile cache).
        cache: CacheSetting::Disabled,
        verbose: c.envs.iter().any(|e| *e == format!("{VERBOSE_ENV}=1")),
        last_words: None,
        prebuilt: None,
        events: events(),
    })
}

/// The host's events for a container: `warden:` lines on its stderr,
/// beside the guest's own output.
pub(crate) fn events() -> warden_host::Events {
    std::sync::Arc::new(|e| warden_net::out::line(&format!("warden: {e}")))
}

fn shown(manifest: &Option<PathBuf>) -> String {
    manifest
        .as_ref()
        .map_or_else(|| "the policy".into(), |p| p.display().to_string())
}

/// The program file at `path` in the container, for the entrypoint's
/// function `func` (runwasi's `path#func`; only `_start` is run: a CLI
/// program's entry, or a component's `wasi:cli/run`).
pub fn program(root: &Path, path: &str, func: &str) -> anyhow::Result<PathBuf> {
    if func != "_start" {
        bail!(
            "entrypoint `{path}#{func}`: Warden runs a program's _start (or wasi:cli/run), not `{func}`"
        );
    }
    let file = root.join(path.trim_start_matches('/'));
    std::fs::metadata(&file)
        .with_context(|| format!("entrypoint {path}: not found in the image"))?;
    Ok(file)
}

/// `bytes` (a program from a wasm OCI layer) as a memory file, and the
/// path the run reads it by; the path is valid while the file is open.
pub fn in_memory(bytes: &[u8]) -> anyhow::Result<(std::fs::File, PathBuf)> {
    use std::io::Write;
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: a NUL-terminated name and valid flags; the descriptor
    // returned is owned by the File from here on.
    let fd = unsafe { libc::memfd_create(c"warden-program".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("cannot hold the wasm layer");
    }
    // SAFETY: memfd_create returned a new descriptor nothing else owns.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(bytes)
        .context("cannot hold the wasm layer")?;
    let path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    Ok((file, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows_db(p: &Policy) -> bool {
        let target = warden_policy::Target::Addr("127.0.0.1:5432".parse().unwrap());
        p.decide(warden_policy::Action::Connect, &target)
            .is_allowed()
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn container<'a>(root: &'a Path, args: &'a [String], envs: &'a [String]) -> Container<'a> {
        Container {
            args,
            envs,
            file: root.join("app.wasm"),
            root,
            mounts: vec![
                Mount {
                    path: root.to_path_buf(),
                    read_only: true,
                },
                Mount {
                    path: root.join("no-such-dir"),
                    read_only: false,
                },
            ],
        }
    }

    #[test]
    fn no_manifest_grants_nothing_and_audits_to_stderr() {
        let root = tempfile::tempdir().unwrap();
        let args = vec!["/app.wasm#_start".to_string(), "a".into()];
        let envs = vec!["MODE=x".to_string(), "BARE".into()];
        let cfg = config(container(root.path(), &args, &envs)).unwrap();
        assert_eq!(cfg.grants.args, ["/app.wasm", "a"]);
        assert_eq!(cfg.grants.env, [("MODE".to_string(), "x".to_string())]);
        // Mounts that are directories become grants, read-only kept.
        assert_eq!(cfg.grants.dirs.len(), 1);
        assert!(cfg.grants.dirs[0].read_only);
        assert!(!allows_db(&cfg.network.policy));
        assert!(matches!(cfg.network.audit, Some(AuditDest::Stderr)));
        assert!(cfg.listeners.is_empty());
    }

    #[test]
    fn the_manifest_in_the_image_is_the_policy() {
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            "warden.toml",
            "version = 1\naudit = \"audit.jsonl\"\n[limits]\ntimeout = \"3s\"\n[[allow]]\nid = \"db\"\ntarget = \"127.0.0.1\"\nports = \"5432\"\nrights = [\"connect\"]\n[[listen]]\naddr = \"127.0.0.1:0\"\n",
        );
        let args = vec!["/app.wasm".to_string()];
        let cfg = config(container(root.path(), &args, &[])).unwrap();
        assert!(allows_db(&cfg.network.policy));
        assert_eq!(cfg.limits.timeout, Some(std::time::Duration::from_secs(3)));
        match &cfg.network.audit {
            Some(AuditDest::File(p)) => assert_eq!(p, &root.path().join("audit.jsonl")),
            other => panic!("{other:?}"),
        }
        assert_eq!(cfg.listeners.len(), 1);
        assert_eq!(cfg.listeners[0].name.as_deref(), Some("tcp0"));
    }

    #[test]
    fn a_named_manifest_must_exist_and_parse() {
        let root = tempfile::tempdir().unwrap();
        let args = vec!["/app.wasm".to_string()];
        let envs = vec![format!("{MANIFEST_ENV}=/etc/policy.toml")];
        let e = config(container(root.path(), &args, &envs)).unwrap_err();
        assert!(
            e.to_string().contains("no such file in the container"),
            "{e}"
        );
        std::fs::create_dir(root.path().join("etc")).unwrap();
        write(
            &root.path().join("etc"),
            "policy.toml",
            "version = 1\n[[allow]]\nid = 3\n",
        );
        let e = config(container(root.path(), &args, &envs)).unwrap_err();
        assert!(e.to_string().contains("policy.toml:3"), "{e}");
        // The variable is Warden's: the guest does not see it.
        write(&root.path().join("etc"), "policy.toml", "version = 1\n");
        let cfg = config(container(root.path(), &args, &envs)).unwrap();
        assert!(cfg.grants.env.is_empty());
        // A bad limit is located by its key.
        write(
            root.path(),
            "warden.toml",
            "version = 1\n[limits]\ntimeout = \"5\"\n",
        );
        let e = config(container(root.path(), &args, &[])).unwrap_err();
        assert!(
            e.to_string().contains("limits.timeout: `5` has no unit"),
            "{e}"
        );
    }

    #[test]
    fn a_layer_is_read_back_from_memory() {
        let (file, path) = in_memory(b"\0asm\x01\0\0\0").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"\0asm\x01\0\0\0");
        drop(file);
        assert!(std::fs::read(&path).is_err());
    }

    #[test]
    fn only_start_is_run() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "app.wasm", "");
        assert!(program(root.path(), "/app.wasm", "_start").is_ok());
        let e = program(root.path(), "/app.wasm", "init").unwrap_err();
        assert!(e.to_string().contains("not `init`"), "{e}");
        let e = program(root.path(), "/gone.wasm", "_start").unwrap_err();
        assert!(e.to_string().contains("not found in the image"), "{e}");
    }
}
