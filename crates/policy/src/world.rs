//! The operator's world: which interfaces a component may import, written
//! as patterns (`wasi:cli/*`, `wasi:http/outgoing-handler@0.2.*`,
//! `example:kv/store`). Pure data, like the rest of the policy: the host
//! lists what a component (after its plugs) imports and asks
//! [`World::refused`] which of those fall outside; with no world given
//! nothing is asked and every import the host can satisfy is allowed.
//!
//! A pattern is `NAMESPACE:PACKAGE/INTERFACE[@VERSION]`:
//! - PACKAGE may be `*` (any package of the namespace; the interface must
//!   then be `*` too), INTERFACE may be `*` (any interface of the package);
//! - no `@VERSION` allows every version (and the unversioned name);
//!   `@0.2.*` allows versions starting `0.2.`; `@0.2.3` only that one.
//! - A plain name (`log`, an import that is not an interface) matches
//!   itself only.

use std::fmt;

/// One pattern of the world.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImportPattern {
    /// As written (it is also how it prints).
    text: String,
    shape: Shape,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Shape {
    /// A plain import name.
    Plain(String),
    Interface {
        namespace: String,
        /// `None`: any package.
        package: Option<String>,
        /// `None`: any interface.
        interface: Option<String>,
        version: Version,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Version {
    Any,
    Exact(String),
    /// Versions that start with this (`0.2.` for `0.2.*`).
    Prefix(String),
}

/// A pattern that does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not an import pattern: {why}; expected NAMESPACE:PACKAGE/INTERFACE[@VERSION] such as wasi:cli/*, wasi:http/outgoing-handler@0.2.* or example:kv/store"
)]
pub struct PatternError {
    text: String,
    why: &'static str,
}

fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.split('-').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

fn is_version(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
}

/// A component import's name split as an interface name, if it is one:
/// (namespace, package, interface, version).
fn split_name(name: &str) -> Option<(&str, &str, &str, Option<&str>)> {
    let (base, version) = match name.split_once('@') {
        Some((b, v)) => (b, Some(v)),
        None => (name, None),
    };
    let (namespace, rest) = base.split_once(':')?;
    let (package, interface) = rest.split_once('/')?;
    Some((namespace, package, interface, version))
}

impl ImportPattern {
    /// Read a pattern.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let bad = |why| PatternError {
            text: text.to_string(),
            why,
        };
        let t = text.trim();
        if !t.contains(':') {
            if !is_word(t) {
                return Err(bad("a plain name is lowercase words joined by -"));
            }
            return Ok(Self {
                text: t.to_string(),
                shape: Shape::Plain(t.to_string()),
            });
        }
        let (base, version) = match t.split_once('@') {
            Some((b, v)) => (b, Some(v)),
            None => (t, None),
        };
        let (namespace, rest) = base.split_once(':').ok_or_else(|| bad("no namespace"))?;
        let (package, interface) = rest
            .split_once('/')
            .ok_or_else(|| bad("no /INTERFACE (write /* for all of a package)"))?;
        if !is_word(namespace) {
            return Err(bad("the namespace is lowercase words joined by -"));
        }
        let package = match package {
            "*" => None,
            p if is_word(p) => Some(p.to_string()),
            _ => return Err(bad("the package is lowercase words joined by -, or *")),
        };
        let interface = match interface {
            "*" => None,
            i if is_word(i) => Some(i.to_string()),
            _ => return Err(bad("the interface is lowercase words joined by -, or *")),
        };
        if package.is_none() && interface.is_some() {
            return Err(bad(
                "a pattern for any package covers all its interfaces: write NAMESPACE:*/*",
            ));
        }
        let version = match version {
            None | Some("*") => Version::Any,
            Some(v) => match v.strip_suffix('*') {
                Some(prefix)
                    if !prefix.contains('*') && (prefix.is_empty() || is_version(prefix)) =>
                {
                    Version::Prefix(prefix.to_string())
                }
                Some(_) => return Err(bad("only a version's end may be *")),
                None if v.contains('*') => return Err(bad("only a version's end may be *")),
                None if is_version(v) => Version::Exact(v.to_string()),
                None => return Err(bad("a version is digits, letters, dots, - and +")),
            },
        };
        Ok(Self {
            text: t.to_string(),
            shape: Shape::Interface {
                namespace: namespace.to_string(),
                package,
                interface,
                version,
            },
        })
    }

    /// Whether an import named `name` falls under this pattern.
    pub fn matches(&self, name: &str) -> bool {
        match &self.shape {
            Shape::Plain(p) => p == name,
            Shape::Interface {
                namespace,
                package,
                interface,
                version,
            } => {
                let Some((ns, pkg, iface, ver)) = split_name(name) else {
                    return false;
                };
                ns == namespace
                    && package.as_deref().is_none_or(|p| p == pkg)
                    && interface.as_deref().is_none_or(|i| i == iface)
                    && match (version, ver) {
                        (Version::Any, _) => true,
                        (Version::Exact(v), Some(ver)) => v == ver,
                        (Version::Prefix(v), Some(ver)) => ver.starts_with(v.as_str()),
                        (_, None) => false,
                    }
            }
        }
    }
}

impl fmt::Display for ImportPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The interfaces a component may import.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct World {
    /// The patterns, any of which admits an import.
    pub imports: Vec<ImportPattern>,
}

impl World {
    /// A world of these patterns.
    pub fn parse<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Result<Self, PatternError> {
        Ok(Self {
            imports: patterns
                .into_iter()
                .map(ImportPattern::parse)
                .collect::<Result<_, _>>()?,
        })
    }

    /// Whether the world admits an import named `name`.
    pub fn allows(&self, name: &str) -> bool {
        self.imports.iter().any(|p| p.matches(name))
    }

    /// The names in `imports` the world does not admit, in their order.
    pub fn refused<'a>(&self, imports: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
        imports.into_iter().filter(|n| !self.allows(n)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn world(p: &[&str]) -> World {
        World::parse(p.iter().copied()).unwrap()
    }

    #[test]
    fn patterns_admit_what_they_say_and_nothing_else() {
        let w = world(&[
            "wasi:cli/*",
            "wasi:http/outgoing-handler@0.2.*",
            "example:kv/store",
            "wasi:random/random@0.2.3",
            "log",
        ]);
        for yes in [
            "wasi:cli/environment@0.2.0",
            "wasi:cli/run@0.3.0",
            "wasi:cli/stdout",
            "wasi:http/outgoing-handler@0.2.6",
            "example:kv/store",
            "example:kv/store@1.0.0",
            "wasi:random/random@0.2.3",
            "log",
        ] {
            assert!(w.allows(yes), "{yes}");
        }
        for no in [
            "wasi:sockets/tcp@0.2.0",
            "wasi:http/outgoing-handler@0.3.0",
            "wasi:http/outgoing-handler",
            "wasi:http/types@0.2.6",
            "example:kv/atomics",
            "examples:kv/store",
            "wasi:random/random@0.2.30",
            "logs",
            "wasi:clix/environment@0.2.0",
        ] {
            assert!(!w.allows(no), "{no}");
        }
        assert!(world(&["wasi:*/*"]).allows("wasi:sockets/tcp@0.2.0"));
        assert!(!World::default().allows("wasi:cli/run@0.2.0"));
        assert_eq!(
            w.refused(["wasi:cli/run@0.2.0", "wasi:sockets/tcp@0.2.0", "log"]),
            vec!["wasi:sockets/tcp@0.2.0"]
        );
    }

    #[test]
    fn bad_patterns_say_why() {
        for (bad, why) in [
            ("", "plain name"),
            ("wasi:cli", "no /INTERFACE"),
            ("Wasi:cli/*", "namespace"),
            ("wasi:cl*/run", "package"),
            ("wasi:cli/ru*", "interface"),
            ("wasi:*/run", "NAMESPACE:*/*"),
            ("wasi:cli/run@0.*.1", "version's end"),
            ("wasi:cli/run@0.2 x", "version is"),
            ("wasi:cli/run@", "version is"),
        ] {
            let e = ImportPattern::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
            assert!(e.contains("wasi:cli/*"), "{e}");
        }
    }

    fn word() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9]{0,5}(-[a-z0-9]{1,4}){0,2}"
    }

    fn version() -> impl Strategy<Value = String> {
        "[0-9]{1,2}\\.[0-9]{1,2}\\.[0-9]{1,2}(-rc[0-9])?"
    }

    proptest! {
        #[test]
        fn an_exact_pattern_admits_its_name_only(
            ns in word(), pkg in word(), iface in word(), ver in version(), other in word()
        ) {
            let name = format!("{ns}:{pkg}/{iface}@{ver}");
            let p = ImportPattern::parse(&name).unwrap();
            prop_assert!(p.matches(&name));
            prop_assert_eq!(ImportPattern::parse(&p.to_string()).unwrap(), p.clone());
            if other != iface {
                let other_iface = format!("{ns}:{pkg}/{other}@{ver}");
                prop_assert!(!p.matches(&other_iface));
            }
            let unversioned = format!("{ns}:{pkg}/{iface}");
            prop_assert!(!p.matches(&unversioned));
        }

        #[test]
        fn wildcards_cover_their_scope_and_stop_at_it(
            ns in word(), pkg in word(), iface in word(), ver in version(), other in word()
        ) {
            let name = format!("{ns}:{pkg}/{iface}@{ver}");
            for pattern in [
                format!("{ns}:*/*"),
                format!("{ns}:{pkg}/*"),
                format!("{ns}:{pkg}/{iface}"),
                format!("{ns}:{pkg}/{iface}@*"),
                format!("{ns}:{pkg}/{iface}@{}*", &ver[..ver.find('.').unwrap() + 1]),
            ] {
                let p = ImportPattern::parse(&pattern).unwrap();
                prop_assert!(p.matches(&name), "{} does not admit {}", pattern, name);
                if other != ns {
                    let elsewhere = format!("{other}:{pkg}/{iface}@{ver}");
                    prop_assert!(!p.matches(&elsewhere));
                }
            }
        }
    }
}
