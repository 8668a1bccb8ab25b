//! The `warden` binary: flags in, one validated run configuration out, then
//! the exit code of whatever the guest did.
//!
//! Exit codes: the guest's own code when it exits; 124 when `--timeout` or
//! `--fuel` stopped it; 134 when it trapped; 130/143 when SIGINT/SIGTERM
//! stopped Warden; 2 for Warden's own errors (bad flags, an unreadable or
//! unsupported file, a grant that cannot be set up). `check` exits 0 or 2,
//! `explain` 0 (allowed), 1 (denied) or 2.

mod network;
mod values;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use network::NetworkArgs;
use warden_host::{CacheSetting, LimitHit, Limits, ListenSpec, Outcome, RunConfig};
use warden_policy::Action;
use warden_wasi::{DirGrant, Grants};

/// Exit code for a guest stopped by `--timeout` or `--fuel` (as timeout(1)).
const EXIT_LIMIT: u8 = 124;
/// Exit code for a guest that trapped (as a process killed by SIGABRT).
const EXIT_TRAP: u8 = 134;
/// Exit code for Warden's own errors.
const EXIT_USAGE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "warden",
    version,
    about = "Run untrusted WebAssembly programs with nothing granted by default",
    long_about = "Warden runs WebAssembly programs (WASI preview1 modules, WASI 0.2 and 0.3 \
components) and gives them nothing unless the operator grants it: no files, no environment \
variables, no network. Grants are flags on each command, or a manifest file; every network \
decision can be written to an audit log.",
    after_help = "Examples:\n  warden run hello.wasm\n  warden run --dir-ro ./site::/site --env MODE=prod server.wasm --port 8080\n  \
warden run --allow-connect api.example.com:80 --audit - client.wasm\n  warden check warden.toml\n  \
warden explain --manifest warden.toml connect db.example.com:5432\n  warden help run"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a WebAssembly program to completion
    Run(RunArgs),
    /// Validate a manifest and print the policy it resolves to
    #[command(
        long_about = "Validate a manifest and print the resolved policy: one rule per line, \
its id then what it does, in the order decisions consider them, then the listeners, DNS server and \
audit file. Errors name the file, line and column and say what was expected (exit status 2).\n\n\
The manifest (TOML, version 1; unknown keys are errors):\n\n\
  version = 1\n  dns_server = \"127.0.0.1:53\"      # optional\n  audit = \"audit.jsonl\"            # optional; - is stderr\n\n\
  [[allow]]\n  id = \"api\"\n  target = \"api.example.com\"       # IP, CIDR, name, *.suffix or *\n  ports = \"443\"                    # N, N-M or *\n  \
rights = [\"connect\", \"resolve\"]  # connect bind listen accept udp-bind udp-send udp-recv resolve\n\n\
  [[deny]]\n  id = \"metadata\"\n  target = \"169.254.0.0/16\"        # ports default to *\n\n\
  [[listen]]\n  name = \"http\"\n  addr = \"127.0.0.1:8080\""
    )]
    Check {
        /// The manifest file
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Say whether the policy allows an action, and which rule decides
    Explain(ExplainArgs),
}

#[derive(Args)]
#[command(
    override_usage = "warden explain [--manifest FILE] [NETWORK FLAGS] <ACTION> <TARGET>",
    long_about = "Say whether the policy made of a manifest and flags (the same ones `warden run` \
takes) allows ACTION on TARGET, and which rule decides. Prints `allow` or `deny`, the rule's id and \
the reason. Exit status: 0 allowed, 1 denied, 2 bad input.",
    after_help = "ACTION: connect, bind, listen, accept, udp-bind, udp-send, udp-recv, resolve, http-request.\n\
TARGET: HOST:PORT, IP:PORT or [IPv6]:PORT; a bare name for resolve.\n\n\
Examples:\n  warden explain --manifest warden.toml connect db.example.com:5432\n  \
warden explain --allow-connect '*.example.com:443' connect evilexample.com:443\n  warden explain --allow-resolve '*.example.com' resolve api.example.com"
)]
struct ExplainArgs {
    #[command(flatten)]
    network: NetworkArgs,

    /// What the guest would do
    #[arg(value_name = "ACTION", value_parser = action)]
    action: Action,

    /// What it would do it to
    #[arg(value_name = "TARGET")]
    target: String,
}

fn action(s: &str) -> Result<Action, String> {
    Action::from_name(s).ok_or_else(|| {
        let names: Vec<_> = Action::ALL.iter().map(|a| a.as_str()).collect();
        format!("expected one of {}", names.join(", "))
    })
}

#[derive(Args)]
#[command(
    override_usage = "warden run [OPTIONS] <FILE> [ARGS]...",
    long_about = "Run a WebAssembly program to completion.\n\nFILE is a WASI preview1 core module \
(.wasm, or .wat text), or a component exporting wasi:cli/run@0.2.x or @0.3.x; Warden tells which \
from the bytes. ARGS go to the program, whose argv[0] is FILE's name. The program gets stdin, \
stdout and stderr, and nothing else unless granted below. Networking is denied unless granted \
(the network flags, or --manifest): a refused socket, name lookup or HTTP request fails inside the \
guest with an access-denied error, and Warden says once on stderr which flag would allow it.",
    after_help = "Exit status: the guest's own exit code; 124 when --timeout or --fuel stopped it; \
134 when it trapped; 130 or 143 when SIGINT or SIGTERM stopped it (the audit log flushed first); 2 \
when Warden could not run it (bad flags, unreadable or unsupported file).\n\n\
Examples:\n  warden run app.wasm --app-flag value\n  warden run --allow-connect api.example.com:443 --audit audit.jsonl client.wasm\n  \
warden run --listen 127.0.0.1:6000 server.wasm\n  warden run --dir ./out::/out --dir-ro ./in::/in convert.wasm /in/a /out/b\n  \
warden run --env HOME --env LOG=debug --max-memory 64MiB --timeout 2s --fuel 100000000 job.wasm"
)]
struct RunArgs {
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

    /// Bind and listen on ADDR before the program starts, and hand it the
    /// listener: preview1 modules find listeners at fds 3, 4, ... in order
    /// (before directories), announced in LISTEN_FDS/LISTEN_FDNAMES and
    /// FD_COUNT/FD_NAMES. NAME defaults to tcp0, tcp1, ... Repeatable.
    /// Example: --listen http=127.0.0.1:6000
    #[arg(long = "listen", visible_alias = "tcplisten", value_name = "[NAME=]ADDR", value_parser = values::listen)]
    listen: Vec<(Option<String>, std::net::SocketAddr)>,

    /// Limit linear memory, for each memory and for the whole instance. A
    /// growth past it fails inside the program (memory.grow returns -1).
    /// Units: B, KiB, MiB, GiB (or KB, MB, GB). Example: --max-memory 64MiB
    #[arg(long, value_name = "SIZE", value_parser = values::size)]
    max_memory: Option<u64>,

    /// Stop the program after this much wall-clock time (exit code 124).
    /// Units: us, ms, s, m, h. Example: --timeout 500ms
    #[arg(long, value_name = "DURATION", value_parser = values::duration)]
    timeout: Option<Duration>,

    /// Stop the program after it has used N units of fuel, about one per
    /// wasm instruction (exit code 124). Example: --fuel 100000000
    #[arg(long, value_name = "N", value_parser = values::fuel)]
    fuel: Option<u64>,

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
    verbose: bool,

    #[command(flatten)]
    network: NetworkArgs,

    /// Write one JSON line per network decision (allowed or denied) to
    /// FILE, appending; `-` is stderr. Example: --audit audit.jsonl
    #[arg(long, value_name = "FILE")]
    audit: Option<String>,

    /// The program (a .wasm or .wat file), then its arguments. Everything
    /// after FILE goes to the program untouched, flags included.
    /// Example: warden run app.wasm --port 8080
    #[arg(
        value_name = "FILE [ARGS]",
        help_heading = "Arguments",
        required = true,
        num_args = 1..,
        trailing_var_arg = true
    )]
    program: Vec<String>,
}

impl RunArgs {
    /// Turn parsed flags into one validated configuration. `matches` gives
    /// the command-line positions, so that `--dir` and `--dir-ro` grants
    /// keep the operator's order (it decides preview1 fd numbers).
    fn into_config(self, matches: &ArgMatches) -> Result<RunConfig, String> {
        let positions = |id: &str| -> Vec<usize> {
            matches
                .indices_of(id)
                .map(|i| i.collect())
                .unwrap_or_default()
        };
        let mut dirs: Vec<(usize, DirGrant)> =
            positions("dirs").into_iter().zip(self.dirs).collect();
        dirs.extend(positions("dirs_ro").into_iter().zip(self.dirs_ro));
        dirs.sort_by_key(|(at, _)| *at);

        let mut env: Vec<(String, String)> = Vec::new();
        for (name, value) in self.env {
            env.retain(|(n, _)| *n != name);
            env.push((name, value));
        }

        let mut program = self.program.into_iter();
        let file = PathBuf::from(program.next().expect("clap requires FILE"));
        let name = file.file_name().map_or_else(
            || file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let args = std::iter::once(name).chain(program).collect();

        let resolved = self.network.resolve(self.audit.as_deref())?;
        for w in &resolved.warnings {
            eprintln!("{w}");
        }
        // The manifest's listeners first, then the flags'.
        let listeners = resolved
            .listen
            .into_iter()
            .map(|l| (l.name, l.addr))
            .chain(self.listen)
            .enumerate()
            .map(|(i, (name, addr))| ListenSpec {
                name: name.unwrap_or_else(|| format!("tcp{i}")),
                addr,
            })
            .collect();

        Ok(RunConfig {
            network: resolved.network,
            file,
            listeners,
            grants: Grants {
                args,
                env,
                dirs: dirs.into_iter().map(|(_, d)| d).collect(),
            },
            limits: Limits {
                max_memory: self.max_memory,
                timeout: self.timeout,
                fuel: self.fuel,
            },
            cache: match (self.no_cache, self.cache_dir) {
                (true, _) => CacheSetting::Disabled,
                (false, Some(dir)) => CacheSetting::Dir(dir),
                (false, None) => CacheSetting::Default,
            },
            verbose: self.verbose,
        })
    }
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cli.command {
        Command::Run(args) => {
            let sub = matches
                .subcommand_matches("run")
                .expect("clap dispatched the run subcommand");
            match args.into_config(sub) {
                Ok(cfg) => run(cfg),
                Err(e) => usage_error(&e),
            }
        }
        Command::Check { file } => check(&file),
        Command::Explain(args) => explain(&args),
    }
}

fn usage_error(e: &str) -> ExitCode {
    eprintln!("warden: error: {e}");
    ExitCode::from(EXIT_USAGE)
}

fn check(file: &std::path::Path) -> ExitCode {
    let m = match network::read_manifest(file) {
        Ok(m) => m,
        Err(e) => return usage_error(&e),
    };
    let width = m.rules.iter().map(|r| r.id.len()).max().unwrap_or(0);
    if m.rules.is_empty() {
        println!("# no rules: every network action is denied");
    }
    for r in &m.rules {
        println!("{:width$}  {r}", r.id);
    }
    for (i, l) in m.listen.iter().enumerate() {
        let name = l.name.clone().unwrap_or_else(|| format!("tcp{i}"));
        println!("listen {name}={}", l.addr);
    }
    if let Some(dns) = m.dns_server {
        println!("dns-server {dns}");
    }
    if let Some(audit) = &m.audit {
        println!("audit {audit}");
    }
    let policy = warden_policy::Policy::new(m.rules.clone());
    for r in policy.allow_all_rules() {
        eprintln!(
            "warden: warning: rule {} ({r}) allows everything of its kind; grant only what the program needs",
            r.id
        );
    }
    ExitCode::SUCCESS
}

fn explain(args: &ExplainArgs) -> ExitCode {
    let resolved = match args.network.resolve(None) {
        Ok(r) => r,
        Err(e) => return usage_error(&e),
    };
    let target = match network::explain_target(args.action, &args.target) {
        Ok(t) => t,
        Err(e) => return usage_error(&e),
    };
    let d = resolved.network.policy.decide(args.action, &target);
    println!("{} {} {target}", d.verdict.as_str(), args.action);
    println!("rule: {}", d.rule);
    println!("reason: {}", d.reason);
    if d.is_allowed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn run(cfg: RunConfig) -> ExitCode {
    let outcome = match warden_host::run(&cfg) {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("warden: error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match outcome {
        // Exit codes are 8 bits on Unix; pass the guest's through as the OS
        // would truncate it.
        Outcome::Exited(code) => ExitCode::from(code as u8),
        Outcome::Limit(LimitHit::Timeout(d)) => {
            eprintln!(
                "warden: guest stopped: --timeout {} reached",
                values::show_duration(d)
            );
            ExitCode::from(EXIT_LIMIT)
        }
        Outcome::Limit(LimitHit::Fuel(n)) => {
            eprintln!("warden: guest stopped: --fuel {n} exhausted");
            ExitCode::from(EXIT_LIMIT)
        }
        Outcome::Trapped {
            reason,
            backtrace,
            detail,
        } => {
            eprintln!("warden: guest trapped: {reason}");
            if let Some(bt) = backtrace {
                eprint!("{bt}");
            }
            let rust_backtrace =
                std::env::var("RUST_BACKTRACE").is_ok_and(|v| !v.is_empty() && v != "0");
            if cfg.verbose || rust_backtrace {
                eprintln!("warden: full error: {detail}");
            }
            ExitCode::from(EXIT_TRAP)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Result<RunConfig, clap::Error> {
        let matches = Cli::command().try_get_matches_from(argv)?;
        let Command::Run(args) = Cli::from_arg_matches(&matches)?.command else {
            panic!("not a run command")
        };
        Ok(args
            .into_config(matches.subcommand_matches("run").unwrap())
            .unwrap())
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn nothing_is_granted_by_default() {
        let cfg = parse(&["warden", "run", "dir/app.wasm"]).unwrap();
        assert_eq!(cfg.grants.args, ["app.wasm"]);
        assert!(cfg.grants.env.is_empty());
        assert!(cfg.grants.dirs.is_empty());
        assert_eq!(cfg.limits, Limits::default());
        assert_eq!(cfg.cache, CacheSetting::Default);
    }

    #[test]
    fn guest_args_follow_the_file_untouched() {
        let cfg = parse(&["warden", "run", "a.wasm", "--dir", "x", "-v", "--", "y"]).unwrap();
        assert_eq!(cfg.grants.args, ["a.wasm", "--dir", "x", "-v", "--", "y"]);
        assert!(cfg.grants.dirs.is_empty());
        assert!(!cfg.verbose);
    }

    #[test]
    fn dir_grants_keep_command_line_order() {
        let tmp = std::env::temp_dir();
        let t = tmp.to_str().unwrap();
        let (a, b, c) = (format!("{t}::/a"), format!("{t}::/b"), format!("{t}::/c"));
        let cfg = parse(&[
            "warden", "run", "--dir-ro", &a, "--dir", &b, "--dir-ro", &c, "x.wasm",
        ])
        .unwrap();
        let got: Vec<_> = cfg
            .grants
            .dirs
            .iter()
            .map(|d| (d.guest.as_str(), d.read_only))
            .collect();
        assert_eq!(got, [("/a", true), ("/b", false), ("/c", true)]);
    }

    #[test]
    fn listeners_keep_order_and_get_default_names() {
        let cfg = parse(&[
            "warden",
            "run",
            "--listen",
            "127.0.0.1:6000",
            "--tcplisten",
            "web=[::1]:80",
            "x.wasm",
        ])
        .unwrap();
        let got: Vec<_> = cfg
            .listeners
            .iter()
            .map(|l| (l.name.as_str(), l.addr.to_string()))
            .collect();
        assert_eq!(
            got,
            [
                ("tcp0", "127.0.0.1:6000".to_string()),
                ("web", "[::1]:80".to_string())
            ]
        );
    }

    #[test]
    fn later_env_wins() {
        let cfg = parse(&[
            "warden", "run", "--env", "A=1", "--env", "B=2", "--env", "A=3", "x.wasm",
        ])
        .unwrap();
        assert_eq!(
            cfg.grants.env,
            [
                ("B".to_string(), "2".to_string()),
                ("A".to_string(), "3".to_string())
            ]
        );
    }

    #[test]
    fn limits_and_cache_flags() {
        let cfg = parse(&[
            "warden",
            "run",
            "--max-memory",
            "64MiB",
            "--timeout",
            "500ms",
            "--fuel",
            "1000",
            "--no-cache",
            "x.wasm",
        ])
        .unwrap();
        assert_eq!(
            cfg.limits,
            Limits {
                max_memory: Some(64 << 20),
                timeout: Some(Duration::from_millis(500)),
                fuel: Some(1000)
            }
        );
        assert_eq!(cfg.cache, CacheSetting::Disabled);
        let cfg = parse(&["warden", "run", "--cache-dir", "/tmp/c", "x.wasm"]).unwrap();
        assert_eq!(cfg.cache, CacheSetting::Dir("/tmp/c".into()));
    }

    #[test]
    fn bad_flags_are_usage_errors_naming_the_flag() {
        let err = |argv: &[&str]| {
            let e = parse(argv).expect_err("should fail");
            assert_eq!(e.exit_code(), 2);
            e.to_string()
        };
        let e = err(&["warden", "run", "--max-memory", "lots", "x.wasm"]);
        assert!(
            e.contains("invalid value 'lots' for '--max-memory <SIZE>'"),
            "{e}"
        );
        assert!(e.contains("like 64MiB"), "{e}");
        let e = err(&["warden", "run", "--timeout", "5", "x.wasm"]);
        assert!(
            e.contains("'--timeout <DURATION>'") && e.contains("`5` has no unit"),
            "{e}"
        );
        let e = err(&[
            "warden",
            "run",
            "--no-cache",
            "--cache-dir",
            "/tmp",
            "x.wasm",
        ]);
        assert!(e.contains("cannot be used with"), "{e}");
        let e = err(&["warden", "run"]);
        assert!(e.contains("<FILE [ARGS]>"), "{e}");
        let e = err(&["warden", "run", "--frobnicate", "x.wasm"]);
        assert!(e.contains("unexpected argument '--frobnicate'"), "{e}");
        let e = err(&["warden", "run", "--dir", "/no/such/dir", "x.wasm"]);
        assert!(e.contains("/no/such/dir: No such file or directory"), "{e}");
    }
}
