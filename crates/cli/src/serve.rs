//! `warden serve`: host wasi:http components on an HTTP(S) server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgMatches, Args};
use warden_host::manifest::{Loaded, ManifestProviders, ManifestTime, imports_relative_to};
use warden_host::serve::{self, AppSpec, Reuse, Route, ServeConfig, ServeLimits, ServeTls};
use warden_host::{Imports, Limits, ListenSpec};
use warden_wasi::Grants;

use crate::guest::GuestArgs;
use crate::values;

fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("expected IP:PORT, like 127.0.0.1:8080 or [::1]:8443, not `{s}`"))
}

#[derive(Args)]
#[command(
    override_usage = "warden serve [OPTIONS] [FILE]",
    long_about = "Serve HTTP requests with a wasi:http component: a WASI 0.2 proxy (exporting \
wasi:http/incoming-handler@0.2.x) or a WASI 0.3 service (wasi:http/handler@0.3.x); Warden tells \
which from the bytes. Each request gets a fresh instance by default, with the grants, network \
policy and limits below (--timeout, --fuel and --max-memory are per request). HTTP/1.1 and HTTP/2 \
(h2c with prior knowledge; ALPN over TLS); HTTPS with --tls-cert and --tls-key.\n\n\
The first line on stderr says where it serves: `warden: serving http://HOST:PORT/`. SIGTERM or \
SIGINT stops accepting and lets requests in flight finish within --shutdown-grace; a second one \
stops at once. SIGHUP reloads the certificate and key.\n\n\
Several applications: give a manifest with [[app]] entries (each with its component, route, \
grants, policy and limits; see `warden help check`) instead of FILE. The longest matching route \
wins; a request no route matches gets 404.",
    after_help = "Answers Warden gives itself: 400 a Host (or :authority) that is not \
host[:port], 404 no route, 413 body too large, 431 headers too large, 500 the guest trapped or \
gave no response (one log line with the request id), 503 too many requests in flight (with \
Retry-After), 504 the request's time ran out. A response whose body is cut after its headers \
went out (its time ran out, its client stopped reading, the guest trapped) ends so the client can \
tell: HTTP/1.1 closes without the body's end, HTTP/2 resets the stream; the access log says \
`cut`.\n\n\
Examples:\n  warden serve app.wasm\n  warden serve --addr 0.0.0.0:8443 --tls-cert cert.pem --tls-key key.pem app.wasm\n  \
warden serve --allow-connect api.example.com:443 --access-log access.jsonl --metrics 127.0.0.1:9090 app.wasm\n  \
warden serve --manifest apps.toml"
)]
pub struct ServeArgs {
    #[command(flatten)]
    guest: GuestArgs,

    /// Serve on ADDR (default 127.0.0.1:8080; port 0 picks a free one,
    /// which the first stderr line names). Repeatable.
    /// Example: --addr 0.0.0.0:8080
    #[arg(long = "addr", value_name = "ADDR", value_parser = socket_addr, help_heading = "Serving")]
    addr: Vec<SocketAddr>,

    /// Also serve on a listening socket a service manager handed over
    /// (fd:N or fd:NAME, systemd's LISTEN_FDS), or one Warden binds.
    /// Repeatable. Example: --listen fd:web
    #[arg(long = "listen", value_name = "ADDR", value_parser = values::listen, help_heading = "Serving")]
    listen: Vec<values::ListenFlag>,

    /// Serve HTTPS with this certificate chain (PEM, leaf first); needs
    /// --tls-key. Reloaded on SIGHUP. Example: --tls-cert cert.pem
    #[arg(
        long = "tls-cert",
        value_name = "FILE",
        requires = "tls_key",
        help_heading = "Serving"
    )]
    tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert. Example: --tls-key key.pem
    #[arg(
        long = "tls-key",
        value_name = "FILE",
        requires = "tls_cert",
        help_heading = "Serving"
    )]
    tls_key: Option<PathBuf>,

    /// Require client certificates signed by a CA in FILE (PEM).
    /// Example: --tls-client-ca clients.pem
    #[arg(long = "tls-client-ca", value_name = "FILE", help_heading = "Serving")]
    tls_client_ca: Option<PathBuf>,

    /// Serve HTTPS with the app's identity certificate (its SPIFFE SVID,
    /// see --identity-ca) instead of --tls-cert and --tls-key; one app
    /// only. With --tls-client-ca, the app learns who called: the client
    /// certificate's SPIFFE ID in the x-warden-peer-id header (a client's
    /// own is removed first).
    #[arg(long = "tls-identity", conflicts_with_all = ["tls_cert", "tls_key"], help_heading = "Serving")]
    tls_identity: bool,

    /// With --tls-client-ca: admit only clients whose verified certificate
    /// names this SPIFFE ID (exact, or a prefix ending in /*). Repeatable.
    /// Example: --peer-id 'spiffe://example.org/wasm/*'
    #[arg(long = "peer-id", value_name = "SPIFFE_ID", requires = "tls_client_ca", help_heading = "Serving", value_parser = |s: &str| warden_policy::spiffe::pattern(s).map(str::to_string).map_err(|e| e.to_string()))]
    peer_ids: Vec<String>,

    /// Time a client has to send a request's headers (and to finish the
    /// TLS handshake); a slower one is closed (default 10s).
    #[arg(long, value_name = "DURATION", value_parser = values::duration, help_heading = "Serving")]
    header_timeout: Option<Duration>,

    /// Close a keep-alive connection idle this long (default 60s). A
    /// connection that is still open 2s after it was told to close (HTTP/2
    /// waits for the peer's answer to a PING) is dropped.
    #[arg(long, value_name = "DURATION", value_parser = values::duration, help_heading = "Serving")]
    idle_timeout: Option<Duration>,

    /// Cut a response whose client has read none of it for this long
    /// (default 30s): the connection is closed and the request's slot and
    /// instance freed at once, so clients that stop reading cannot hold
    /// --max-requests. --timeout bounds the whole exchange too, body
    /// included.
    #[arg(long, value_name = "DURATION", value_parser = values::duration, help_heading = "Serving")]
    write_timeout: Option<Duration>,

    /// The most bytes of request headers (default 64KiB; 431 past it).
    #[arg(long, value_name = "SIZE", value_parser = values::size, help_heading = "Serving")]
    max_header: Option<u64>,

    /// The most bytes of request body (default 16MiB; 413 past it). Bodies
    /// stream to the guest; they are never buffered whole.
    #[arg(long, value_name = "SIZE", value_parser = values::size, help_heading = "Serving")]
    max_body: Option<u64>,

    /// The most connections open at once (default 1024); more wait in the
    /// kernel's backlog.
    #[arg(long, value_name = "N", value_parser = values::count, help_heading = "Serving")]
    max_connections: Option<u64>,

    /// The most requests in flight at once (default 256); more get 503
    /// with Retry-After.
    #[arg(long, value_name = "N", value_parser = values::count, help_heading = "Serving")]
    max_requests: Option<u64>,

    /// On SIGTERM or SIGINT, how long requests in flight get to finish
    /// (default 10s).
    #[arg(long, value_name = "DURATION", value_parser = values::duration, help_heading = "Serving")]
    shutdown_grace: Option<Duration>,

    /// WASI 0.3 services: how many requests one instance serves before a
    /// fresh one is made (default 1: a fresh instance per request).
    #[arg(long, value_name = "N", value_parser = values::count, help_heading = "Serving")]
    max_instance_reuse: Option<u64>,

    /// WASI 0.3 services: how many requests one instance serves at once
    /// (default 1).
    #[arg(long, value_name = "N", value_parser = values::count, help_heading = "Serving")]
    max_instance_concurrency: Option<u64>,

    /// Write one JSON line per request (request id, remote address,
    /// method, path, status, bytes in and out, duration, app, module
    /// SHA-256) to FILE, appending; `-` is stderr. Example: --access-log access.jsonl
    #[arg(long, value_name = "FILE", help_heading = "Serving")]
    access_log: Option<String>,

    /// Serve Prometheus metrics (/metrics) and a liveness check (/healthz)
    /// on ADDR, a listener of their own. Example: --metrics 127.0.0.1:9090
    #[arg(long, value_name = "ADDR", value_parser = socket_addr, help_heading = "Serving")]
    metrics: Option<SocketAddr>,

    /// Allocate instances on demand instead of from the pooling allocator
    /// (which is used when the machine can reserve it).
    #[arg(long, help_heading = "Serving")]
    no_pooling: bool,

    /// The component (with no [[app]] in the manifest).
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
}

impl ServeArgs {
    /// One validated serving configuration.
    pub fn into_config(self, matches: &ArgMatches) -> Result<ServeConfig, String> {
        let manifest_apps = match self.guest.network().manifest.as_deref() {
            Some(path) => {
                let loaded = Loaded::read(path).map_err(|e| e.to_string())?;
                let base = loaded.base;
                loaded.apps.into_iter().map(|a| (a, base.clone())).collect()
            }
            None => Vec::new(),
        };
        if self.file.is_some() != manifest_apps.is_empty() {
            return Err(if manifest_apps.is_empty() {
                "serve needs a component FILE, or a manifest with [[app]] entries".into()
            } else {
                "the manifest has [[app]] entries: give no FILE (each app names its component)"
                    .into()
            });
        }
        let origin = self.guest.network().manifest.clone().unwrap_or_default();
        let reuse = Reuse {
            max_reuse: count(self.max_instance_reuse, 1),
            max_concurrency: count(self.max_instance_concurrency, 1),
        };
        // Each app with its own manifest gets that policy (plus the flags).
        let mut app_networks = Vec::new();
        for (app, base) in &manifest_apps {
            let network = match &app.manifest {
                Some(m) => {
                    let resolved = self
                        .guest
                        .network()
                        .resolve_with(Some(&base.join(m)), self.guest.audit())
                        .map_err(|e| format!("app `{}`: {e}", app.name))?;
                    let mut network = resolved.network;
                    network.audit_max_size = self.guest.audit_max_size();
                    Some(OwnManifest {
                        network,
                        time: resolved.time,
                        imports: resolved.imports,
                        providers: resolved.providers,
                    })
                }
                None => None,
            };
            app_networks.push(network);
        }
        let file = self
            .file
            .clone()
            .or_else(|| manifest_apps.first().map(|(a, _)| a.component.clone()))
            .unwrap_or_default();
        let name = file_name(&file);
        let max_log = self
            .guest
            .audit_max_size()
            .unwrap_or(warden_net::linelog::DEFAULT_MAX_SIZE);
        let (base, _manifest_listeners) =
            self.guest
                .into_config(matches, file.clone(), vec![name.clone()])?;
        let reporter = base.network.reporter.clone();
        let mut apps = Vec::new();
        if manifest_apps.is_empty() {
            apps.push(AppSpec {
                name: app_name(&file),
                file,
                route: Route::default(),
                grants: Grants {
                    closed_stdin: true,
                    ..base.grants.clone()
                },
                network: base.network.clone(),
                limits: base.limits,
                reuse,
                imports: base.imports.clone(),
            });
        }
        for ((app, dir), network) in manifest_apps.into_iter().zip(app_networks) {
            let fail = |e: String| format!("app `{}`: {e}", app.name);
            let mut dirs = Vec::new();
            for d in &app.dirs {
                dirs.push(values::dir(&dir.join(d).to_string_lossy(), false).map_err(fail)?);
            }
            for d in &app.dirs_ro {
                dirs.push(values::dir(&dir.join(d).to_string_lossy(), true).map_err(fail)?);
            }
            let (network, own_time, own_imports, own_providers) = match network {
                Some(own) => (
                    Some(own.network),
                    own.time,
                    own.imports,
                    Some(own.providers),
                ),
                None => (None, ManifestTime::default(), Imports::default(), None),
            };
            // The app's plugs and world, else its own manifest's, else the
            // server's: a plug that satisfies nothing is an error, so a
            // server's plugs are not forced on an app that names its own.
            let app_imports = imports_relative_to(&app.imports, &dir);
            let pick = |mine: &Imports, fallback: &Imports| Imports {
                plugs: if mine.plugs.is_empty() {
                    fallback.plugs.clone()
                } else {
                    mine.plugs.clone()
                },
                world: mine.world.clone().or_else(|| fallback.world.clone()),
            };
            let imports = pick(&app_imports, &pick(&own_imports, &base.imports));
            // Config values and a store of its own: the app's, else its
            // own manifest's, else the server's; each app's store is its
            // own, shared by its instances.
            let mine = ManifestProviders::read(
                &app.providers,
                &origin,
                &format!("app `{}`.keyvalue", app.name),
            )
            .map_err(|e| e.to_string())?;
            let own = own_providers.unwrap_or_default();
            let config = mine
                .config
                .or(own.config)
                .or_else(|| base.grants.config.clone());
            let keyvalue = mine
                .keyvalue
                .or(own.keyvalue)
                .or_else(|| base.grants.keyvalue.as_ref().map(|k| k.max_size()))
                .map(warden_wasi::KeyValue::new);
            let mut network = network.unwrap_or_else(|| base.network.clone());
            // The app's keys, then its own manifest's [time] and [random],
            // then the server's (flags over the manifest).
            let virt = ManifestTime::read(&app.time, &origin, &format!("app `{}`", app.name))
                .map_err(|e| e.to_string())?
                .over(own_time.over(base.grants.virt));
            if let Some(seed) = virt.random_seed
                && base.grants.virt.random_seed != Some(seed)
            {
                warden_net::out::line(&format!(
                    "{} (app `{}`)",
                    crate::guest::seed_warning(seed),
                    app.name
                ));
            }
            network.reporter = reporter.clone();
            // The app's own quotas, else its network's (the flags, else
            // its manifest's [limits]).
            network.quotas = warden_host::manifest::quotas(
                app.max_conns_out,
                app.max_conns_in,
                app.max_udp_sockets,
            )
            .map_err(|(key, e)| fail(format!("{key}: {e}")))?
            .or(network.quotas);
            let rate = |key: &str, v: &Option<String>| {
                v.as_deref()
                    .map(warden_host::units::rate)
                    .transpose()
                    .map_err(|e| fail(format!("{key}: {e}")))
            };
            network.egress_rate =
                rate("max_egress_rate", &app.max_egress_rate)?.or(network.egress_rate);
            network.ingress_rate =
                rate("max_ingress_rate", &app.max_ingress_rate)?.or(network.ingress_rate);
            let limits = Limits {
                max_memory: match &app.max_memory {
                    Some(m) => Some(values::size(m).map_err(|e| fail(format!("max_memory: {e}")))?),
                    None => base.limits.max_memory,
                },
                timeout: match &app.timeout {
                    Some(t) => {
                        Some(values::duration(t).map_err(|e| fail(format!("timeout: {e}")))?)
                    }
                    None => base.limits.timeout,
                },
                fuel: app.fuel.or(base.limits.fuel),
                ..base.limits
            };
            let component = dir.join(&app.component);
            apps.push(AppSpec {
                name: app.name.clone(),
                route: Route {
                    prefix: app.path.clone(),
                    host: app.host.clone(),
                },
                grants: Grants {
                    args: vec![file_name(&component)],
                    env: app.env.clone(),
                    dirs,
                    closed_stdin: true,
                    virt,
                    config,
                    keyvalue,
                },
                file: component,
                network,
                limits,
                reuse,
                imports,
            });
        }
        let defaults = ServeLimits::default();
        let size =
            |v: Option<u64>, d: usize| v.map_or(d, |n| usize::try_from(n).unwrap_or(usize::MAX));
        Ok(ServeConfig {
            telemetry: base.telemetry.clone(),
            apps,
            addrs: self.addr,
            listeners: self
                .listen
                .into_iter()
                .enumerate()
                .map(|(i, f)| ListenSpec {
                    name: f.name.or_else(|| f.on.default_name(i)),
                    id: format!("--listen {}", f.text),
                    on: f.on,
                    tls: None,
                })
                .collect(),
            tls: match (self.tls_cert, self.tls_key, self.tls_identity) {
                (cert @ Some(_), key @ Some(_), false) | (cert @ None, key @ None, true) => {
                    Some(ServeTls {
                        cert,
                        key,
                        client_ca: self.tls_client_ca,
                        identity: self.tls_identity,
                        peer_ids: self.peer_ids,
                    })
                }
                _ if self.tls_client_ca.is_some() => {
                    return Err(
                        "--tls-client-ca needs HTTPS: --tls-cert and --tls-key, or --tls-identity"
                            .to_string(),
                    );
                }
                _ => None,
            },
            limits: ServeLimits {
                header_timeout: self.header_timeout.unwrap_or(defaults.header_timeout),
                idle_timeout: self.idle_timeout.unwrap_or(defaults.idle_timeout),
                write_timeout: self.write_timeout.unwrap_or(defaults.write_timeout),
                max_header: size(self.max_header, defaults.max_header),
                max_body: self.max_body.unwrap_or(defaults.max_body),
                max_connections: size(self.max_connections, defaults.max_connections),
                max_requests: size(self.max_requests, defaults.max_requests),
                shutdown_grace: self.shutdown_grace.unwrap_or(defaults.shutdown_grace),
            },
            access_log: self.access_log.map(|a| {
                if a == "-" {
                    warden_net::AuditDest::Stderr
                } else {
                    warden_net::AuditDest::File(PathBuf::from(a))
                }
            }),
            access_log_max_size: max_log,
            metrics: self.metrics,
            cache: base.cache,
            pooling: !self.no_pooling,
            handshake_timeout: base
                .network
                .handshake_timeout
                .unwrap_or(warden_net::tls::DEFAULT_HANDSHAKE_TIMEOUT),
            verbose: base.verbose,
            // The server's quotas (flags, else its manifest's [limits])
            // bound all apps together, as well as each app by default.
            quota_ceiling: base.network.quotas,
            events: base.events,
        })
    }
}

fn count(v: Option<u64>, default: usize) -> usize {
    v.map_or(default, |n| usize::try_from(n).unwrap_or(usize::MAX).max(1))
}

fn file_name(file: &Path) -> String {
    file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// An app's name from its file: the stem, in the characters app names take.
fn app_name(file: &Path) -> String {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() { "app".into() } else { name }
}

/// What an app's own manifest (`[[app]] manifest = ...`) gives it.
struct OwnManifest {
    network: warden_host::Network,
    time: ManifestTime,
    imports: Imports,
    providers: ManifestProviders,
}

/// Serve; exit 0 after a graceful stop, 2 when Warden could not serve.
pub fn serve(cfg: ServeConfig) -> ExitCode {
    let result = serve::serve(&cfg);
    crate::telemetry::finish(cfg.telemetry.as_ref());
    match result {
        Ok(summary) => {
            warden_net::out::line(&format!(
                "warden: stopped after {} requests",
                summary.requests
            ));
            ExitCode::SUCCESS
        }
        Err(e) => crate::usage_error(&crate::report::host_error(&e, cfg.verbose)),
    }
}
