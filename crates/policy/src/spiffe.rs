//! SPIFFE IDs as data: what a workload's identity certificate names, and
//! which peers a listener or kind admits by theirs.
//!
//! Warden names each instance's program by its measurement:
//! `spiffe://TRUST_DOMAIN/wasm/sha256/HEX` (a template may put more
//! segments around it, such as the app's name, never drop the digest).
//! The rules are the SPIFFE ID standard's (§2): a lowercase trust domain
//! of `[a-z0-9._-]` up to 255 bytes, path segments of `[a-zA-Z0-9._-]`,
//! none empty, `.` or `..`, no trailing `/`, the whole ID at most 2048
//! bytes. A peer pattern is an exact ID or an ID prefix ending in `/*`,
//! which admits every ID below that path.

/// The longest trust domain (bytes).
pub const MAX_TRUST_DOMAIN: usize = 255;

/// The longest SPIFFE ID (bytes).
pub const MAX_ID: usize = 2048;

/// The path template when none is given: the module's digest only.
pub const DEFAULT_TEMPLATE: &str = "/wasm/sha256/{sha256}";

/// Why a SPIFFE ID, trust domain, template or pattern is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpiffeError {
    /// The trust domain breaks the standard.
    #[error(
        "`{0}` is not a SPIFFE trust domain: lowercase letters, digits, `.`, `-` and `_`, at most 255 bytes"
    )]
    TrustDomain(String),
    /// An ID breaks the standard.
    #[error("`{id}` is not a SPIFFE ID: {why}")]
    Id {
        /// The text.
        id: String,
        /// What is wrong.
        why: &'static str,
    },
    /// The template drops the digest or is not a path.
    #[error(
        "`{0}` is not an identity path template: it must start with `/` and contain {{sha256}} (and may contain {{app}})"
    )]
    Template(String),
}

/// Check a trust domain.
pub fn trust_domain(td: &str) -> Result<&str, SpiffeError> {
    let ok = !td.is_empty()
        && td.len() <= MAX_TRUST_DOMAIN
        && td
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(td)
    } else {
        Err(SpiffeError::TrustDomain(td.to_string()))
    }
}

fn segment_ok(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Check a SPIFFE ID (`spiffe://TD/PATH`, a workload's: the path not
/// empty).
pub fn id(text: &str) -> Result<&str, SpiffeError> {
    let bad = |why| SpiffeError::Id {
        id: text.to_string(),
        why,
    };
    if text.len() > MAX_ID {
        return Err(bad("longer than 2048 bytes"));
    }
    let rest = text
        .strip_prefix("spiffe://")
        .ok_or_else(|| bad("it must start with spiffe://"))?;
    let (td, path) = rest
        .split_once('/')
        .ok_or_else(|| bad("a workload's ID has a path"))?;
    trust_domain(td).map_err(|_| bad("the trust domain is not lowercase [a-z0-9._-]"))?;
    if !path.split('/').all(segment_ok) {
        return Err(bad(
            "each path segment is [a-zA-Z0-9._-], not empty, `.` or `..`, and there is no trailing /",
        ));
    }
    Ok(text)
}

/// The ID of the program whose SHA-256 is `sha256` (hex), in trust
/// domain `td`, by `template` (default [`DEFAULT_TEMPLATE`]; `{app}` is
/// the app's name under `warden serve`, refused without one).
pub fn workload_id(
    td: &str,
    template: Option<&str>,
    sha256: &str,
    app: Option<&str>,
) -> Result<String, SpiffeError> {
    let template = template.unwrap_or(DEFAULT_TEMPLATE);
    if !template.starts_with('/') || !template.contains("{sha256}") {
        return Err(SpiffeError::Template(template.to_string()));
    }
    if template.contains("{app}") && app.is_none() {
        return Err(SpiffeError::Template(format!(
            "{template} (it names {{app}}, and this is not an app)"
        )));
    }
    let path = template
        .replace("{sha256}", sha256)
        .replace("{app}", app.unwrap_or(""));
    let full = format!("spiffe://{}{path}", trust_domain(td)?);
    id(&full).map(str::to_string)
}

/// Check a peer pattern: an ID, or an ID prefix followed by `/*`.
pub fn pattern(text: &str) -> Result<&str, SpiffeError> {
    match text.strip_suffix("/*") {
        Some(prefix) if prefix.matches('/').count() == 2 => {
            // `spiffe://td/*`: every workload of the trust domain.
            let td = prefix.strip_prefix("spiffe://").unwrap_or("");
            trust_domain(td).map_err(|_| SpiffeError::Id {
                id: text.to_string(),
                why: "the trust domain is not lowercase [a-z0-9._-]",
            })?;
            Ok(text)
        }
        Some(prefix) => id(prefix).map(|_| text),
        None => id(text),
    }
}

/// Whether `peer` (a verified certificate's ID) is admitted by one of
/// `patterns`.
pub fn admits(patterns: &[String], peer: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => peer.starts_with(prefix) && peer.len() > prefix.len(),
        None => p == peer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn the_default_id_names_the_digest() {
        assert_eq!(
            workload_id("example.org", None, HEX, None).unwrap(),
            format!("spiffe://example.org/wasm/sha256/{HEX}")
        );
        assert_eq!(
            workload_id(
                "td",
                Some("/app/{app}/wasm/sha256/{sha256}"),
                HEX,
                Some("api")
            )
            .unwrap(),
            format!("spiffe://td/app/api/wasm/sha256/{HEX}")
        );
    }

    #[test]
    fn bad_trust_domains_templates_and_ids_are_refused() {
        for td in ["", "Example.org", "a b", "td:443", "user@td", "t%41"] {
            assert!(workload_id(td, None, HEX, None).is_err(), "{td}");
        }
        for t in ["/wasm/{app}", "wasm/{sha256}", "/app/{app}/{sha256}"] {
            assert!(workload_id("td", Some(t), HEX, None).is_err(), "{t}");
        }
        assert!(workload_id("td", Some("/app/{app}/{sha256}"), HEX, Some("../x")).is_err());
        for i in [
            "spiffe://td",
            "spiffe://td/",
            "spiffe://td/a/",
            "spiffe://td/a//b",
            "spiffe://td/./a",
            "http://td/a",
            "spiffe://TD/a",
        ] {
            assert!(id(i).is_err(), "{i}");
        }
        assert!(id(&format!("spiffe://td/{}", "a".repeat(2100))).is_err());
    }

    #[test]
    fn patterns_admit_exact_ids_and_what_is_below_a_prefix() {
        let p = vec![
            "spiffe://td/wasm/*".to_string(),
            "spiffe://td/api".to_string(),
        ];
        assert!(admits(&p, "spiffe://td/wasm/sha256/ab"));
        assert!(admits(&p, "spiffe://td/api"));
        assert!(!admits(&p, "spiffe://td/api/x"));
        assert!(!admits(&p, "spiffe://td/wasm"));
        assert!(!admits(&p, "spiffe://td/wasmx/a"));
        assert!(!admits(&p, "spiffe://other/wasm/a"));
        assert!(pattern("spiffe://td/*").is_ok());
        assert!(pattern("spiffe://td/wasm/*").is_ok());
        assert!(pattern("spiffe://td/wa*").is_err());
        assert!(pattern("*").is_err());
    }

    proptest! {
        #[test]
        fn every_id_made_is_valid_and_carries_the_digest(
            td in "[a-z0-9][a-z0-9.-]{0,30}",
            digest in "[0-9a-f]{64}",
            app in "[a-zA-Z0-9_-]{1,20}",
        ) {
            let made = workload_id(&td, Some("/a/{app}/wasm/sha256/{sha256}"), &digest, Some(&app)).unwrap();
            prop_assert!(id(&made).is_ok());
            let suffix = format!("/wasm/sha256/{digest}");
            prop_assert!(made.ends_with(&suffix));
            let below = format!("spiffe://{td}/a/*");
            prop_assert!(admits(&[below], &made));
        }

        #[test]
        fn an_exact_pattern_admits_only_itself(a in "[a-z]{1,8}", b in "[a-z]{1,8}") {
            let pa = format!("spiffe://td/{a}");
            prop_assert_eq!(admits(std::slice::from_ref(&pa), &format!("spiffe://td/{b}")), a == b);
        }
    }
}
