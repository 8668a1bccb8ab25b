//! The shim end to end under a real containerd (Debian's `containerd` and
//! `runc`), started here with a private configuration and state under a
//! temporary directory. Images are written here as OCI layout tars (a real
//! guest program, and a manifest when the case has one) and imported with
//! `ctr`; no registry. Network peers are on loopback, reached through
//! `--net-host`.
//!
//! It needs root and those packages; without them it says so on stderr and
//! checks nothing (`.ci/run` installs them when it runs as root).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use warden_test_artifacts::{Target, guest};

const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-warden-v1");

/// Why this machine cannot run the test, if it cannot.
fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    for tool in ["containerd", "ctr", "runc", "tar"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
        if !found {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    None
}

/// containerd 1.6 unpacks only layers it knows; a wasm layer (the program
/// itself) unpacks to an empty root file system through this processor,
/// and the shim reads the layer from the content store.
const WASM_LAYERS: &str = r#"[stream_processors]
  [stream_processors."io.containerd.warden.wasm"]
    accepts = ["application/wasm"]
    returns = "application/vnd.oci.image.layer.v1.tar"
    path = "/bin/sh"
    args = ["-c", "cat > /dev/null; tar -cf - -T /dev/null"]
"#;

/// A containerd of this test's own.
struct Containerd {
    dir: tempfile::TempDir,
    daemon: Child,
}

impl Containerd {
    fn start() -> Containerd {
        let dir = tempfile::Builder::new().prefix("wctd").tempdir().unwrap();
        let d = dir.path().display();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{d}/c.sock\"\n[ttrpc]\n  address = \"{d}/c.sock.ttrpc\"\n[debug]\n  address = \"{d}/debug.sock\"\n{WASM_LAYERS}"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("containerd.log")).unwrap();
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let c = Containerd { dir, daemon };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !c.ctr(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "containerd did not start: {}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    fn ctr_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("-a").arg(self.dir.path().join("c.sock")).args(args);
        cmd
    }

    fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_command(args).output().unwrap()
    }

    /// Write an image holding `files` (path in the image, contents) with
    /// entrypoint /app.wasm and `env`, and import it as `name`.
    fn image(&self, name: &str, files: &[(&str, Vec<u8>)], env: &[&str]) -> String {
        let work = self.dir.path().join("images").join(name);
        let rootfs = work.join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        for (path, data) in files {
            let p = rootfs.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        }
        let layer_tar = work.join("layer.tar");
        tar(&rootfs, &layer_tar);
        let layer = std::fs::read(&layer_tar).unwrap();
        let diff_id = format!("sha256:{:x}", Sha256::digest(&layer));
        let env: Vec<String> = env.iter().map(|e| format!("\"{e}\"")).collect();
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Entrypoint":["/app.wasm"],"Env":[{}]}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#,
            env.join(",")
        );
        let layer = ("application/vnd.oci.image.layer.v1.tar", layer);
        self.import(name, ("amd64", "linux"), &config, layer)
    }

    /// Write a wasm OCI image, the program as its one layer, and import it
    /// as `name` (platform wasip1/wasm).
    fn wasm_image(&self, name: &str, program: Vec<u8>) -> String {
        // The layer unpacks to an empty tar (see WASM_LAYERS).
        let empty = tempfile::tempdir().unwrap();
        let empty_tar = empty.path().join("empty.tar");
        let done = Command::new("tar")
            .arg("-cf")
            .arg(&empty_tar)
            .arg("-T")
            .arg("/dev/null")
            .status()
            .unwrap();
        assert!(done.success());
        let diff_id = format!(
            "sha256:{:x}",
            Sha256::digest(std::fs::read(&empty_tar).unwrap())
        );
        let config = format!(
            r#"{{"architecture":"wasm","os":"wasip1","config":{{"Entrypoint":["/app.wasm"]}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
        );
        self.import(
            name,
            ("wasm", "wasip1"),
            &config,
            ("application/wasm", program),
        )
    }

    /// Write an OCI image layout with `config` and one layer (media type,
    /// bytes), tar it and import it as `name`; its reference.
    fn import(
        &self,
        name: &str,
        (arch, os): (&str, &str),
        config: &str,
        (layer_type, layer): (&str, Vec<u8>),
    ) -> String {
        let reference = format!("docker.io/library/{name}:latest");
        let layout = self.dir.path().join("images").join(name).join("layout");
        std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
        let blob = |data: &[u8]| -> (String, usize) {
            let digest = format!("sha256:{:x}", Sha256::digest(data));
            let file = layout.join("blobs/sha256").join(&digest[7..]);
            std::fs::write(file, data).unwrap();
            (digest, data.len())
        };
        let (layer, layer_size) = blob(&layer);
        let (config, config_size) = blob(config.as_bytes());
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":{config_size}}},"layers":[{{"mediaType":"{layer_type}","digest":"{layer}","size":{layer_size}}}]}}"#
        );
        let (manifest, manifest_size) = blob(manifest.as_bytes());
        std::fs::write(
            layout.join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        std::fs::write(
            layout.join("index.json"),
            format!(
                r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest}","size":{manifest_size},"platform":{{"architecture":"{arch}","os":"{os}"}},"annotations":{{"io.containerd.image.name":"{reference}"}}}}]}}"#
            ),
        )
        .unwrap();
        let image_tar = layout.with_file_name("image.tar");
        tar(&layout, &image_tar);
        let imported = self.ctr(&[
            "images",
            "import",
            "--all-platforms",
            image_tar.to_str().unwrap(),
        ]);
        assert!(imported.status.success(), "{}", text(&imported.stderr));
        reference
    }

    /// `ctr run --rm` with the shim: `options` before the image, `args`
    /// (the program first) after the container id.
    /// A container id of this test run's own (runwasi keeps state per id
    /// outside containerd's directory).
    fn id(&self, name: &str) -> String {
        format!("{name}-{}", std::process::id())
    }

    fn run_command(&self, id: &str, image: &str, options: &[&str], args: &[&str]) -> Command {
        let id = self.id(id);
        let mut all = vec!["run", "--rm", "--runtime", SHIM];
        all.extend_from_slice(options);
        all.extend_from_slice(&[image, &id]);
        all.extend_from_slice(args);
        let mut cmd = self.ctr_command(&all);
        cmd.stdin(Stdio::null());
        cmd
    }

    fn run(&self, id: &str, image: &str, options: &[&str], args: &[&str]) -> Ran {
        let out = self.run_command(id, image, options, args).output().unwrap();
        Ran {
            code: out.status.code(),
            stdout: text(&out.stdout),
            stderr: text(&out.stderr),
        }
    }

    /// Start `ctr run --rm` in the background, its output piped.
    fn spawn(&self, id: &str, image: &str, options: &[&str], args: &[&str]) -> Child {
        self.run_command(id, image, options, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // A failed check may leave containers behind; their state outside
        // this test's directory (runwasi's, under /run/containerd) must go
        // with them.
        for task in text(&self.ctr(&["task", "ls", "-q"]).stdout).lines() {
            let _ = self.ctr(&["task", "kill", "-s", "KILL", task]);
        }
        std::thread::sleep(Duration::from_millis(500));
        for c in text(&self.ctr(&["containers", "ls", "-q"]).stdout).lines() {
            let _ = self.ctr(&["task", "rm", "-f", c]);
            let _ = self.ctr(&["containers", "rm", c]);
        }
        // SAFETY: a signal to the child this test started.
        unsafe { libc::kill(self.daemon.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.daemon.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

fn tar(dir: &std::path::Path, out: &std::path::Path) {
    let done = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg(out)
        .arg(".")
        .status()
        .unwrap();
    assert!(done.success(), "tar of {}", dir.display());
}

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn wasm(name: &str) -> Vec<u8> {
    std::fs::read(guest(Target::P1, name)).unwrap()
}

fn component(name: &str) -> Vec<u8> {
    std::fs::read(guest(Target::P2, name)).unwrap()
}

/// A TCP peer on loopback for `connections` connections: reads to the
/// end, answers `peer PORT got TEXT`, closes. Its thread ends by itself.
fn peer(connections: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut served = 0;
        while served < connections && Instant::now() < deadline {
            match listener.accept() {
                Ok((mut s, _)) => {
                    served += 1;
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    let mut got = String::new();
                    let _ = s.read_to_string(&mut got);
                    let _ = write!(s, "peer {port} got {}", got.trim_end());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    port
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn manifest(text: &str) -> (&'static str, Vec<u8>) {
    ("/warden.toml", format!("version = 1\n{text}").into_bytes())
}

/// Wait at most `limit` for `child` to end (then kill it); its status and
/// stderr.
fn finish(child: &mut Child, limit: Duration) -> (Option<i32>, String) {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    (status.code(), err)
}

/// A connection to the container `id` (`server`) once it listens on
/// `port`; if it never does, the container is killed and its stderr shown.
fn connect_when_served(ctd: &Containerd, server: &mut Child, id: &str, port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(c) => {
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                return c;
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => {
                let _ = ctd.ctr(&["task", "kill", "-s", "KILL", &ctd.id(id)]);
                let (code, err) = finish(server, Duration::from_secs(10));
                panic!("{id} never listened on {port}: {e}; it ended {code:?}: {err}")
            }
        }
    }
}

#[test]
fn workloads_run_under_containerd_with_the_policy_in_their_image() {
    if let Some(why) = unavailable() {
        eprintln!(
            "SKIPPED: the containerd end-to-end test needs root, containerd, ctr, runc and tar: {why}"
        );
        return;
    }
    let ctd = Containerd::start();
    args_env_and_exit_code(&ctd);
    a_program_in_a_wasm_layer_runs_compiled_once_per_node(&ctd);
    no_manifest_denies_and_the_image_manifest_allows(&ctd);
    a_bad_manifest_stops_the_container(&ctd);
    limits_and_sigterm_stop_a_spinning_guest(&ctd);
    read_only_mounts_stay_read_only(&ctd);
    a_server_serves_on_its_manifest_listener(&ctd);
    an_http_component_is_served_on_its_manifest_listener(&ctd);
}

fn args_env_and_exit_code(ctd: &Containerd) {
    // The same program as a preview1 module and as a WASI 0.2 component
    // (whose wasi:cli/exit says only success or failure: 1).
    for (name, program, code) in [("wcli", wasm("cli"), 7), ("wcli2", component("cli"), 1)] {
        let image = ctd.image(name, &[("/app.wasm", program)], &["FROM_IMAGE=1"]);
        let r = ctd.run(
            name,
            &image,
            &["--env", "FROM_RUN=2"],
            &["/app.wasm", "a b", "exit=7"],
        );
        assert_eq!(r.code, Some(code), "{name}: {}", r.stderr);
        assert!(
            r.stdout
                .starts_with("arg[0]=/app.wasm\narg[1]=a b\narg[2]=exit=7\n"),
            "{name}: {}",
            r.stdout
        );
        assert!(r.stdout.contains("env FROM_IMAGE=1\n"), "{}", r.stdout);
        assert!(r.stdout.contains("env FROM_RUN=2\n"), "{}", r.stdout);
    }
}

fn a_program_in_a_wasm_layer_runs_compiled_once_per_node(ctd: &Containerd) {
    let image = ctd.wasm_image("wlayer", wasm("cli"));
    let options = [
        "--platform",
        "wasip1/wasm",
        "--env",
        "FROM_RUN=3",
        "--env",
        "WARDEN_VERBOSE=1",
    ];
    for id in ["layer1", "layer2"] {
        let r = ctd.run(id, &image, &options, &["/app.wasm", "exit=5"]);
        assert_eq!(r.code, Some(5), "{}", r.stderr);
        assert!(
            r.stdout.starts_with("arg[0]=/app.wasm\narg[1]=exit=5\n"),
            "{}",
            r.stdout
        );
        assert!(r.stdout.contains("env FROM_RUN=3\n"), "{}", r.stdout);
        // Warden's own variables are Warden's.
        assert!(!r.stdout.contains("WARDEN_VERBOSE"), "{}", r.stdout);
        // Compiled by the shim when the image first ran, kept by
        // containerd: no container compiles it.
        assert!(
            r.stderr.contains("using the prebuilt code"),
            "{id}: {}",
            r.stderr
        );
    }
    let content = text(&ctd.ctr(&["content", "ls"]).stdout);
    assert!(
        content.contains("runwasi.io/precompiled/warden/"),
        "{content}"
    );
    // A manifest that asks for another engine (a timeout) compiles the
    // program the bundle carries; the policy comes from a mounted volume,
    // as a Kubernetes ConfigMap would give it.
    let policy = tempfile::tempdir().unwrap();
    std::fs::write(
        policy.path().join("warden.toml"),
        "version = 1\n[limits]\ntimeout = \"30s\"\n",
    )
    .unwrap();
    let mount = format!(
        "type=bind,src={},dst=/policy,options=rbind:ro",
        policy.path().display()
    );
    let mut with_policy = options.to_vec();
    with_policy.extend([
        "--mount",
        &mount,
        "--env",
        "WARDEN_MANIFEST=/policy/warden.toml",
    ]);
    let r = ctd.run("layer3", &image, &with_policy, &["/app.wasm", "exit=5"]);
    assert_eq!(r.code, Some(5), "{}", r.stderr);
    assert!(
        r.stderr.contains("the prebuilt code does not fit") && r.stderr.contains("compiled in"),
        "{}",
        r.stderr
    );
    assert!(!r.stdout.contains("WARDEN_MANIFEST"), "{}", r.stdout);
}

fn no_manifest_denies_and_the_image_manifest_allows(ctd: &Containerd) {
    let port = peer(1);
    let addr = format!("127.0.0.1:{port}");
    // No manifest: nothing is granted, and the denial is audited on the
    // container's stderr.
    let bare = ctd.image("wbare", &[("/app.wasm", wasm("p1_sock"))], &[]);
    let r = ctd.run(
        "bare",
        &bare,
        &["--net-host"],
        &["/app.wasm", "connect", &addr],
    );
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert_eq!(r.stdout, "connect failed: errno 2\n");
    assert!(
        r.stderr.contains("\"decision\":\"deny\"") && r.stderr.contains(&addr),
        "{}",
        r.stderr
    );
    // And told once in plain words by the shim's reporter (no flag named:
    // a container has none).
    let told = format!("warden: denied connect {addr} (rule default-deny)");
    assert_eq!(r.stderr.matches(&told).count(), 1, "{}", r.stderr);
    assert!(!r.stderr.contains("--allow"), "{}", r.stderr);
    // The image's manifest allows exactly this peer.
    let allowed = ctd.image(
        "wallowed",
        &[
            ("/app.wasm", wasm("p1_sock")),
            manifest(&format!(
                "[[allow]]\nid = \"peer\"\ntarget = \"127.0.0.1\"\nports = \"{port}\"\nrights = [\"connect\"]\n"
            )),
        ],
        &[],
    );
    let r = ctd.run(
        "allowed",
        &allowed,
        &["--net-host"],
        &["/app.wasm", "connect", &addr],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout.ends_with(&format!("got: peer {port} got hello\n")),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    // Its deny twin: another port, refused by the same manifest.
    let other = format!("127.0.0.1:{}", free_port());
    let r = ctd.run(
        "allowed2",
        &allowed,
        &["--net-host"],
        &["/app.wasm", "connect", &other],
    );
    assert_eq!(r.stdout, "connect failed: errno 2\n", "{}", r.stderr);
}

fn a_bad_manifest_stops_the_container(ctd: &Containerd) {
    let image = ctd.image(
        "wbad",
        &[
            ("/app.wasm", wasm("cli")),
            manifest("[[allow]]\nid = \"x\"\ntarget = \"127.0.0.1\"\nports = \"1\"\nrights = [\"fly\"]\n"),
        ],
        &[],
    );
    let r = ctd.run("bad", &image, &[], &["/app.wasm"]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert_eq!(r.stdout, "", "the guest never ran");
    assert!(
        r.stderr.contains("warden.toml:6") && r.stderr.contains("fly"),
        "{}",
        r.stderr
    );
    // A manifest the container names that is not there is an error too,
    // never a run without it.
    let r = ctd.run(
        "named",
        &image,
        &["--env", "WARDEN_MANIFEST=/nowhere.toml"],
        &["/app.wasm"],
    );
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains("no such file in the container"),
        "{}",
        r.stderr
    );
}

fn limits_and_sigterm_stop_a_spinning_guest(ctd: &Containerd) {
    let limited = ctd.image(
        "wlimited",
        &[
            ("/app.wasm", wasm("busy")),
            manifest("[limits]\ntimeout = \"1s\"\n"),
        ],
        &[],
    );
    let r = ctd.run("limited", &limited, &[], &["/app.wasm", "forever"]);
    assert_eq!(r.code, Some(124), "{}", r.stderr);
    assert!(r.stderr.contains("limits.timeout"), "{}", r.stderr);

    let busy = ctd.image("wbusy", &[("/app.wasm", wasm("busy"))], &[]);
    let mut running = ctd.spawn("spin", &busy, &[], &["/app.wasm", "forever"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !text(&ctd.ctr(&["task", "ls"]).stdout).contains("RUNNING") {
        assert!(Instant::now() < deadline, "the task never ran");
        std::thread::sleep(Duration::from_millis(100));
    }
    let killed = Instant::now();
    assert!(ctd.ctr(&["task", "kill", &ctd.id("spin")]).status.success());
    let (code, err) = finish(&mut running, Duration::from_secs(10));
    assert_eq!(code, Some(143), "SIGTERM did not stop the guest: {err}");
    assert!(err.contains("stopped by SIGTERM"), "{err}");
    eprintln!(
        "SIGTERM stopped the spinning guest in {:?}",
        killed.elapsed()
    );
}

fn read_only_mounts_stay_read_only(ctd: &Containerd) {
    let host = tempfile::tempdir().unwrap();
    let (rw, ro) = (host.path().join("rw"), host.path().join("ro"));
    std::fs::create_dir_all(&rw).unwrap();
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::write(ro.join("input.txt"), "from the host\n").unwrap();
    let image = ctd.image("wfs", &[("/app.wasm", wasm("fs"))], &[]);
    let rw_mount = format!("type=bind,src={},dst=/data,options=rbind:rw", rw.display());
    let ro_mount = format!("type=bind,src={},dst=/site,options=rbind:ro", ro.display());
    let r = ctd.run(
        "fs",
        &image,
        &["--mount", &rw_mount, "--mount", &ro_mount],
        &["/app.wasm", "/data", "/site"],
    );
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines.len() >= 7, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        &lines[..7],
        [
            "write rw: ok",
            "read back rw: guest was here",
            "read ro: from the host",
            "write ro: PermissionDenied",
            "create in ro: PermissionDenied",
            "mkdir in ro: PermissionDenied",
            "remove in ro: PermissionDenied",
        ],
        "{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read_to_string(ro.join("input.txt")).unwrap(),
        "from the host\n"
    );
    assert!(rw.join("written-by-guest.txt").is_file());
}

fn a_server_serves_on_its_manifest_listener(ctd: &Containerd) {
    let port = free_port();
    let image = ctd.image(
        "wserver",
        &[
            ("/app.wasm", wasm("echo_std")),
            manifest(&format!(
                "[[listen]]\nname = \"echo\"\naddr = \"127.0.0.1:{port}\"\n"
            )),
        ],
        &[],
    );
    let mut server = ctd.spawn("server", &image, &["--net-host"], &["/app.wasm", "1"]);
    let mut conn = connect_when_served(ctd, &mut server, "server", port);
    conn.write_all(b"echo through containerd").unwrap();
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = String::new();
    conn.read_to_string(&mut back).unwrap();
    assert_eq!(back, "echo through containerd");
    let (code, err) = finish(&mut server, Duration::from_secs(30));
    assert_eq!(code, Some(0), "{err}");
}

fn an_http_component_is_served_on_its_manifest_listener(ctd: &Containerd) {
    // Without a [[listen]], there is no address to serve on: not started.
    let bare = ctd.image("whttpbare", &[("/app.wasm", component("http_proxy"))], &[]);
    let r = ctd.run("httpbare", &bare, &["--net-host"], &["/app.wasm"]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("[[listen]]"), "{}", r.stderr);

    let port = free_port();
    let image = ctd.image(
        "whttp",
        &[
            ("/app.wasm", component("http_proxy")),
            manifest(&format!("[[listen]]\naddr = \"127.0.0.1:{port}\"\n")),
        ],
        &[],
    );
    let mut server = ctd.spawn("http", &image, &["--net-host"], &["/app.wasm"]);
    let mut conn = connect_when_served(ctd, &mut server, "http", port);
    conn.write_all(b"GET /hello HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("hello from a proxy"), "{response}");
    // Its policy is the manifest's: no egress was granted.
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let peer = peer(1);
    write!(
        conn,
        "GET /fetch?url=http://127.0.0.1:{peer}/ HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    assert!(
        !response.contains(&format!("peer {peer} got")),
        "{response}"
    );
    // Pod deletion: SIGTERM stops serving gracefully.
    assert!(ctd.ctr(&["task", "kill", &ctd.id("http")]).status.success());
    let (code, err) = finish(&mut server, Duration::from_secs(20));
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("\"decision\":\"deny\""), "{err}");
}
