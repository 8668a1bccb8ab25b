//! `warden run`: one program to completion.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{ArgMatches, Args};
use warden_host::RunConfig;

use crate::guest::{GuestArgs, ListenArgs};
use crate::report;

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
134 when it trapped; 130, 143, 129 or 131 when SIGINT, SIGTERM, SIGHUP or SIGQUIT stopped it (the \
audit log flushed first); 2 when Warden could not run it (bad flags, unreadable, oversized or \
unsupported file, compilation past --compile-timeout).\n\n\
Examples:\n  warden run app.wasm --app-flag value\n  warden run --allow-connect api.example.com:443 --audit audit.jsonl client.wasm\n  \
warden run --listen 127.0.0.1:6000 server.wasm\n  warden run --dir ./out::/out --dir-ro ./in::/in convert.wasm /in/a /out/b\n  \
warden run --env HOME --env LOG=debug --max-memory 64MiB --timeout 2s --fuel 100000000 job.wasm"
)]
pub struct RunArgs {
    #[command(flatten)]
    guest: GuestArgs,

    #[command(flatten)]
    listen: ListenArgs,

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
    /// One validated configuration (see [`GuestArgs::into_config`]).
    pub fn into_config(self, matches: &ArgMatches) -> Result<RunConfig, String> {
        let mut program = self.program.into_iter();
        let file = PathBuf::from(program.next().expect("clap requires FILE"));
        let name = file.file_name().map_or_else(
            || file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let args = std::iter::once(name).chain(program).collect();
        let (mut config, manifest_listeners) = self.guest.into_config(matches, file, args)?;
        config.listeners = self.listen.specs(matches, manifest_listeners)?;
        Ok(config)
    }
}

/// Run the guest and turn how it ended into Warden's exit status.
pub fn run(mut cfg: RunConfig) -> ExitCode {
    let verbose = cfg.verbose;
    cfg.last_words = Some(Arc::new(move |f| report::ending(f, verbose)));
    let result = warden_host::run(&cfg);
    crate::telemetry::finish(cfg.telemetry.as_ref());
    match result {
        Ok(finished) => ExitCode::from(report::ending(&finished, verbose)),
        Err(e) => crate::usage_error(&report::host_error(&e, verbose)),
    }
}
