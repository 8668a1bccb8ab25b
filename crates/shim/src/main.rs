//! `containerd-shim-warden-v1`: Warden as a containerd shim (runwasi's
//! `containerd-shim-wasm`). containerd starts it for containers whose
//! runtime is `io.containerd.warden.v1` (a Kubernetes `RuntimeClass` with
//! handler `warden`); it runs the image's Wasm program under the policy the
//! image carries, deny-by-default, as `warden run` would.
//!
//! Files, one job each: `sandbox` (runwasi's call into Warden, exit
//! statuses), `workload` (a container as a run configuration), `mounts`
//! (the container's volumes as directory grants), `compiler` (the node's
//! compile cache through runwasi's compiler hook), `serving` (an HTTP
//! component's container as `warden serve`).

mod compiler;
mod mounts;
mod sandbox;
mod serving;
mod workload;

use containerd_shim_wasm::shim::{Cli, Shim, Version, version};

struct WardenShim;

impl Shim for WardenShim {
    type Sandbox = sandbox::WardenSandbox;

    fn name() -> &'static str {
        "warden"
    }

    fn version() -> Version {
        version!()
    }

    async fn compiler() -> Option<impl containerd_shim_wasm::shim::Compiler> {
        compiler::WardenCompiler::new()
    }
}

fn main() {
    WardenShim::run(None);
}
