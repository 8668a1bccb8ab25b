//! Address blocks to rule indices: one hash table per prefix length in use.
//!
//! A lookup masks the address to each prefix length that has rules
//! (shortest first) and looks it up: as many probes as there are distinct
//! lengths (a handful in practice, at most 33 for IPv4 and 129 for IPv6),
//! whatever the number of rules. That is what keeps
//! [`Policy::decide`](crate::Policy::decide) fast at a hundred thousand
//! rules. The tables are built from the operator's rules only; a guest's
//! address is only ever looked up.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::ControlFlow;

/// A fast hash for left-aligned address bits: a folded multiply. The keys
/// are the operator's, so no guest can choose them to collide.
#[derive(Default)]
struct Fold(u64);

fn fold(x: u128) -> u64 {
    let (lo, hi) = (x as u64, (x >> 64) as u64);
    let m = u128::from(lo ^ 0x243f_6a88_85a3_08d3) * u128::from(hi ^ 0x1319_8a2e_0370_7344);
    (m as u64) ^ ((m >> 64) as u64)
}

impl Hasher for Fold {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(16) {
            let mut word = [0u8; 16];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = fold(u128::from_le_bytes(word) ^ u128::from(self.0));
        }
    }

    fn write_u128(&mut self, x: u128) {
        self.0 = fold(x ^ u128::from(self.0));
    }
}

type Table = HashMap<u128, Vec<u32>, BuildHasherDefault<Fold>>;

/// Rule indices keyed by left-aligned address prefixes.
#[derive(Clone, Default)]
pub(crate) struct Prefixes {
    /// The prefix lengths that have rules, shortest first.
    by_len: Vec<(u8, Table)>,
}

/// The top `len` bits, left-aligned.
fn mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

impl Prefixes {
    /// Record `rule` under the first `len` bits of `bits`.
    pub(crate) fn insert(&mut self, bits: u128, len: u8, rule: u32) {
        let at = match self.by_len.binary_search_by_key(&len, |(l, _)| *l) {
            Ok(at) => at,
            Err(at) => {
                self.by_len.insert(at, (len, Table::default()));
                at
            }
        };
        self.by_len[at]
            .1
            .entry(bits & mask(len))
            .or_default()
            .push(rule);
    }

    /// Call `f` with every rule whose prefix covers `bits`, shortest
    /// prefix first, stopping early when `f` says so.
    pub(crate) fn for_each_match(&self, bits: u128, mut f: impl FnMut(u32) -> ControlFlow<()>) {
        for (len, table) in &self.by_len {
            if let Some(rules) = table.get(&(bits & mask(*len))) {
                for &rule in rules {
                    if f(rule).is_break() {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(t: &Prefixes, bits: u128) -> Vec<u32> {
        let mut out = Vec::new();
        t.for_each_match(bits, |r| {
            out.push(r);
            ControlFlow::Continue(())
        });
        out
    }

    #[test]
    fn yields_every_covering_prefix_shortest_first() {
        let mut t = Prefixes::default();
        let top = |x: u32| u128::from(x) << 96;
        t.insert(top(0x0a01_0203), 32, 3); // 10.1.2.3/32
        t.insert(0, 0, 0); // 0.0.0.0/0
        t.insert(top(0x0a00_0000), 8, 1); // 10.0.0.0/8
        t.insert(top(0x0a01_0000), 16, 2); // 10.1.0.0/16
        t.insert(top(0x0a01_0000), 16, 4); // a second rule on 10.1/16
        assert_eq!(matches(&t, top(0x0a01_0203)), [0, 1, 2, 4, 3]);
        assert_eq!(matches(&t, top(0x0a01_0204)), [0, 1, 2, 4]);
        assert_eq!(matches(&t, top(0x0b00_0000)), [0]);
        // IPv6 widths, and a /128.
        let mut t = Prefixes::default();
        let v6: u128 = "2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().into();
        t.insert(v6 & mask(32), 32, 7);
        t.insert(v6, 128, 8);
        assert_eq!(matches(&t, v6), [7, 8]);
        assert_eq!(matches(&t, v6 + 1), [7]);
        assert_eq!(matches(&t, !v6), Vec::<u32>::new());
    }
}
