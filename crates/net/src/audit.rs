//! The audit log: one JSON object per line for every decision the gate
//! makes.
//!
//! Records go through a bounded queue to a writer thread, so a slow disk or
//! a stalled pipe never blocks the guest: when the queue is full the record
//! is dropped and counted, and [`AuditLog::finish`] reports the count.
//!
//! A record's fields: `ts` (RFC 3339, UTC, milliseconds), `instance` (this
//! run), `module_sha256` (the guest's bytes), `event` (the action: connect,
//! bind, listen, accept, udp-bind, udp-send, udp-recv, resolve,
//! http-request; or `limit` when a limit stopped the guest), `addr`
//! (`IP:PORT`, or null for a name), `name` (the host name, or the name an
//! address was resolved from, or null; at most
//! [`MAX_SHOWN`](warden_policy::MAX_SHOWN) bytes of it), `port` (for a name
//! with a port), `decision` (allow or deny), `rule` and `reason`. A `limit`
//! record names the limit in `limit` and `rule` and says what happened in
//! `reason`. A `tls-connect` or `tls-accept` record (a TLS handshake the
//! host did for the guest) has `addr` (the peer), `name`, `kind`,
//! `version`, `cipher`, `peer_cert_sha256`, `peer_cert_subject`, `result`
//! (`ok` or `failed`) and `reason`.
//!
//! Only records that reached the file count as written: a record is
//! counted once the write and the flush after it succeeded. After a write
//! error nothing more is written, and the records that came after are
//! counted as lost, apart from the ones dropped because the queue was full.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use warden_policy::{Action, Decision, Target, shorten};

/// How many records may wait for the writer before new ones are dropped.
pub const QUEUE: usize = 8192;

/// Where records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditDest {
    /// Standard error.
    Stderr,
    /// A file, appended to (created 0600 if missing).
    File(PathBuf),
}

/// Errors opening the audit log.
#[derive(Debug, thiserror::Error)]
#[error("cannot open audit log {}: {source}", path.display())]
pub struct AuditError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: io::Error,
}

/// What happened to the records, reported at exit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditSummary {
    /// Records written (and flushed).
    pub written: u64,
    /// Records dropped because the queue was full (the writer fell behind).
    pub dropped: u64,
    /// Records not written because writing had failed.
    pub lost: u64,
    /// The first write error, after which nothing more was written.
    pub error: Option<String>,
}

/// The writer thread: records written, records in hand when writing
/// failed, and the first write error.
type Writer = JoinHandle<(u64, u64, Option<String>)>;

/// The audit log of one guest instance. Instances of one server share the
/// queue and writer ([`AuditLog::child`]).
pub struct AuditLog {
    sink: std::sync::Arc<LineLog>,
    instance: String,
    module_sha256: String,
    /// Fields every record of this instance carries besides the common
    /// ones (`app`, `request_id` under `warden serve`).
    extra: Vec<(String, String)>,
}

/// JSON lines written by a thread of their own through a bounded queue,
/// so a slow disk never blocks whoever records: the queue and writer
/// behind one or more [`AuditLog`]s, and `warden serve`'s access log.
pub struct LineLog {
    tx: Mutex<Option<SyncSender<String>>>,
    dropped: AtomicU64,
    lost: AtomicU64,
    writer: Mutex<Option<Writer>>,
}

impl AuditLog {
    /// Open `dest` for the instance `instance` of the guest whose bytes hash
    /// to `module_sha256`.
    pub fn open(dest: &AuditDest, instance: &str, module_sha256: &str) -> Result<Self, AuditError> {
        Ok(AuditLog {
            sink: std::sync::Arc::new(LineLog::open(dest)?),
            instance: instance.to_string(),
            module_sha256: module_sha256.to_string(),
            extra: Vec::new(),
        })
    }

    /// An audit log writing to `out`, with room for `queue` waiting records.
    pub fn with_writer(
        out: Box<dyn Write + Send>,
        queue: usize,
        instance: &str,
        module_sha256: &str,
    ) -> Self {
        AuditLog {
            sink: std::sync::Arc::new(LineLog::with_writer(out, queue)),
            instance: instance.to_string(),
            module_sha256: module_sha256.to_string(),
            extra: Vec::new(),
        }
    }

    /// The log of another instance, written through the same queue and
    /// writer: its records say `instance`, the guest whose bytes hash to
    /// `module_sha256`, and carry `extra` fields.
    pub fn child(&self, instance: &str, module_sha256: &str, extra: &[(&str, &str)]) -> AuditLog {
        AuditLog {
            sink: self.sink.clone(),
            instance: instance.to_string(),
            module_sha256: module_sha256.to_string(),
            extra: extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Record one decision about `action` on `target`.
    pub fn record(&self, action: Action, target: &Target, decision: &Decision) {
        let (addr, name, port) = match target {
            Target::Addr(a) => (
                Some(a.to_string()),
                decision.name().map(str::to_string),
                None,
            ),
            Target::Name { host, port } => (None, Some(shorten(host).into_owned()), *port),
        };
        let mut rec = self.base(action.as_str());
        rec.insert("addr".into(), addr.into());
        rec.insert("name".into(), name.into());
        rec.insert("decision".into(), decision.verdict().as_str().into());
        rec.insert("rule".into(), decision.rule().into());
        rec.insert("reason".into(), decision.reason().to_string().into());
        if let Some(port) = port {
            rec.insert("port".into(), port.into());
        }
        self.send(rec);
    }

    /// Record a TLS handshake's outcome: `tls-connect` (outgoing) or
    /// `tls-accept` (incoming), with the peer, the name, the kind, the
    /// protocol version and cipher suite agreed, the peer certificate's
    /// SHA-256 and subject, and the result (`ok` or `failed`) with the
    /// reason.
    pub fn record_tls(&self, event: &str, peer: std::net::SocketAddr, o: &crate::tls::Outcome) {
        let mut rec = self.base(event);
        rec.insert("addr".into(), peer.to_string().into());
        rec.insert(
            "name".into(),
            o.name.as_deref().map(|n| shorten(n).into_owned()).into(),
        );
        rec.insert("kind".into(), o.kind.clone().into());
        rec.insert("version".into(), o.version.clone().into());
        rec.insert("cipher".into(), o.cipher.clone().into());
        let cert = o.peer_cert.as_ref();
        rec.insert(
            "peer_cert_sha256".into(),
            cert.map(|c| c.sha256.clone()).into(),
        );
        rec.insert(
            "peer_cert_subject".into(),
            cert.map(|c| shorten(&c.subject).into_owned()).into(),
        );
        let (result, reason) = match &o.failure {
            None => ("ok", "handshake complete".to_string()),
            Some(why) => ("failed", shorten(why).into_owned()),
        };
        rec.insert("result".into(), result.into());
        rec.insert("reason".into(), reason.into());
        self.send(rec);
    }

    /// Record that a limit stopped the guest: `limit` names it (`timeout`,
    /// `fuel`, ...), `reason` says what happened.
    pub fn record_limit(&self, limit: &str, reason: &str) {
        let mut rec = self.base("limit");
        rec.insert("addr".into(), serde_json::Value::Null);
        rec.insert("name".into(), serde_json::Value::Null);
        rec.insert("decision".into(), "deny".into());
        rec.insert("limit".into(), limit.into());
        rec.insert("rule".into(), limit.into());
        rec.insert("reason".into(), reason.into());
        self.send(rec);
    }

    /// The fields every record has.
    fn base(&self, event: &str) -> serde_json::Map<String, serde_json::Value> {
        let mut rec = serde_json::Map::new();
        rec.insert("ts".into(), rfc3339(SystemTime::now()).into());
        rec.insert("instance".into(), self.instance.as_str().into());
        rec.insert("module_sha256".into(), self.module_sha256.as_str().into());
        rec.insert("event".into(), event.into());
        for (k, v) in &self.extra {
            rec.insert(k.clone(), v.as_str().into());
        }
        rec
    }

    fn send(&self, rec: serde_json::Map<String, serde_json::Value>) {
        self.sink.send_json(rec);
    }

    /// Close the queue (shared with the log's children), wait for the
    /// writer to write what is queued, and say what happened. Records after
    /// this are lost (and counted).
    pub fn finish(&self) -> AuditSummary {
        self.sink.finish()
    }
}

impl LineLog {
    /// Open `dest` for appending (a file is created 0600 if missing).
    pub fn open(dest: &AuditDest) -> Result<LineLog, AuditError> {
        let out: Box<dyn Write + Send> = match dest {
            AuditDest::Stderr => Box::new(io::stderr()),
            AuditDest::File(path) => Box::new(open_file(path).map_err(|source| AuditError {
                path: path.clone(),
                source,
            })?),
        };
        Ok(LineLog::with_writer(out, QUEUE))
    }

    /// Lines written to `out`, with room for `queue` waiting ones.
    pub fn with_writer(out: Box<dyn Write + Send>, queue: usize) -> LineLog {
        let (tx, rx) = sync_channel(queue);
        let writer = std::thread::Builder::new()
            .name("warden-log".into())
            .spawn(move || write_all(rx, out))
            .expect("spawning a log writer thread");
        LineLog {
            tx: Mutex::new(Some(tx)),
            dropped: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            writer: Mutex::new(Some(writer)),
        }
    }

    /// Queue one JSON object as a line (dropped and counted when the queue
    /// is full).
    pub fn send_json(&self, rec: serde_json::Map<String, serde_json::Value>) {
        self.send(serde_json::Value::Object(rec).to_string());
    }

    fn send(&self, line: String) {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tx) = tx.as_ref() else {
            self.lost.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // The writer stopped after a write error.
            Err(TrySendError::Disconnected(_)) => {
                self.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Close the queue, wait for the writer to write what is queued, and
    /// say what happened. Lines after this are lost (and counted).
    pub fn finish(&self) -> AuditSummary {
        drop(self.tx.lock().unwrap_or_else(|e| e.into_inner()).take());
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        let (written, in_hand, error) = match writer.map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => (0, 0, Some("the audit writer thread panicked".to_string())),
            None => (0, 0, None),
        };
        AuditSummary {
            written,
            dropped: self.dropped.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed) + in_hand,
            error,
        }
    }
}

fn open_file(path: &Path) -> io::Result<std::fs::File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

/// The writer thread: write lines as they come, flushing whenever the queue
/// runs dry, until every sender is gone. Returns the records written and
/// flushed, the records in hand when writing failed (written into the
/// buffer, or still queued), and the error.
fn write_all(rx: Receiver<String>, out: Box<dyn Write + Send>) -> (u64, u64, Option<String>) {
    let mut out = BufWriter::new(out);
    let mut written = 0;
    let failed = |unflushed: u64, rx: Receiver<String>, e: io::Error| {
        // Stop taking records (senders now count them as lost), and count
        // the ones already queued.
        let queued = rx.try_iter().count() as u64;
        (unflushed + queued, e.to_string())
    };
    while let Ok(line) = rx.recv() {
        let mut next = Some(line);
        let mut unflushed = 0;
        while let Some(line) = next {
            unflushed += 1;
            if let Err(e) = writeln!(out, "{line}") {
                let (lost, e) = failed(unflushed, rx, e);
                return (written, lost, Some(e));
            }
            next = rx.try_recv().ok();
        }
        if let Err(e) = out.flush() {
            let (lost, e) = failed(unflushed, rx, e);
            return (written, lost, Some(e));
        }
        written += unflushed;
    }
    (written, 0, None)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::mpsc::channel;
    use std::time::Duration;
    use warden_policy::Verdict;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    /// A writer that blocks until the test lets it go, and keeps what it got.
    struct Gated {
        go: Arc<Mutex<std::sync::mpsc::Receiver<()>>>,
        got: Arc<Mutex<Vec<u8>>>,
        waited: bool,
    }

    impl Write for Gated {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if !self.waited {
                let _ = self.go.lock().unwrap().recv();
                self.waited = true;
            }
            self.got.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A real decision: an allow by rule r1, or the default deny.
    fn decision(v: Verdict) -> Decision {
        let rule = warden_policy::Rule::allow(
            "r1",
            "127.0.0.0/8".parse().unwrap(),
            warden_policy::Ports::ANY,
            warden_policy::Rights::CONNECT,
        );
        let policy = match v {
            Verdict::Allow => warden_policy::Policy::new([rule]),
            Verdict::Deny => warden_policy::Policy::deny_all(),
        };
        policy.decide(
            Action::Connect,
            &Target::Addr("127.0.0.1:8080".parse().unwrap()),
        )
    }

    #[test]
    fn a_stalled_writer_never_blocks_and_drops_are_counted() {
        let (go_tx, go_rx) = channel();
        let got = Arc::new(Mutex::new(Vec::new()));
        let out = Gated {
            go: Arc::new(Mutex::new(go_rx)),
            got: got.clone(),
            waited: false,
        };
        // A tiny queue so the stall shows.
        let log = AuditLog::with_writer(Box::new(out), 4, "i1", "abc");
        let target = Target::Addr("127.0.0.1:80".parse().unwrap());
        for _ in 0..200 {
            log.record(Action::Connect, &target, &decision(Verdict::Allow));
        }
        go_tx.send(()).unwrap();
        let s = log.finish();
        assert_eq!(s.written + s.dropped, 200, "{s:?}");
        // Through at most: the queue, what fits in the writer's 8 KiB
        // buffer before its first (stalled) write, and one in hand.
        assert!(s.dropped >= 100, "{s:?}");
        let text = String::from_utf8(got.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count() as u64, s.written);
    }

    #[test]
    fn records_carry_every_field() {
        let got = Arc::new(Mutex::new(Vec::new()));
        struct Keep(Arc<Mutex<Vec<u8>>>);
        impl Write for Keep {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let log = AuditLog::with_writer(Box::new(Keep(got.clone())), 16, "inst", "sha");
        let target = Target::Name {
            host: "api.test".into(),
            port: Some(8080),
        };
        let policy = warden_policy::Policy::deny_all();
        log.record(
            Action::HttpRequest,
            &target,
            &policy.decide(Action::HttpRequest, &target),
        );
        let pin_rule = warden_policy::Rule::allow(
            "api",
            "api.test".parse().unwrap(),
            warden_policy::Ports::ANY,
            warden_policy::Rights::CONNECT,
        );
        let addr = Target::Addr("127.0.0.1:8080".parse().unwrap());
        let pinned = warden_policy::Policy::new([pin_rule]).decide_known(
            Action::Connect,
            &addr,
            &warden_policy::Known {
                resolved_from: &["api.test"],
                ..Default::default()
            },
        );
        log.record(Action::Connect, &addr, &pinned);
        let long = Target::Name {
            host: "x".repeat(100_000),
            port: None,
        };
        log.record(
            Action::Resolve,
            &long,
            &policy.decide(Action::Resolve, &long),
        );
        log.record_limit("timeout", "the guest ran past its time limit of 1s");
        assert_eq!(
            log.finish(),
            AuditSummary {
                written: 4,
                ..AuditSummary::default()
            }
        );
        let text = String::from_utf8(got.lock().unwrap().clone()).unwrap();
        let recs: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(recs[0]["event"], "http-request");
        assert_eq!(recs[0]["addr"], serde_json::Value::Null);
        assert_eq!(recs[0]["name"], "api.test");
        assert_eq!(recs[0]["port"], 8080);
        assert_eq!(recs[0]["decision"], "deny");
        assert_eq!(recs[0]["rule"], "default-deny");
        assert_eq!(
            recs[0]["reason"],
            "no grant allows http-request to api.test:8080; network access is denied by default"
        );
        assert_eq!(recs[0]["instance"], "inst");
        assert_eq!(recs[0]["module_sha256"], "sha");
        assert!(recs[0]["ts"].as_str().unwrap().ends_with('Z'));
        assert_eq!(recs[1]["addr"], "127.0.0.1:8080");
        assert_eq!(recs[1]["name"], "api.test");
        assert_eq!(recs[1]["decision"], "allow");
        assert_eq!(recs[1]["rule"], "api");
        // A huge name is cut, in the name and in the reason.
        assert!(recs[2]["name"].as_str().unwrap().len() < 300);
        assert!(recs[2]["reason"].as_str().unwrap().len() < 400);
        assert_eq!(recs[3]["event"], "limit");
        assert_eq!(recs[3]["limit"], "timeout");
        assert_eq!(recs[3]["decision"], "deny");
    }

    /// A writer whose writes all fail, as on a full disk.
    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(28))
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::Error::from_raw_os_error(28))
        }
    }

    #[test]
    fn a_failing_writer_writes_nothing_and_says_so() {
        let log = AuditLog::with_writer(Box::new(Full), 16, "i", "s");
        let target = Target::Addr("127.0.0.1:80".parse().unwrap());
        log.record(Action::Connect, &target, &decision(Verdict::Deny));
        // Let the writer fail, then record more: lost, not "dropped".
        std::thread::sleep(Duration::from_millis(100));
        for _ in 0..5 {
            log.record(Action::Connect, &target, &decision(Verdict::Deny));
        }
        let s = log.finish();
        assert_eq!(s.written, 0, "{s:?}");
        assert_eq!(s.dropped, 0, "{s:?}");
        assert_eq!(s.lost, 6, "{s:?}");
        assert!(s.error.unwrap().contains("No space left on device"));
    }
}
