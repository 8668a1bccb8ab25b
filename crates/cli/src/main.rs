//! The `warden` binary: flags in, one validated run configuration out, then
//! the exit code of whatever the guest did.
//!
//! One file per subcommand (`run`, `serve`, `check`, `explain`), the guest flags
//! they share in `guest`, the network flags and manifest in `network`,
//! flag values in `values`, and Warden's words for the operator (denials
//! worded as flags, how a run ended) in `report`.
//!
//! Exit codes: the guest's own code when it exits; 124 when `--timeout` or
//! `--fuel` stopped it; 134 when it trapped; 128 + the signal when SIGINT,
//! SIGTERM, SIGHUP or SIGQUIT stopped Warden; 2 for Warden's own errors
//! (bad flags, an unreadable or unsupported file, a grant that cannot be
//! set up). `check` exits 0 or 2, `explain` 0 (allowed), 1 (denied) or 2.

mod check;
mod explain;
mod guest;
mod identity;
mod learn;
mod network;
mod report;
mod run;
mod serve;
mod telemetry;
mod values;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

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
warden run --allow-connect api.example.com:80 --audit - client.wasm\n  warden serve --addr 127.0.0.1:8080 app.wasm\n  warden check warden.toml\n  \
warden explain --manifest warden.toml connect db.example.com:5432\n  warden learn audit.jsonl > learned.toml\n  warden help run"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a WebAssembly program to completion
    Run(Box<run::RunArgs>),
    /// Serve HTTP requests with a wasi:http component
    Serve(Box<serve::ServeArgs>),
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
  [[listen]]\n  name = \"http\"\n  addr = \"127.0.0.1:8080\"\n\n\
  [[kind]]                           # a connection kind (see docs/tls.md)\n  name = \"db\"\n  protocol = \"tls\"                 # tcp, tls or postgres-tls\n  ca = \"ca.pem\"\n\n\
  [[app]]                            # an application for `warden serve`\n  name = \"api\"\n  component = \"api.wasm\"\n  path = \"/api\"\n  manifest = \"api-policy.toml\"    # optional: its own policy"
    )]
    Check {
        /// The manifest file
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Say whether the policy allows an action, and which rule decides
    Explain(Box<explain::ExplainArgs>),
    /// Print the smallest manifest that allows what an audit log shows
    #[command(
        long_about = "Read an audit log and print, on stdout, the smallest manifest that allows what it shows and nothing more: one grant per target and port seen, with exactly the rights used there; the name the program used where its traffic went through a name (marked internal = true when it reached a loopback or private address), the address otherwise; exact ports (an accepted peer's, which is ephemeral, excepted); pre-opened listeners as [[listen]]; a comment with each grant's count. Record the log with the policy in audit mode, which lets everything through:

  warden run --policy-mode audit --audit learn.jsonl app.wasm
  warden learn learn.jsonl > app.toml
  warden run --manifest app.toml app.wasm

Review what it prints before you use it: it grants whatever the program did.",
        after_help = "Exit status: 0, or 2 when the log cannot be read or holds no decisions."
    )]
    Learn {
        /// The audit log (JSON lines, from --audit)
        #[arg(value_name = "AUDIT.jsonl")]
        file: PathBuf,
    },
    /// Print the SPIFFE ID a program's identity certificate would name
    #[command(
        long_about = "Print the SPIFFE ID Warden's identity issuer (--identity-ca) would give this program: spiffe://TD/wasm/sha256/ followed by the SHA-256 of the file's bytes (what sha256sum prints), through the template if one is given. Use it to write peer_ids for a program before it runs.",
        after_help = "Exit status: 0, or 2 when the file cannot be read or the trust domain or template is not valid."
    )]
    Identity(Box<identity::IdentityArgs>),
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let code = match cli.command {
        Command::Run(args) => {
            let sub = matches
                .subcommand_matches("run")
                .expect("clap dispatched the run subcommand");
            match args.into_config(sub) {
                Ok(cfg) => run::run(cfg),
                Err(e) => usage_error(&e),
            }
        }
        Command::Serve(args) => {
            let sub = matches
                .subcommand_matches("serve")
                .expect("clap dispatched the serve subcommand");
            match args.into_config(sub) {
                Ok(cfg) => serve::serve(cfg),
                Err(e) => usage_error(&e),
            }
        }
        Command::Check { file } => check::check(&file),
        Command::Explain(args) => explain::explain(&args),
        Command::Learn { file } => learn::learn_from(&file),
        Command::Identity(args) => identity::identity(&args),
    };
    // Warden's last lines go out if they can within a second; a stderr
    // nobody reads must not hold the exit.
    warden_net::out::drain(Some(Instant::now() + Duration::from_secs(1)));
    code
}

/// Say Warden's own error and give its exit status.
fn usage_error(e: &str) -> ExitCode {
    warden_net::out::line(&format!("warden: error: {e}"));
    ExitCode::from(EXIT_USAGE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_host::{CacheSetting, Limits, RunConfig};

    fn parse(argv: &[&str]) -> Result<RunConfig, clap::Error> {
        let matches = Cli::command().try_get_matches_from(argv)?;
        let Command::Run(args) = Cli::from_arg_matches(&matches)?.command else {
            panic!("not a run command")
        };
        Ok(args
            .into_config(matches.subcommand_matches("run").unwrap())
            .unwrap())
    }

    fn parse_err(argv: &[&str]) -> String {
        let matches = Cli::command().try_get_matches_from(argv).unwrap();
        let Command::Run(args) = Cli::from_arg_matches(&matches).unwrap().command else {
            panic!("not a run command")
        };
        args.into_config(matches.subcommand_matches("run").unwrap())
            .unwrap_err()
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
            .map(|l| (l.name.clone().unwrap(), l.on.to_string(), l.id.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "tcp0".to_string(),
                    "127.0.0.1:6000".to_string(),
                    "--listen 127.0.0.1:6000"
                ),
                (
                    "web".to_string(),
                    "[::1]:80".to_string(),
                    "--listen web=[::1]:80"
                )
            ]
        );
    }

    #[test]
    fn listener_names_must_differ() {
        let e = parse_err(&[
            "warden",
            "run",
            "--listen",
            "web=127.0.0.1:6000",
            "--listen",
            "web=127.0.0.1:6001",
            "x.wasm",
        ]);
        assert!(e.contains("two listeners are named `web`"), "{e}");
        // A name given by hand may not take a default one either.
        let e = parse_err(&[
            "warden",
            "run",
            "--listen",
            "127.0.0.1:6000",
            "--listen",
            "tcp0=127.0.0.1:6001",
            "x.wasm",
        ]);
        assert!(e.contains("`tcp0`"), "{e}");
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
            "--max-table-elements",
            "5000",
            "--max-module-size",
            "1MiB",
            "--compile-timeout",
            "10s",
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
                max_table_elements: 5000,
                timeout: Some(Duration::from_millis(500)),
                fuel: Some(1000),
                max_module_size: 1 << 20,
                compile_timeout: Duration::from_secs(10),
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
        let e = err(&["warden", "run", "--max-table-elements", "0", "x.wasm"]);
        assert!(e.contains("a limit of zero"), "{e}");
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
