//! The one mutex helper the broker, the SDK and the CLI share.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, through poisoning: a task that panicked while holding it
/// left the data as consistent as any single statement leaves it (every
/// critical section here is a map or counter update), and refusing all
/// later work would turn one panic into a dead broker or client.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
