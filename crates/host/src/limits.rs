//! Resource limits for one guest instance.
//!
//! Linear memories and tables are what a guest grows in host memory from
//! wasm code. [`MemoryLimiter`] counts both against one budget: the bytes of
//! all of an instance's memories plus [`TABLE_ELEMENT_BYTES`] per table
//! element, at most `max_memory`; and table elements on their own against
//! `max_table_elements`. A growth past either fails inside the guest
//! (`memory.grow` and `table.grow` return -1), as the wasm specification
//! allows. An instance also has at most [`MAX_INSTANCES`] core instances,
//! [`MAX_TABLES`] tables and [`MAX_MEMORIES`] memories.

use std::time::Duration;

/// Host bytes counted for one table element (a reference is a pointer).
pub const TABLE_ELEMENT_BYTES: u64 = 8;

/// The default for [`Limits::max_table_elements`]: 10 million elements
/// (80 MB), far above what real programs' function tables need.
pub const DEFAULT_MAX_TABLE_ELEMENTS: u64 = 10_000_000;

/// The default for [`Limits::max_module_size`]: 128 MiB.
pub const DEFAULT_MAX_MODULE_SIZE: u64 = 128 << 20;

/// The default for [`Limits::compile_timeout`]: two minutes.
pub const DEFAULT_COMPILE_TIMEOUT: Duration = Duration::from_secs(120);

/// The most core instances one guest instance may create (a component is
/// made of a few).
pub const MAX_INSTANCES: usize = 1000;

/// The most tables one guest instance may have.
pub const MAX_TABLES: usize = 1000;

/// The most linear memories one guest instance may have.
pub const MAX_MEMORIES: usize = 100;

/// The limits an operator sets. `Limits::default()` sets no memory, time or
/// fuel limit, and the default bounds on tables, program size and
/// compilation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of linear memory plus table elements (see the module docs),
    /// for the whole instance.
    pub max_memory: Option<u64>,
    /// Table elements, all of the instance's tables together.
    pub max_table_elements: u64,
    /// Wall-clock time for the whole run, from the start of the guest.
    pub timeout: Option<Duration>,
    /// Fuel units (roughly, wasm instructions) the guest may use.
    pub fuel: Option<u64>,
    /// The largest program file accepted (binary or text).
    pub max_module_size: u64,
    /// The longest compilation of one program may take (cache misses).
    pub compile_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_memory: None,
            max_table_elements: DEFAULT_MAX_TABLE_ELEMENTS,
            timeout: None,
            fuel: None,
            max_module_size: DEFAULT_MAX_MODULE_SIZE,
            compile_timeout: DEFAULT_COMPILE_TIMEOUT,
        }
    }
}

/// A growth the limiter refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedGrowth {
    /// A linear memory would have grown to this many bytes.
    Memory(u64),
    /// A table would have grown to this many elements.
    Table(u64),
}

/// Enforces the limits above across all of an instance's memories and
/// tables.
#[derive(Debug)]
pub struct MemoryLimiter {
    max_bytes: Option<u64>,
    max_elements: u64,
    memory: u64,
    elements: u64,
    refused: Option<RefusedGrowth>,
}

impl MemoryLimiter {
    /// A limiter for `limits`.
    pub fn new(limits: &Limits) -> Self {
        Self {
            max_bytes: limits.max_memory,
            max_elements: limits.max_table_elements,
            memory: 0,
            elements: 0,
            refused: None,
        }
    }

    /// The first growth that was refused, if any.
    pub fn first_refusal(&self) -> Option<RefusedGrowth> {
        self.refused
    }

    fn bytes(&self, memory: u64, elements: u64) -> u64 {
        memory.saturating_add(elements.saturating_mul(TABLE_ELEMENT_BYTES))
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
        let memory = self.memory - current.min(self.memory) + desired;
        if let Some(max) = self.max_bytes
            && self.bytes(memory, self.elements) > max
        {
            self.refused.get_or_insert(RefusedGrowth::Memory(desired));
            return Ok(false);
        }
        self.memory = memory;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|m| desired > m) {
            return Ok(false);
        }
        let (current, desired) = (current as u64, desired as u64);
        let elements = self.elements - current.min(self.elements) + desired;
        let over_bytes = self
            .max_bytes
            .is_some_and(|max| self.bytes(self.memory, elements) > max);
        if elements > self.max_elements || over_bytes {
            self.refused.get_or_insert(RefusedGrowth::Table(desired));
            return Ok(false);
        }
        self.elements = elements;
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// Raise the soft limit on open files to the hard one: a guest's sockets
/// and files are bounded by its resource table (see `warden_wasi`), and
/// Warden's own descriptors (the audit log, accepted connections) should
/// not be the first to run out.
pub(crate) fn raise_open_files_limit() {
    // SAFETY: getrlimit fills the struct it is given; setrlimit reads it.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    fn limiter(max_memory: Option<u64>, max_table_elements: u64) -> MemoryLimiter {
        MemoryLimiter::new(&Limits {
            max_memory,
            max_table_elements,
            ..Limits::default()
        })
    }

    #[test]
    fn limit_is_for_all_memories_together() {
        let mut l = limiter(Some(100), 1000);
        assert!(l.memory_growing(0, 60, None).unwrap());
        // A second memory may not take the total past the limit...
        assert!(!l.memory_growing(0, 50, None).unwrap());
        assert_eq!(l.first_refusal(), Some(RefusedGrowth::Memory(50)));
        // ...but may use what is left.
        assert!(l.memory_growing(0, 40, None).unwrap());
        // The first memory growing from 60 to 61 now passes the total.
        assert!(!l.memory_growing(60, 61, None).unwrap());
        assert_eq!(l.first_refusal(), Some(RefusedGrowth::Memory(50)));
    }

    #[test]
    fn tables_count_against_elements_and_bytes() {
        let mut l = limiter(Some(1000), 100);
        assert!(l.table_growing(0, 100, None).unwrap());
        assert!(!l.table_growing(0, 1, None).unwrap(), "over the elements");
        assert_eq!(l.first_refusal(), Some(RefusedGrowth::Table(1)));
        // 100 elements are 800 bytes: 200 bytes of memory are left.
        assert!(l.memory_growing(0, 200, None).unwrap());
        assert!(!l.memory_growing(200, 201, None).unwrap());
        // Without a memory limit, only the element count applies.
        let mut l = limiter(None, 1 << 20);
        assert!(l.table_growing(0, 1 << 20, None).unwrap());
        assert!(!l.table_growing(1 << 20, (1 << 20) + 1, None).unwrap());
    }

    #[test]
    fn no_limit_still_respects_declared_maximum() {
        let mut l = limiter(None, u64::MAX);
        assert!(l.memory_growing(0, 1 << 40, None).unwrap());
        assert!(!l.memory_growing(0, 10, Some(5)).unwrap());
        assert!(!l.table_growing(0, 10, Some(5)).unwrap());
        assert_eq!(l.first_refusal(), None);
    }
}
