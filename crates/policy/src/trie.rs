//! A binary prefix trie from address blocks to rule indices.
//!
//! A lookup walks at most 32 (IPv4) or 128 (IPv6) nodes, whatever the number
//! of rules, and yields every rule whose block contains the address, which
//! is what lets [`Policy::decide`](crate::Policy::decide) stay fast at a
//! hundred thousand rules.

const NONE: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Node {
    children: [u32; 2],
    /// Index into `Trie::lists`, or `NONE`.
    rules: u32,
}

/// Rule indices keyed by left-aligned address prefixes.
#[derive(Clone)]
pub(crate) struct Trie {
    nodes: Vec<Node>,
    lists: Vec<Vec<u32>>,
}

impl Default for Trie {
    fn default() -> Self {
        Trie {
            nodes: vec![Node {
                children: [NONE; 2],
                rules: NONE,
            }],
            lists: Vec::new(),
        }
    }
}

fn bit(bits: u128, depth: u32) -> usize {
    ((bits >> (127 - depth)) & 1) as usize
}

impl Trie {
    /// Record `rule` under the first `len` bits of `bits`.
    pub(crate) fn insert(&mut self, bits: u128, len: u8, rule: u32) {
        let mut at = 0usize;
        for depth in 0..u32::from(len) {
            let b = bit(bits, depth);
            let next = self.nodes[at].children[b];
            at = if next == NONE {
                let new = self.nodes.len();
                self.nodes.push(Node {
                    children: [NONE; 2],
                    rules: NONE,
                });
                self.nodes[at].children[b] = new as u32;
                new
            } else {
                next as usize
            };
        }
        let list = self.nodes[at].rules;
        if list == NONE {
            self.nodes[at].rules = self.lists.len() as u32;
            self.lists.push(vec![rule]);
        } else {
            self.lists[list as usize].push(rule);
        }
    }

    /// Call `f` with every rule whose prefix covers the first `width` bits
    /// of `bits`, shortest prefix first, stopping early when `f` says so.
    pub(crate) fn for_each_match(
        &self,
        bits: u128,
        width: u8,
        mut f: impl FnMut(u32) -> std::ops::ControlFlow<()>,
    ) {
        let mut at = 0usize;
        let mut depth = 0u32;
        loop {
            let list = self.nodes[at].rules;
            if list != NONE {
                for &rule in &self.lists[list as usize] {
                    if f(rule).is_break() {
                        return;
                    }
                }
            }
            if depth == u32::from(width) {
                return;
            }
            let next = self.nodes[at].children[bit(bits, depth)];
            if next == NONE {
                return;
            }
            at = next as usize;
            depth += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ops::ControlFlow;

    fn matches(t: &Trie, bits: u128, width: u8) -> Vec<u32> {
        let mut out = Vec::new();
        t.for_each_match(bits, width, |r| {
            out.push(r);
            ControlFlow::Continue(())
        });
        out
    }

    #[test]
    fn yields_every_covering_prefix_shortest_first() {
        let mut t = Trie::default();
        let top = |x: u32| u128::from(x) << 96;
        t.insert(0, 0, 0); // 0.0.0.0/0
        t.insert(top(0x0a00_0000), 8, 1); // 10.0.0.0/8
        t.insert(top(0x0a01_0000), 16, 2); // 10.1.0.0/16
        t.insert(top(0x0a01_0203), 32, 3); // 10.1.2.3/32
        t.insert(top(0x0a01_0000), 16, 4); // a second rule on 10.1/16
        assert_eq!(matches(&t, top(0x0a01_0203), 32), [0, 1, 2, 4, 3]);
        assert_eq!(matches(&t, top(0x0a01_0204), 32), [0, 1, 2, 4]);
        assert_eq!(matches(&t, top(0x0b00_0000), 32), [0]);
    }
}
