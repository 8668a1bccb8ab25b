//! A real PostgreSQL server through a `postgres-tls` kind: psql (libpq)
//! speaks plaintext to a WASI 0.2 relay guest, Warden speaks TLS to the
//! server, and a role with a SCRAM-SHA-256 password (PostgreSQL's default)
//! logs in, though the server, being on TLS, offers channel binding that
//! the plaintext client cannot do (see warden-net's `pgauth`).
//!
//! The server is Debian's `postgresql` package: a private cluster in a
//! temporary directory, on a free loopback port, with `ssl = on` and only
//! `hostssl` rules, made and stopped by the test. Without the package (or
//! psql) the test says SKIPPED and checks nothing. As root, the server
//! runs as the package's `postgres` user (PostgreSQL refuses root).
//! Run it alone: `cargo test -p warden --test postgres -- --nocapture`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::server::Server;
use common::tls::Pki;
use common::*;
use warden_test_artifacts::{Target, guest};

/// The directory of Debian's PostgreSQL server programs, if installed.
fn pg_bin() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|b| b.join("initdb").is_file() && b.join("pg_ctl").is_file())
        .collect();
    found.sort();
    found.pop()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A command of the server's, as the `postgres` user when we are root.
fn as_server(bin: &Path, program: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(program));
        c
    } else {
        Command::new(bin.join(program))
    }
}

fn ok(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private cluster with TLS, stopped when dropped.
struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_server(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Cluster {
    fn start(bin: PathBuf, pki: &Pki) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let pw = root.join("pw");
        std::fs::write(&pw, "super-secret\n").unwrap();
        let data = root.join("data");
        if is_root() {
            ok(
                Command::new("chown").args(["-R", "postgres"]).arg(&root),
                "chown",
            );
        }
        ok(
            as_server(&bin, "initdb")
                .arg("-D")
                .arg(&data)
                .args(["-A", "scram-sha-256", "-U", "super"])
                .arg(format!("--pwfile={}", pw.display())),
            "initdb",
        );
        // TLS only, SCRAM only.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all scram-sha-256\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        std::fs::copy(pki.path("server.pem"), data.join("server.pem")).unwrap();
        std::fs::copy(pki.path("server.key"), data.join("server.key")).unwrap();
        if is_root() {
            ok(
                Command::new("chown").args(["-R", "postgres"]).arg(&data),
                "chown",
            );
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let port = free_port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file=server.pem -c ssl_key_file=server.key -c password_encryption=scram-sha-256",
            root.display()
        );
        ok(
            as_server(&bin, "pg_ctl")
                .arg("-D")
                .arg(&data)
                .args(["-o", &options, "-l"])
                .arg(root.join("log"))
                .args(["-w", "-t", "60", "start"]),
            "pg_ctl start",
        );
        Cluster {
            bin,
            data,
            port,
            _dir: dir,
        }
    }

    /// Run SQL as the superuser (over TLS, directly).
    fn sql(&self, query: &str) -> String {
        psql(self.port, "super", "super-secret", "require", query)
            .unwrap_or_else(|e| panic!("{query}: {e}"))
    }
}

/// psql's one-line answer to `query` at 127.0.0.1:`port`.
fn psql(
    port: u16,
    user: &str,
    password: &str,
    sslmode: &str,
    query: &str,
) -> Result<String, String> {
    let out = Command::new("psql")
        .env_clear()
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "20")
        .arg(format!(
            "host=127.0.0.1 port={port} user={user} dbname=postgres sslmode={sslmode}"
        ))
        .args(["-Atc", query])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn a_scram_role_logs_in_through_a_postgres_tls_kind() {
    let Some(bin) = pg_bin() else {
        eprintln!("SKIPPED: PostgreSQL's server is not installed (apt-get install postgresql)");
        return;
    };
    if Command::new("psql").arg("--version").output().is_err() {
        eprintln!("SKIPPED: psql is not installed (apt-get install postgresql-client)");
        return;
    }
    let pki = Pki::new();
    let db = Cluster::start(bin, &pki);
    db.sql("CREATE ROLE alice LOGIN PASSWORD 'alice-pw'");
    // A SCRAM verifier, and a server that offers channel binding.
    assert!(
        db.sql("SELECT rolpassword FROM pg_authid WHERE rolname = 'alice'")
            .starts_with("SCRAM-SHA-256$"),
    );
    // Plaintext straight to the server is refused: hostssl only.
    let refused = psql(db.port, "alice", "alice-pw", "disable", "SELECT 1").unwrap_err();
    assert!(refused.contains("no encryption"), "{refused}");

    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("warden.toml");
    std::fs::write(
        &manifest,
        format!(
            "version = 1\n\n[[kind]]\nname = \"db\"\nprotocol = \"postgres-tls\"\nserver_name = \"echo.test\"\nca = \"{}\"\n\n[[allow]]\nid = \"db\"\ntarget = \"127.0.0.1\"\nports = \"{}\"\nrights = [\"connect\"]\nkind = \"db\"\n\n[[allow]]\nid = \"relay\"\ntarget = \"127.0.0.1\"\nports = \"*\"\nrights = [\"bind\", \"listen\", \"accept\"]\n",
            pki.arg("ca.pem"),
            db.port
        ),
    )
    .unwrap();
    let relay = || {
        let client = guest(Target::P2, "net_client");
        let step = format!("relay:127.0.0.1:0:127.0.0.1:{}", db.port);
        Server::start_guest(&[
            "--timeout",
            "60s",
            "--manifest",
            p(&manifest),
            p(&client),
            &step,
        ])
    };
    // psql speaks plaintext to the guest; Warden speaks TLS to the server.
    let mut server = relay();
    let got = psql(
        server.port,
        "alice",
        "alice-pw",
        "disable",
        "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    );
    let line = server.line();
    let r = server.finish();
    assert_eq!(got.as_deref(), Ok("t|TLSv1.3"), "{}", r.stderr);
    assert!(line.contains(": ok relayed"), "{line}");
    // The deny twin: a wrong password is refused by the server, as any
    // client would be.
    let server = relay();
    let wrong = psql(server.port, "alice", "not-it", "disable", "SELECT 1").unwrap_err();
    assert!(wrong.contains("password authentication failed"), "{wrong}");
    drop(server);
}
