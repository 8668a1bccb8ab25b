//! The audit log: one JSON object per line for every decision the gate
//! makes.
//!
//! Records go through a bounded queue to a writer thread
//! ([`LineLog`](crate::linelog)), so a slow disk or a stalled pipe never
//! blocks the guest: when the queue is full the record is dropped and
//! counted, and [`AuditLog::finish`] reports the count. The file is
//! rotated at its maximum size, and opening it never blocks (see
//! [`crate::linelog`]).
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
//! **Repeats.** A guest can make the same decision happen as fast as it
//! can loop (a flood of denied datagrams). An instance's identical records
//! (same event, target, rule and outcome) are written in full
//! [`REPEATS_IN_FULL`] times; after that they are counted, and one summary
//! record per [`SUMMARY_INTERVAL`] (at the next identical record after it,
//! and when the instance's log ends) stands for them: the first of them,
//! with `repeated` (how many it stands for, itself included) and `since`
//! (when the first of them happened). Every decision is accounted for
//! exactly: a record counts as one, a summary as its `repeated`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use crate::timestamp::rfc3339;

pub use crate::linelog::{AuditDest, AuditError, AuditSummary, LineLog, QUEUE};
use warden_policy::{Action, Decision, Target, shorten};

/// How many identical records of an instance are written in full before
/// the rest are counted into summaries.
pub const REPEATS_IN_FULL: u64 = 5;

/// The most often a summary of one kind of repeated record is written.
pub const SUMMARY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The most kinds of record an instance tracks for repeats; past it, the
/// pending summaries are written and tracking starts afresh.
pub const MAX_TRACKED: usize = 1024;

/// The audit log of one guest instance. Instances of one server share the
/// queue and writer ([`AuditLog::child`]).
pub struct AuditLog {
    sink: std::sync::Arc<LineLog>,
    instance: String,
    module_sha256: String,
    /// Fields every record of this instance carries besides the common
    /// ones (`app`, `request_id` under `warden serve`).
    extra: Vec<(String, String)>,
    repeats: Mutex<HashMap<String, Repeats>>,
    /// Where records also go as they are written (OpenTelemetry logs).
    mirror: Option<std::sync::Arc<dyn AuditSink>>,
}

/// Somewhere else audit records go, as they are written: OTLP log
/// records under `--otlp-audit`. It must not block.
pub trait AuditSink: Send + Sync {
    /// One record, with every field the line has.
    fn record(&self, fields: &serde_json::Map<String, serde_json::Value>);
}

/// One kind of record an instance keeps making.
struct Repeats {
    /// How many there have been.
    seen: u64,
    /// Those counted since the last record written, with the first of them
    /// (its record) and when it happened.
    pending: u64,
    first: Option<(serde_json::Map<String, serde_json::Value>, String)>,
    /// When a record of this kind was last written.
    last_written: Instant,
}

impl AuditLog {
    /// Open `dest` (a file rotated past `max_size` bytes) for the instance
    /// `instance` of the guest whose bytes hash to `module_sha256`.
    pub fn open(
        dest: &AuditDest,
        max_size: u64,
        instance: &str,
        module_sha256: &str,
    ) -> Result<Self, AuditError> {
        Ok(AuditLog::on(
            std::sync::Arc::new(LineLog::open(dest, max_size)?),
            instance,
            module_sha256,
            Vec::new(),
        ))
    }

    /// An audit log writing to `out`, with room for `queue` waiting records.
    pub fn with_writer(
        out: Box<dyn std::io::Write + Send>,
        queue: usize,
        instance: &str,
        module_sha256: &str,
    ) -> Self {
        AuditLog::on(
            std::sync::Arc::new(LineLog::with_writer(out, queue)),
            instance,
            module_sha256,
            Vec::new(),
        )
    }

    fn on(
        sink: std::sync::Arc<LineLog>,
        instance: &str,
        module_sha256: &str,
        extra: Vec<(String, String)>,
    ) -> Self {
        AuditLog {
            sink,
            instance: instance.to_string(),
            module_sha256: module_sha256.to_string(),
            extra,
            repeats: Mutex::new(HashMap::new()),
            mirror: None,
        }
    }

    /// The same log, its records also given to `mirror`; its children
    /// inherit it.
    pub fn mirrored(mut self, mirror: Option<std::sync::Arc<dyn AuditSink>>) -> Self {
        self.mirror = mirror;
        self
    }

    /// The same log, every record also carrying `key: value` (the trace
    /// a run's records belong to).
    pub fn with_field(mut self, key: &str, value: &str) -> Self {
        self.extra.push((key.to_string(), value.to_string()));
        self
    }

    /// Write one record (and give it to the mirror).
    fn emit(&self, rec: serde_json::Map<String, serde_json::Value>) {
        if let Some(m) = &self.mirror {
            m.record(&rec);
        }
        self.sink.send_json(rec);
    }

    /// The log of another instance, written through the same queue and
    /// writer: its records say `instance`, the guest whose bytes hash to
    /// `module_sha256`, and carry `extra` fields.
    pub fn child(&self, instance: &str, module_sha256: &str, extra: &[(&str, &str)]) -> AuditLog {
        let mirror = self.mirror.clone();
        AuditLog::on(
            self.sink.clone(),
            instance,
            module_sha256,
            extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .mirrored(mirror)
    }

    /// Record one decision about `action` on `target`; `via`: the names
    /// the target address was resolved from, if any (written as `via`,
    /// so that `warden learn` can grant the name the guest used).
    pub fn record(&self, action: Action, target: &Target, decision: &Decision, via: &[&str]) {
        let (addr, name, port) = match target {
            Target::Addr(a) => (
                Some(a.to_string()),
                decision.name().map(str::to_string),
                None,
            ),
            Target::Name { host, port } => (None, Some(shorten(host).into_owned()), *port),
        };
        let key = format!(
            "{action} {target} {} {}",
            decision.rule(),
            decision.verdict().as_str()
        );
        self.send_repeatable(key, || {
            let mut rec = self.base(action.as_str());
            rec.insert("addr".into(), addr.into());
            rec.insert("name".into(), name.into());
            rec.insert("decision".into(), decision.verdict().as_str().into());
            rec.insert("rule".into(), decision.rule().into());
            rec.insert("reason".into(), decision.reason().to_string().into());
            if let Some(port) = port {
                rec.insert("port".into(), port.into());
            }
            if !via.is_empty() {
                let names: Vec<serde_json::Value> =
                    via.iter().map(|n| shorten(n).into_owned().into()).collect();
                rec.insert("via".into(), names.into());
            }
            rec
        });
    }

    /// Record a TLS handshake's outcome: `tls-connect` (outgoing) or
    /// `tls-accept` (incoming), with the peer, the name, the kind, the
    /// protocol version and cipher suite agreed, the peer certificate's
    /// SHA-256 and subject, and the result (`ok` or `failed`) with the
    /// reason.
    pub fn record_tls(&self, event: &str, peer: std::net::SocketAddr, o: &crate::tls::Handshake) {
        let key = format!(
            "{event} {peer} {} {:?}",
            o.name.as_deref().unwrap_or_default(),
            o.failure
        );
        self.send_repeatable(key, || {
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
            rec.insert("local_id".into(), o.local_id.clone().into());
            rec.insert("peer_id".into(), o.peer_id.clone().into());
            let (result, reason) = match &o.failure {
                None => ("ok", "handshake complete".to_string()),
                Some(why) => ("failed", shorten(why).into_owned()),
            };
            rec.insert("result".into(), result.into());
            rec.insert("reason".into(), reason.into());
            rec
        });
    }

    /// Record that a limit stopped the guest: `limit` names it (`timeout`,
    /// `fuel`, ...), `reason` says what happened.
    pub fn record_limit(&self, limit: &str, reason: &str) {
        let key = format!("limit {limit} {reason}");
        self.send_repeatable(key, || {
            let mut rec = self.base("limit");
            rec.insert("addr".into(), serde_json::Value::Null);
            rec.insert("name".into(), serde_json::Value::Null);
            rec.insert("decision".into(), "deny".into());
            rec.insert("limit".into(), limit.into());
            rec.insert("rule".into(), limit.into());
            rec.insert("reason".into(), reason.into());
            rec
        });
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

    /// Write the record `make` makes, unless it is one of a kind (`key`)
    /// written [`REPEATS_IN_FULL`] times already: then count it, and write
    /// the kind's summary when [`SUMMARY_INTERVAL`] has passed.
    fn send_repeatable(
        &self,
        key: String,
        make: impl FnOnce() -> serde_json::Map<String, serde_json::Value>,
    ) {
        let now = Instant::now();
        let mut repeats = crate::sync::lock(&self.repeats);
        if repeats.len() >= MAX_TRACKED && !repeats.contains_key(&key) {
            for (_, r) in repeats.drain() {
                self.send_summary(r);
            }
        }
        let r = repeats.entry(key).or_insert(Repeats {
            seen: 0,
            pending: 0,
            first: None,
            last_written: now,
        });
        r.seen += 1;
        if r.seen <= REPEATS_IN_FULL {
            r.last_written = now;
            self.emit(make());
            return;
        }
        r.pending += 1;
        if r.first.is_none() {
            r.first = Some((make(), rfc3339(SystemTime::now())));
        }
        if now.duration_since(r.last_written) >= SUMMARY_INTERVAL {
            r.last_written = now;
            let pending = std::mem::take(&mut r.pending);
            if let Some((rec, since)) = r.first.take() {
                self.emit(summary(rec, pending, since));
            }
        }
    }

    /// Write what `r` has counted and not yet said.
    fn send_summary(&self, r: Repeats) {
        if let (Some((rec, since)), n) = (r.first, r.pending)
            && n > 0
        {
            self.emit(summary(rec, n, since));
        }
    }

    /// Write the summaries still pending (the instance's log ends).
    fn flush_repeats(&self) {
        let drained: Vec<Repeats> = crate::sync::lock(&self.repeats)
            .drain()
            .map(|(_, r)| r)
            .collect();
        for r in drained {
            self.send_summary(r);
        }
    }

    /// Write the pending summaries, close the queue (shared with the log's
    /// children), wait for the writer to write what is queued, and say
    /// what happened. Records after this are lost (and counted).
    pub fn finish(&self) -> AuditSummary {
        self.flush_repeats();
        self.sink.finish()
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        // An instance's log ends with it: its counts are said.
        self.flush_repeats();
    }
}

/// The summary record standing for `n` repeats of `rec`, the first of them
/// at `since`.
fn summary(
    mut rec: serde_json::Map<String, serde_json::Value>,
    n: u64,
    since: String,
) -> serde_json::Map<String, serde_json::Value> {
    rec.insert("ts".into(), rfc3339(SystemTime::now()).into());
    rec.insert("repeated".into(), n.into());
    rec.insert("since".into(), since.into());
    rec
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{self, Write};
    use std::sync::Arc;
    use std::sync::mpsc::channel;
    use std::time::Duration;
    use warden_policy::Verdict;

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
            Verdict::Deny | Verdict::WouldDeny => warden_policy::Policy::deny_all(),
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
        // Each to another port: no two records alike.
        for port in 0..200 {
            let target = Target::Addr(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
            log.record(Action::Connect, &target, &decision(Verdict::Allow), &[]);
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
            &[],
        );
        let pin_rule = warden_policy::Rule::allow(
            "api",
            "api.test".parse().unwrap(),
            warden_policy::Ports::ANY,
            warden_policy::Rights::CONNECT,
        );
        let addr = Target::Addr("93.184.216.34:8080".parse().unwrap());
        let pinned = warden_policy::Policy::new([pin_rule]).decide_known(
            Action::Connect,
            &addr,
            &warden_policy::Known {
                resolved_from: &["api.test"],
                ..Default::default()
            },
        );
        log.record(Action::Connect, &addr, &pinned, &["api.test"]);
        let long = Target::Name {
            host: "x".repeat(100_000),
            port: None,
        };
        log.record(
            Action::Resolve,
            &long,
            &policy.decide(Action::Resolve, &long),
            &[],
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
        assert_eq!(recs[1]["addr"], "93.184.216.34:8080");
        assert_eq!(recs[1]["name"], "api.test");
        assert_eq!(recs[1]["decision"], "allow");
        assert_eq!(recs[1]["rule"], "api");
        assert_eq!(recs[1]["via"], serde_json::json!(["api.test"]));
        assert_eq!(recs[0].get("via"), None, "no via without names");
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
        log.record(Action::Connect, &target, &decision(Verdict::Deny), &[]);
        // Let the writer fail, then record more: lost, not "dropped".
        std::thread::sleep(Duration::from_millis(100));
        for _ in 0..5 {
            log.record(Action::Connect, &target, &decision(Verdict::Deny), &[]);
        }
        let s = log.finish();
        assert_eq!(s.written, 0, "{s:?}");
        assert_eq!(s.dropped, 0, "{s:?}");
        assert_eq!(s.lost, 6, "{s:?}");
        assert!(s.error.unwrap().contains("No space left on device"));
    }

    /// A writer that keeps what it got.
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

    fn lines_of(got: &Arc<Mutex<Vec<u8>>>) -> Vec<serde_json::Value> {
        String::from_utf8(got.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// What the records stand for: one each, or a summary's `repeated`.
    fn accounted(recs: &[serde_json::Value]) -> u64 {
        recs.iter()
            .map(|r| r["repeated"].as_u64().unwrap_or(1))
            .sum()
    }

    #[test]
    fn repeats_are_counted_into_summaries_that_add_up_exactly() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let log = AuditLog::with_writer(Box::new(Keep(got.clone())), QUEUE, "i", "s");
        let flood = Target::Addr("127.0.0.1:9".parse().unwrap());
        let other = Target::Addr("127.0.0.1:10".parse().unwrap());
        let started = Instant::now();
        let mut n = 0u64;
        // About 2.5 intervals of a flood, with another target now and then.
        while started.elapsed() < SUMMARY_INTERVAL * 5 / 2 {
            log.record(Action::UdpSend, &flood, &decision(Verdict::Deny), &[]);
            n += 1;
            if n.is_multiple_of(1000) {
                log.record(Action::Connect, &other, &decision(Verdict::Deny), &[]);
            }
        }
        let others = n / 1000;
        let s = log.finish();
        assert_eq!(s.dropped, 0, "{s:?}");
        let recs = lines_of(&got);
        let of = |port: &str| -> Vec<serde_json::Value> {
            recs.iter()
                .filter(|r| r["addr"].as_str().is_some_and(|a| a.ends_with(port)))
                .cloned()
                .collect()
        };
        let flood_recs = of(":9");
        assert_eq!(accounted(&flood_recs), n, "every one accounted for");
        // The first few in full, then about one summary per interval (and
        // the last one at the end).
        assert_eq!(
            flood_recs
                .iter()
                .filter(|r| r["repeated"].is_null())
                .count() as u64,
            REPEATS_IN_FULL
        );
        let summaries = flood_recs.len() as u64 - REPEATS_IN_FULL;
        assert!((2..=4).contains(&summaries), "{summaries} summaries");
        let last = flood_recs.last().unwrap();
        assert_eq!(last["event"], "udp-send");
        assert_eq!(last["decision"], "deny");
        assert!(last["since"].as_str().unwrap().ends_with('Z'));
        assert_eq!(accounted(&of(":10")), others);
        assert!(recs.len() < 64, "{} records for {n} decisions", recs.len());
    }

    #[test]
    fn an_instance_says_its_counts_when_its_log_ends() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let root = AuditLog::with_writer(Box::new(Keep(got.clone())), QUEUE, "server", "s");
        let target = Target::Addr("127.0.0.1:9".parse().unwrap());
        {
            // A request's instance, dropped when the request ends.
            let child = root.child("req-1", "s", &[("request_id", "r1")]);
            for _ in 0..50 {
                child.record(Action::Connect, &target, &decision(Verdict::Deny), &[]);
            }
        }
        root.finish();
        let recs = lines_of(&got);
        assert_eq!(recs.len() as u64, REPEATS_IN_FULL + 1);
        assert_eq!(accounted(&recs), 50);
        assert!(recs.iter().all(|r| r["request_id"] == "r1"));
    }

    #[test]
    fn a_file_is_rotated_at_its_maximum_and_the_disk_holds_twice_that() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let max = 16 * 1024;
        let log = AuditLog::open(&AuditDest::File(path.clone()), max, "i", "s").unwrap();
        // Every record another target, so none is a repeat.
        for i in 0..2000u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            let target = Target::Addr(std::net::SocketAddr::from((ip, 80)));
            log.record(Action::Connect, &target, &decision(Verdict::Deny), &[]);
        }
        let s = log.finish();
        assert!(s.rotated >= 2, "{s:?}");
        let now = std::fs::metadata(&path).unwrap().len();
        let old = std::fs::metadata(dir.path().join("audit.jsonl.1"))
            .unwrap()
            .len();
        assert!(now <= max && old <= max, "{now} and {old} bytes");
        let first = std::fs::read_to_string(&path).unwrap();
        let first: serde_json::Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
        assert_eq!(first["event"], "log-rotated");
        assert!(first["reason"].as_str().unwrap().contains("audit.jsonl.1"));
    }

    #[test]
    fn a_fifo_nobody_reads_is_refused_after_a_bounded_wait() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("audit.fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let started = Instant::now();
        let e = AuditLog::open(&AuditDest::File(fifo.clone()), 1 << 20, "i", "s")
            .err()
            .expect("no reader: refused");
        let waited = started.elapsed();
        assert!(waited >= crate::linelog::OPEN_WAIT, "{waited:?}");
        assert!(waited < crate::linelog::OPEN_WAIT * 2, "{waited:?}");
        assert!(e.to_string().contains("FIFO that nothing reads"), "{e}");
        // With a reader, it opens and writes.
        let reader = std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap());
        let log = loop {
            if let Ok(log) = AuditLog::open(
                &AuditDest::File(dir.path().join("audit.fifo")),
                1 << 20,
                "i",
                "s",
            ) {
                break log;
            }
        };
        log.record(
            Action::Connect,
            &Target::Addr("127.0.0.1:9".parse().unwrap()),
            &decision(Verdict::Deny),
            &[],
        );
        assert_eq!(log.finish().written, 1);
        drop(log);
        assert_eq!(reader.join().unwrap().lines().count(), 1);
    }
}
