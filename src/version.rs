//! Versions: the global order of writes, handed out by the coordinator.
//!
//! Each batch reserves a range of consecutive versions from one counter, item
//! `i` getting `first + i`, so a later item of a batch wins over an earlier
//! one, and a batch sent after another was answered wins over it. Nodes apply
//! last-writer-wins on versions, so they all agree whatever order writes
//! reach them in. No wall clock is involved.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// A write's place in the global order; higher wins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(u64);

impl Version {
    /// Before every write.
    pub const ZERO: Version = Version(0);
    /// The highest version ever handed out. Versions from 2^63 up are
    /// never produced, so a data dir holding one is damaged, and sums of
    /// versions and batch sizes cannot wrap.
    pub const MAX: Version = Version(i64::MAX as u64);

    pub const fn new(raw: u64) -> Version {
        Version(raw)
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    /// `self + n`, if it stays at or below [`Version::MAX`].
    pub fn checked_add(self, n: u64) -> Option<Version> {
        self.0
            .checked_add(n)
            .map(Version)
            .filter(|v| *v <= Version::MAX)
    }

    /// The version just before this one (`ZERO` stays `ZERO`).
    pub fn previous(self) -> Version {
        Version(self.0.saturating_sub(1))
    }

    /// Whether a version read from disk or a frame can be one we produced.
    pub fn is_valid(self) -> bool {
        self <= Version::MAX
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The versions of one batch: `first`, `first + 1`, ... (`len` of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    pub first: Version,
    pub len: u64,
}

impl Versions {
    /// The last version of the range, or the one before `first` if it is empty.
    pub fn last(&self) -> Version {
        Version(self.first.0 + self.len).previous()
    }

    /// The version of item `index` of the batch.
    pub fn nth(&self, index: usize) -> Version {
        Version(self.first.0 + index as u64)
    }
}

/// Every version up to [`Version::MAX`] was handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted;

impl fmt::Display for Exhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the version counter reached its maximum ({}); no new write can be ordered",
            Version::MAX
        )
    }
}

impl std::error::Error for Exhausted {}

/// The coordinator's one counter.
pub struct VersionClock {
    /// The next version to hand out.
    next: AtomicU64,
}

impl VersionClock {
    /// A clock whose first range starts after `last` (the highest version
    /// recovered from disk, or [`Version::ZERO`]).
    pub fn after(last: Version) -> VersionClock {
        VersionClock {
            next: AtomicU64::new(last.0.saturating_add(1)),
        }
    }

    /// Reserves `len` consecutive versions.
    pub fn reserve(&self, len: u64) -> Result<Versions, Exhausted> {
        let first = self
            .next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |next| {
                let end = next.checked_add(len)?;
                // `end` is one past the last version handed out.
                (end - 1 <= Version::MAX.0 || len == 0).then_some(end)
            })
            .map_err(|_| Exhausted)?;
        Ok(Versions {
            first: Version(first),
            len,
        })
    }

    /// The highest version handed out so far.
    pub fn last(&self) -> Version {
        Version(self.next.load(Ordering::SeqCst)).previous()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_consecutive_and_start_after_the_recovered_version() {
        let clock = VersionClock::after(Version::new(41));
        let a = clock.reserve(3).unwrap();
        let b = clock.reserve(2).unwrap();
        assert_eq!((a.first, a.last()), (Version::new(42), Version::new(44)));
        assert_eq!(b.first, Version::new(45));
        assert_eq!(b.nth(1), Version::new(46));
        assert_eq!(clock.last(), Version::new(46));
        let empty = clock.reserve(0).unwrap();
        assert_eq!(empty.last(), Version::new(46));
    }

    #[test]
    fn the_counter_never_wraps() {
        let clock = VersionClock::after(Version::new(Version::MAX.get() - 2));
        assert_eq!(clock.reserve(2).unwrap().last(), Version::MAX);
        assert_eq!(clock.reserve(1), Err(Exhausted));
        assert_eq!(clock.reserve(u64::MAX), Err(Exhausted));
        assert_eq!(
            Version::MAX.checked_add(1),
            None,
            "past MAX is never a version"
        );
        assert!(!Version::new(1 << 63).is_valid());
    }
}
