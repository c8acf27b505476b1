//! The free-space floor. A log that writes until the disk is full fails a
//! write half-way and must be poisoned (what reached the disk is unknown);
//! refusing writes *before* the disk is full keeps the log whole, and it
//! takes writes again by itself once space returns.
//!
//! Two levels: writes from outside (commands over HTTP, Kafka producers)
//! are refused at the floor ([`crate::Log::admit_writes`]); the log's own
//! commits go on down to half the floor, so the services can finish what
//! they already accepted.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crate::error::LogError;

/// How long one reading of the free space stands, in milliseconds: one
/// `statvfs` per interval, not per commit.
const READING_MS: u64 = 100;

/// Bytes an unprivileged process may still write on the file system
/// holding `path` (`statvfs`'s available blocks).
///
/// ```
/// assert!(kappa_log::free_bytes(&std::env::temp_dir())? > 0);
/// # Ok::<_, std::io::Error>(())
/// ```
///
/// # Errors
///
/// `path` does not exist or its file system cannot say.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let s = rustix::fs::statvfs(path)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// The free space of the file system holding a log, against its floor.
pub(crate) struct SpaceGuard {
    dir: PathBuf,
    floor: u64,
    started: Instant,
    /// Milliseconds after `started` of the last reading.
    read_at_ms: AtomicU64,
    free: AtomicU64,
    below: AtomicBool,
}

impl SpaceGuard {
    /// Watches the file system of `dir`; a `floor` of 0 turns the guard off.
    pub(crate) fn new(dir: PathBuf, floor: u64) -> Self {
        let guard = Self {
            dir,
            floor,
            started: Instant::now(),
            read_at_ms: AtomicU64::new(0),
            free: AtomicU64::new(u64::MAX),
            below: AtomicBool::new(false),
        };
        if floor > 0 {
            guard.read();
        }
        guard
    }

    /// Free bytes as last read (at most [`READING_MS`] old); `u64::MAX` when
    /// the file system cannot say.
    pub(crate) fn free(&self) -> u64 {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.read_at_ms.load(Ordering::Relaxed);
        // One caller reads; the others use the standing value meanwhile.
        if now.saturating_sub(last) >= READING_MS
            && self
                .read_at_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.read();
        }
        self.free.load(Ordering::Relaxed)
    }

    fn read(&self) {
        match free_bytes(&self.dir) {
            Ok(free) => {
                self.free.store(free, Ordering::Relaxed);
                self.note(free);
            }
            // Not knowing must not stop the log: the last reading stands.
            Err(e) => {
                tracing::debug!(dir = %self.dir.display(), error = %e, "reading the free space failed")
            }
        }
    }

    /// Logs crossing the floor, once each way, not once per refused write.
    fn note(&self, free: u64) {
        let below = free < self.floor;
        if self.below.swap(below, Ordering::Relaxed) == below {
            return;
        }
        if below {
            tracing::warn!(free, floor = self.floor, dir = %self.dir.display(), "free space is below the floor: refusing writes until space is freed");
        } else {
            tracing::info!(free, floor = self.floor, dir = %self.dir.display(), "free space is back above the floor: taking writes again");
        }
    }

    /// Writes from outside: refused below the floor.
    pub(crate) fn admit(&self) -> Result<(), LogError> {
        self.check(self.floor)
    }

    /// The log's own commits: refused below half the floor.
    pub(crate) fn admit_own(&self) -> Result<(), LogError> {
        self.check(self.floor / 2)
    }

    fn check(&self, floor: u64) -> Result<(), LogError> {
        if floor == 0 {
            return Ok(());
        }
        let free = self.free();
        if free < floor {
            Err(LogError::DiskFull { free, floor })
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_floor_above_the_free_space_refuses_and_zero_turns_it_off() {
        let dir = std::env::temp_dir();
        let free = SpaceGuard::new(dir.clone(), 1).free();
        assert!(free > 0 && free < u64::MAX, "statvfs read {free}");
        // Half again the free space: outside writes refused, the log's own
        // commits (down to half the floor) still taken.
        let floor = free + free / 2;
        let guard = SpaceGuard::new(dir.clone(), floor);
        assert!(matches!(guard.admit(), Err(LogError::DiskFull { floor: f, .. }) if f == floor));
        assert!(guard.admit_own().is_ok());
        let off = SpaceGuard::new(dir, 0);
        assert!(off.admit().is_ok() && off.admit_own().is_ok());
    }
}
