//! The crate's one way to take a lock: a holder that panicked leaves what
//! it guards usable (plain data, consistent between statements), so a
//! panic in one task never spreads to every later caller.

use std::sync::{Mutex, MutexGuard};

/// Lock `m`, poisoned or not.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
