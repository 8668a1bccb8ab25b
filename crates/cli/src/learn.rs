//! `warden learn AUDIT.jsonl`: read an audit log (written under
//! `--policy-mode audit`, or any audit log) and print the smallest
//! manifest that allows what it shows (see `warden_policy::learn`).

use std::io::BufRead;
use std::path::Path;
use std::process::ExitCode;

use warden_policy::Action;
use warden_policy::learn::{Seen, learn};

use crate::report::say;

/// The decision records of the log at `file`, or what is wrong with it.
fn read(file: &Path) -> Result<Vec<Seen>, String> {
    let f =
        std::fs::File::open(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let mut seen = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let at = |what: &str| format!("{}:{}: {what}", file.display(), i + 1);
        let line = line.map_err(|e| at(&e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let rec: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| at(&format!("not a JSON audit record ({e})")))?;
        // Decisions only: TLS handshakes, limits and the log's own lines
        // grant nothing.
        let Some(action) = rec["event"].as_str().and_then(Action::from_name) else {
            continue;
        };
        let addr = match rec["addr"].as_str() {
            Some(a) => Some(
                a.parse()
                    .map_err(|_| at(&format!("`{a}` is not an address")))?,
            ),
            None => None,
        };
        seen.push(Seen {
            action,
            name: rec["name"].as_str().map(str::to_string),
            port: rec["port"].as_u64().and_then(|p| u16::try_from(p).ok()),
            addr,
            via: rec["via"]
                .as_array()
                .map(|v| {
                    v.iter()
                        .filter_map(|n| n.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            rule: rec["rule"].as_str().unwrap_or_default().to_string(),
            // A summary of repeats stands for that many decisions.
            count: rec["repeated"].as_u64().unwrap_or(1).max(1),
        });
    }
    Ok(seen)
}

/// Print the learned manifest for the log at `file`.
pub fn learn_from(file: &Path) -> ExitCode {
    let seen = match read(file) {
        Ok(s) => s,
        Err(e) => return crate::usage_error(&e),
    };
    if seen.is_empty() {
        return crate::usage_error(&format!(
            "{}: no network decisions in it; run the program with --audit FILE (and --policy-mode audit) first",
            file.display()
        ));
    }
    let learned = learn(&seen);
    let text = learned.to_toml(&file.display().to_string());
    for line in text.lines() {
        say(line);
    }
    ExitCode::SUCCESS
}
