//! `warden identity`: the SPIFFE ID a program would be given, from its
//! bytes alone (no CA needed), so an operator can write `peer_ids` for a
//! program before running it.

use std::path::PathBuf;
use std::process::ExitCode;

/// `warden identity FILE --trust-domain TD [--template PATH] [--app NAME]`.
#[derive(clap::Args, Debug)]
pub struct IdentityArgs {
    /// The program (a preview1 module or a component, binary or text)
    #[arg(value_name = "FILE")]
    file: PathBuf,

    /// The SPIFFE trust domain. Example: --trust-domain example.org
    #[arg(long = "trust-domain", value_name = "TD")]
    trust_domain: String,

    /// The ID's path, as --identity-template takes it (default
    /// /wasm/sha256/{sha256}).
    #[arg(long = "template", value_name = "PATH")]
    template: Option<String>,

    /// The app's name, for a template with {app} (as `warden serve` names
    /// its apps).
    #[arg(long = "app", value_name = "NAME")]
    app: Option<String>,
}

/// Print the ID, or say why there is none (exit 2).
pub fn identity(args: &IdentityArgs) -> ExitCode {
    let guest = match warden_host::read_guest(&args.file, warden_host::DEFAULT_MAX_MODULE_SIZE) {
        Ok(g) => g,
        Err(e) => return crate::usage_error(&e.to_string()),
    };
    match warden_policy::spiffe::workload_id(
        &args.trust_domain,
        args.template.as_deref(),
        &guest
            .sha256
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        args.app.as_deref(),
    ) {
        Ok(id) => {
            crate::report::say(&id);
            ExitCode::SUCCESS
        }
        Err(e) => crate::usage_error(&e.to_string()),
    }
}
