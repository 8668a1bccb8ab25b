//! The flags that say what a guest gets and what bounds it: directories,
//! environment, listeners, limits, the compile cache, the network and the
//! audit log. `run` takes them (and `serve` will), and they become one
//! validated [`RunConfig`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgMatches, Args};
use warden_host::{CacheSetting, Limits, ListenSpec, RunConfig};
use warden_net::socket::ListenOn;
use warden_policy::manifest::{Listen, ListenTls};
use warden_wasi::{DirGrant, Grants};

use crate::network::NetworkArgs;
use crate::values;

/// What a guest is granted and how it is bounded.
#[derive(Args)]
pub struct GuestArgs {
    /// Grant a host directory read-write, at GUEST inside the program
    /// (default: the same path). Repeatable. Example: --dir ./data::/data
    #[arg(long = "dir", value_name = "HOST[::GUEST]", value_parser = |s: &str| values::dir(s, false))]
    dirs: Vec<DirGrant>,

    /// Grant a host directory read-only: writes inside it fail in the
    /// program with a permission error. Repeatable. Example: --dir-ro ./site::/site
    #[arg(long = "dir-ro", value_name = "HOST[::GUEST]", value_parser = |s: &str| values::dir(s, true))]
    dirs_ro: Vec<DirGrant>,

    /// Set an environment variable for the program, or copy one from
    /// Warden's environment when only NAME is given. Repeatable; a later
    /// NAME wins. Example: --env LOG=debug --env HOME
    #[arg(long = "env", value_name = "NAME[=VALUE]", value_parser = values::env)]
    env: Vec<(String, String)>,

    /// How long a TLS handshake Warden does (in or out) may take (default
    /// 10s); a slower one is dropped. Example: --tls-handshake-timeout 5s
    #[arg(long, value_name = "DURATION", value_parser = values::duration)]
    tls_handshake_timeout: Option<Duration>,

    /// Limit the guest's memory: linear memory plus 8 bytes per table
    /// element, for the whole instance. A growth past it fails inside the
    /// program (memory.grow and table.grow return -1). Units: B, KiB, MiB,
    /// GiB (or KB, MB, GB). Example: --max-memory 64MiB
    #[arg(long, value_name = "SIZE", value_parser = values::size)]
    max_memory: Option<u64>,

    /// Limit table elements, all tables together (default 10000000). A
    /// growth past it fails inside the program. Example: --max-table-elements 100000
    #[arg(long, value_name = "N", value_parser = values::count)]
    max_table_elements: Option<u64>,

    /// Refuse program files larger than SIZE (default 128MiB), binary or
    /// text, before reading them whole. Example: --max-module-size 256MiB
    #[arg(long, value_name = "SIZE", value_parser = values::size)]
    max_module_size: Option<u64>,

    /// Stop compiling a program that takes longer than this (default 2m);
    /// Warden then exits with status 2. Compilation is not counted in
    /// --timeout. Example: --compile-timeout 30s
    #[arg(long, value_name = "DURATION", value_parser = values::duration)]
    compile_timeout: Option<Duration>,

    /// Stop the program after this much wall-clock time from its start
    /// (exit code 124), whatever it is doing or waiting for. Units: us, ms,
    /// s, m, h. Example: --timeout 500ms
    #[arg(long, value_name = "DURATION", value_parser = values::duration)]
    timeout: Option<Duration>,

    /// Stop the program after it has used N units of fuel, about one per
    /// wasm instruction (exit code 124). Example: --fuel 100000000
    #[arg(long, value_name = "N", value_parser = values::fuel)]
    fuel: Option<u64>,

    /// What the program's wall clock reads: real (the host's; the
    /// default), frozen (always 1970-01-01T00:00:00Z), frozen:TIME
    /// (always TIME) or start:TIME (TIME when the program starts, then
    /// moving on at the real rate), with TIME in RFC 3339. For every ABI:
    /// preview1, WASI 0.2 and 0.3. Example: --wall-clock frozen:2024-05-01T12:00:00Z
    #[arg(long, value_name = "real|frozen[:TIME]|start:TIME", value_parser = warden_host::virt_text::wall_clock)]
    wall_clock: Option<warden_wasi::WallClock>,

    /// What the program's monotonic clock reads: virtual (nanoseconds
    /// since the program started, so it learns nothing of the host's
    /// uptime; the default) or real (the host's own monotonic clock).
    /// Both advance at the real rate, as sleeps need. Example: --monotonic-clock real
    #[arg(long, value_name = "virtual|real", value_parser = warden_host::virt_text::monotonic_clock)]
    monotonic_clock: Option<warden_wasi::MonotonicClock>,

    /// Make every random source the program can read (secure and
    /// insecure random bytes, the hash-map seed) a fixed stream derived
    /// from N, so runs replay the same way. For tests and replay only:
    /// keys, tokens and nonces made under it are predictable, and Warden
    /// says so on stderr. Example: --random-seed 42
    #[arg(long, value_name = "N")]
    random_seed: Option<u64>,

    /// Compose the component with the component in FILE before it runs:
    /// each of the program's imports that FILE exports (same interface,
    /// a compatible version) is satisfied by it: a mock with canned
    /// answers, or a bridge over another interface. A plug's own imports
    /// are satisfied the same way (by later plugs too, so plugs chain) or
    /// by Warden under the same policy; its calls are the program's. A
    /// plug that satisfies nothing is an error. Repeatable; the first
    /// plug that fits wins. Components only. Example: --plug kv-mock.wasm
    #[arg(long = "plug", value_name = "FILE")]
    plugs: Vec<PathBuf>,

    /// Allow the component to import only interfaces matching PATTERN
    /// (after its plugs): NAMESPACE:PACKAGE/INTERFACE[@VERSION], where the
    /// package or interface may be * and the version may end in *. With
    /// any given, a component importing anything else is refused before
    /// it starts, each import named. Repeatable.
    /// Example: --world-import 'wasi:cli/*' --world-import 'wasi:http/outgoing-handler@0.2.*'
    #[arg(long = "world-import", value_name = "PATTERN", value_parser = world_pattern)]
    world_imports: Vec<warden_policy::world::ImportPattern>,

    /// Allow the component to import only what the WIT world WORLD (the
    /// package's only world when not named) in the WIT package in DIR
    /// (its deps/ beside it) imports, at versions the linker would take
    /// for them (0.2.x for @0.2.0). Adds to --world-import. Repeatable.
    /// Example: --world ./wit:tenant
    #[arg(long = "world", value_name = "DIR[:WORLD]")]
    worlds: Vec<String>,

    /// Provide wasi:config/store to the component, with KEY set to VALUE
    /// (repeatable; a later KEY wins, and the flags win over the
    /// manifest's [config]). Without any, a component importing
    /// wasi:config is refused by name. Example: --config greeting=hello
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = config_pair)]
    config: Vec<(String, String)>,

    /// Provide wasi:keyvalue (store, atomics, batch @0.2.0-draft) to the
    /// component: an in-memory store of at most SIZE bytes (default
    /// 4MiB), its own under `warden run`, shared by an app's instances
    /// under `warden serve`; a write past SIZE fails in the component.
    /// Example: --keyvalue memory:16MiB
    #[arg(long, value_name = "memory[:SIZE]", value_parser = warden_host::units::keyvalue_store)]
    keyvalue: Option<u64>,

    /// Keep compiled code in DIR instead of the user cache directory
    /// (~/.cache/warden on Linux). Example: --cache-dir /var/cache/warden
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    cache_dir: Option<PathBuf>,

    /// Compile on every start; neither read nor write the compile cache.
    /// Example: warden run --no-cache app.wasm
    #[arg(long)]
    no_cache: bool,

    /// Print what Warden does (file kind, cache use, timings) and full error
    /// chains to stderr. Example: warden run -v app.wasm
    #[arg(short, long)]
    pub verbose: bool,

    #[command(flatten)]
    network: NetworkArgs,

    #[command(flatten)]
    telemetry: crate::telemetry::TelemetryArgs,

    /// Write one JSON line per network decision (allowed or denied) to
    /// FILE, appending; `-` is stderr. A decision the guest repeats is
    /// written in full 5 times, then counted into one summary line a
    /// second (`repeated`: how many it stands for). A FIFO nobody reads is
    /// waited for 5s, then refused. Example: --audit audit.jsonl
    #[arg(long, value_name = "FILE")]
    audit: Option<String>,

    /// The largest the --audit file grows (default 64MiB; `warden serve`'s
    /// --access-log too): past it the file is renamed FILE.1 (replacing
    /// an older one) and a new FILE starts with a line saying so, so the
    /// disk holds at most twice this. Example: --audit-max-size 16MiB
    #[arg(long, value_name = "SIZE", value_parser = values::size)]
    audit_max_size: Option<u64>,
}

impl GuestArgs {
    /// The network flags, for a command that resolves more than one
    /// policy (an app with its own manifest under `warden serve`).
    pub fn network(&self) -> &NetworkArgs {
        &self.network
    }

    /// The clocks and seed the flags give, over `manifest`'s (a flag
    /// wins), with the warning a seed calls for.
    fn virt_over(&self, manifest: warden_host::manifest::ManifestTime) -> warden_wasi::Virtual {
        let flags = warden_host::manifest::ManifestTime {
            wall: self.wall_clock,
            monotonic: self.monotonic_clock,
            random_seed: self.random_seed,
        };
        let virt = flags.over(manifest.over(warden_wasi::Virtual::default()));
        if let Some(seed) = virt.random_seed {
            warden_net::out::line(&seed_warning(seed));
        }
        virt
    }

    /// The plugs and world the flags give, after `manifest`'s: its plugs
    /// first, then the flags'; the world is every pattern of both.
    pub fn imports_over(
        &self,
        manifest: warden_host::Imports,
    ) -> Result<warden_host::Imports, String> {
        let mut imports = manifest;
        for spec in &self.worlds {
            let (dir, world) = match spec.split_once(':') {
                _ if std::path::Path::new(spec).is_dir() => (spec.as_str(), None),
                Some((dir, world)) => (dir, Some(world)),
                None => (spec.as_str(), None),
            };
            let from_wit = warden_host::world_wit::from_wit(std::path::Path::new(dir), world)
                .map_err(|e| format!("--world {spec}: {e}"))?;
            imports
                .world
                .get_or_insert_with(Default::default)
                .imports
                .extend(from_wit.imports);
        }
        imports.plugs.extend(
            self.plugs
                .iter()
                .map(|file| warden_host::compose::PlugSpec {
                    file: file.clone(),
                    sha256: None,
                }),
        );
        if !self.world_imports.is_empty() {
            imports
                .world
                .get_or_insert_with(Default::default)
                .imports
                .extend(self.world_imports.iter().cloned());
        }
        Ok(imports)
    }

    /// The built-in providers the flags give, over `manifest`'s: config
    /// values merged (a flag wins for its key), a store bound from the
    /// flag if given.
    pub fn providers_over(
        &self,
        manifest: warden_host::manifest::ManifestProviders,
    ) -> warden_host::manifest::ManifestProviders {
        let mut config = manifest.config;
        if !self.config.is_empty() {
            let values = config.get_or_insert_with(Vec::new);
            for (k, v) in &self.config {
                values.retain(|(key, _)| key != k);
                values.push((k.clone(), v.clone()));
            }
        }
        warden_host::manifest::ManifestProviders {
            config,
            keyvalue: self.keyvalue.or(manifest.keyvalue),
        }
    }

    /// The `--audit` flag.
    pub fn audit(&self) -> Option<&str> {
        self.audit.as_deref()
    }

    /// The `--audit-max-size` flag.
    pub fn audit_max_size(&self) -> Option<u64> {
        self.audit_max_size
    }

    /// Turn the flags into one validated configuration for `file` with
    /// `args` (argv[0] first). `matches` gives the command-line positions,
    /// so that `--dir` and `--dir-ro` grants keep the operator's order (it
    /// decides preview1 fd numbers).
    /// The manifest's listeners come back beside the configuration (whose
    /// `listeners` is empty), for the command to open as it does.
    pub fn into_config(
        self,
        matches: &ArgMatches,
        file: PathBuf,
        args: Vec<String>,
    ) -> Result<(RunConfig, Vec<Listen>), String> {
        let positions = |id: &str| -> Vec<usize> {
            matches
                .indices_of(id)
                .map(|i| i.collect())
                .unwrap_or_default()
        };
        let mut resolved = self.network.resolve(self.audit.as_deref())?;
        let virt = self.virt_over(resolved.time);
        let imports = self.imports_over(std::mem::take(&mut resolved.imports))?;
        let providers = self.providers_over(std::mem::take(&mut resolved.providers));
        let mut dirs: Vec<(usize, DirGrant)> =
            positions("dirs").into_iter().zip(self.dirs).collect();
        dirs.extend(positions("dirs_ro").into_iter().zip(self.dirs_ro));
        dirs.sort_by_key(|(at, _)| *at);

        let mut env: Vec<(String, String)> = Vec::new();
        for (name, value) in self.env {
            env.retain(|(n, _)| *n != name);
            env.push((name, value));
        }

        for w in &resolved.warnings {
            warden_net::out::line(w);
        }
        resolved.network.reporter = Some(crate::report::reporter());
        resolved.network.handshake_timeout = self.tls_handshake_timeout;
        resolved.network.audit_max_size = self.audit_max_size;
        let defaults = Limits::default();
        let telemetry = self.telemetry.start(resolved.telemetry.as_ref())?;
        let config = RunConfig {
            telemetry,
            events: crate::report::events(),
            network: resolved.network,
            file,
            listeners: Vec::new(),
            grants: Grants {
                args,
                env,
                dirs: dirs.into_iter().map(|(_, d)| d).collect(),
                closed_stdin: false,
                virt,
                config: providers.config,
                keyvalue: providers.keyvalue.map(warden_wasi::KeyValue::new),
            },
            // A flag wins over the manifest's [limits].
            limits: Limits {
                max_memory: self.max_memory.or(resolved.limits.max_memory),
                max_table_elements: self
                    .max_table_elements
                    .unwrap_or(defaults.max_table_elements),
                timeout: self.timeout.or(resolved.limits.timeout),
                fuel: self.fuel.or(resolved.limits.fuel),
                max_module_size: self.max_module_size.unwrap_or(defaults.max_module_size),
                compile_timeout: self.compile_timeout.unwrap_or(defaults.compile_timeout),
            },
            imports,
            cache: match (self.no_cache, self.cache_dir) {
                (true, _) => CacheSetting::Disabled,
                (false, Some(dir)) => CacheSetting::Dir(dir),
                (false, None) => CacheSetting::Default,
            },
            verbose: self.verbose,
            last_words: None,
            // Only the containerd shim hands over prebuilt code.
            prebuilt: None,
        };
        Ok((config, resolved.listen))
    }
}

fn config_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

fn world_pattern(s: &str) -> Result<warden_policy::world::ImportPattern, String> {
    warden_policy::world::ImportPattern::parse(s).map_err(|e| e.to_string())
}

/// What Warden says when a random seed is set: once per process, before
/// the guest runs.
pub fn seed_warning(seed: u64) -> String {
    format!(
        "warden: warning: random seed {seed}: every random source the program reads is a fixed stream (for tests and replay; anything it makes as a secret is predictable)"
    )
}

/// The listeners `run` pre-opens for its guest.
#[derive(Args)]
pub struct ListenArgs {
    /// Bind and listen on ADDR before the program starts, and hand it the
    /// listener: preview1 modules find listeners at fds 3, 4, ... in order
    /// (before directories), announced in LISTEN_FDS/LISTEN_FDNAMES and
    /// FD_COUNT/FD_NAMES; a component's TCP socket that binds ADDR takes
    /// the listener over (so it can serve a port only Warden could bind).
    /// ADDR may be fd:N or fd:NAME: a listening socket a service manager
    /// handed to Warden (systemd's LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES).
    /// NAME defaults to the socket's own name or tcp0, tcp1, ...; names
    /// must differ. Repeatable. Example: --listen http=127.0.0.1:6000
    #[arg(long = "listen", visible_alias = "tcplisten", value_name = "[NAME=]ADDR", value_parser = values::listen)]
    listen: Vec<values::ListenFlag>,

    /// Like --listen, and Warden terminates TLS on it with --tls-cert and
    /// --tls-key (or --tls-identity): the program accepts connections whose
    /// handshake already finished and reads and writes plaintext.
    /// Handshakes run on Warden's time (see --tls-handshake-timeout), never
    /// the program's. Repeatable.
    /// Example: --listen-tls web=0.0.0.0:8443 --tls-cert cert.pem --tls-key key.pem
    #[arg(long = "listen-tls", value_name = "[NAME=]ADDR", value_parser = values::listen)]
    listen_tls: Vec<values::ListenFlag>,

    /// For --listen-tls: present the program's identity certificate (its
    /// SPIFFE SVID, see --identity-ca) instead of --tls-cert and --tls-key.
    #[arg(long = "tls-identity", requires = "listen_tls", conflicts_with_all = ["tls_cert", "tls_key"])]
    tls_identity: bool,

    /// For --listen-tls with --tls-client-ca: admit only clients whose
    /// verified certificate names this SPIFFE ID (exact, or a prefix
    /// ending in /*); others are refused before the program sees them.
    /// Repeatable. Example: --peer-id 'spiffe://example.org/wasm/*'
    #[arg(long = "peer-id", value_name = "SPIFFE_ID", requires = "tls_client_ca", value_parser = |s: &str| warden_policy::spiffe::pattern(s).map(str::to_string).map_err(|e| e.to_string()))]
    peer_ids: Vec<String>,

    /// For --listen-tls: the server certificate chain (PEM, leaf first).
    /// Example: --tls-cert cert.pem
    #[arg(long = "tls-cert", value_name = "FILE", requires = "listen_tls")]
    tls_cert: Option<PathBuf>,

    /// For --listen-tls: the private key (PEM) of --tls-cert.
    /// Example: --tls-key key.pem
    #[arg(long = "tls-key", value_name = "FILE", requires = "listen_tls")]
    tls_key: Option<PathBuf>,

    /// For --listen-tls: require a client certificate signed by a CA in
    /// FILE (PEM; mutual TLS). Clients without one are refused before the
    /// program sees them. Example: --tls-client-ca clients.pem
    #[arg(long = "tls-client-ca", value_name = "FILE", requires = "listen_tls")]
    tls_client_ca: Option<PathBuf>,
}

impl ListenArgs {
    /// The manifest's listeners (`manifest`), then the flags' in the order
    /// given (it decides preview1 fd numbers), each named and checked.
    pub fn specs(
        self,
        matches: &ArgMatches,
        manifest: Vec<Listen>,
    ) -> Result<Vec<ListenSpec>, String> {
        let positions = |id: &str| -> Vec<usize> {
            matches
                .indices_of(id)
                .map(|i| i.collect())
                .unwrap_or_default()
        };
        // The manifest's listeners first, then the flags' in the order
        // given (it decides preview1 fd numbers).
        let mut listeners: Vec<ListenSpec> = Vec::new();
        let manifest = manifest.into_iter().map(|l| {
            let id = l.id();
            (l.name, l.on, id, l.tls)
        });
        let flag_tls = match (self.tls_cert, self.tls_key, self.tls_identity) {
            (cert @ Some(_), key @ Some(_), false) | (cert @ None, key @ None, true) => {
                Some(ListenTls {
                    cert,
                    key,
                    client_ca: self.tls_client_ca,
                    identity: self.tls_identity,
                    peer_ids: self.peer_ids,
                })
            }
            _ if self.listen_tls.is_empty() => None,
            _ => {
                return Err(
                    "--listen-tls needs --tls-cert and --tls-key, or --tls-identity".to_string(),
                );
            }
        };
        let mut flags: Vec<(usize, _)> = positions("listen")
            .into_iter()
            .zip(self.listen)
            .map(|(at, f)| (at, (f.name, f.on, format!("--listen {}", f.text), None)))
            .collect();
        flags.extend(
            positions("listen_tls")
                .into_iter()
                .zip(self.listen_tls)
                .map(|(at, f)| {
                    let id = format!("--listen-tls {}", f.text);
                    (at, (f.name, f.on, id, flag_tls.clone()))
                }),
        );
        flags.sort_by_key(|(at, _)| *at);
        let flags = flags.into_iter().map(|(_, f)| f);
        for (i, (name, on, id, tls)) in manifest.chain(flags).enumerate() {
            // An inherited socket keeps its own name unless given one.
            let name = name.or_else(|| on.default_name(i));
            if let Some(n) = &name
                && listeners.iter().any(|l| l.name.as_ref() == Some(n))
            {
                return Err(format!(
                    "two listeners are named `{n}`: each listener needs its own name (--listen NAME=ADDR), since the guest finds them by name in LISTEN_FDNAMES"
                ));
            }
            if listeners
                .iter()
                .any(|l| l.on == on && !matches!(on, ListenOn::Addr(a) if a.port() == 0))
            {
                return Err(format!("{on} is given twice as a listener"));
            }
            listeners.push(ListenSpec { name, on, id, tls });
        }

        Ok(listeners)
    }
}
