//! Resource limits for one guest instance.

use std::time::Duration;

/// The limits an operator sets. `Limits::default()` sets none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of linear memory, for each memory and for all of the
    /// instance's memories together.
    pub max_memory: Option<u64>,
    /// Wall-clock time for the whole run.
    pub timeout: Option<Duration>,
    /// Fuel units (roughly, wasm instructions) the guest may use.
    pub fuel: Option<u64>,
}

/// Enforces `max_memory` across all of an instance's memories: a growth that
/// would pass the limit is refused, which the guest sees as `memory.grow`
/// returning -1.
#[derive(Debug)]
pub struct MemoryLimiter {
    max: Option<u64>,
    used: u64,
    refused: Option<u64>,
}

impl MemoryLimiter {
    /// A limiter for `max` bytes in total (`None`: no limit).
    pub fn new(max: Option<u64>) -> Self {
        Self {
            max,
            used: 0,
            refused: None,
        }
    }

    /// The size of the first growth that was refused, if any.
    pub fn first_refusal(&self) -> Option<u64> {
        self.refused
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|m| desired > m) {
            return Ok(false);
        }
        let (current, desired) = (current as u64, desired as u64);
        let total = self.used - current.min(self.used) + desired;
        if let Some(max) = self.max
            && total > max
        {
            self.refused.get_or_insert(desired);
            return Ok(false);
        }
        self.used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|m| desired <= m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn limit_is_for_all_memories_together() {
        let mut l = MemoryLimiter::new(Some(100));
        assert!(l.memory_growing(0, 60, None).unwrap());
        // A second memory may not take the total past the limit...
        assert!(!l.memory_growing(0, 50, None).unwrap());
        assert_eq!(l.first_refusal(), Some(50));
        // ...but may use what is left.
        assert!(l.memory_growing(0, 40, None).unwrap());
        // The first memory growing from 60 to 61 now passes the total.
        assert!(!l.memory_growing(60, 61, None).unwrap());
        assert_eq!(l.first_refusal(), Some(50));
    }

    #[test]
    fn no_limit_still_respects_declared_maximum() {
        let mut l = MemoryLimiter::new(None);
        assert!(l.memory_growing(0, 1 << 40, None).unwrap());
        assert!(!l.memory_growing(0, 10, Some(5)).unwrap());
        assert_eq!(l.first_refusal(), None);
    }
}
