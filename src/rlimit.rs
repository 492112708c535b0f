//! The soft limit on open files, raised at start as far as the connection
//! limit needs.
//!
//! Every client connection is one descriptor, so the default soft limit of
//! 1024 (systemd's default too) would lock clients out long before
//! `--max-connections`. The soft limit may be raised up to the hard limit
//! without privileges.

use std::fmt;

/// Descriptors kept besides client connections: node listeners and their
/// connections, the data dir's files, stdio.
pub const RESERVED_DESCRIPTORS: u64 = 1024;

/// The soft limit could not be raised as far as wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Short {
    pub wanted: u64,
    pub got: u64,
}

impl fmt::Display for Short {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "warning: open files limited to {} (wanted {} for --max-connections); raise the \
             hard limit (ulimit -Hn, LimitNOFILE=) or lower --max-connections",
            self.got, self.wanted
        )
    }
}

/// Raises the soft open-files limit to serve `connections` client
/// connections; never lowers it.
pub fn raise_open_files(connections: usize) -> Result<(), Short> {
    // Saturating: `--max-connections` takes any count, even one no limit
    // reaches (the warning then says how far it got).
    let wanted = u64::try_from(connections)
        .unwrap_or(u64::MAX)
        .saturating_add(RESERVED_DESCRIPTORS);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass, nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(Short { wanted, got: 0 });
    }
    if limit.rlim_cur >= wanted {
        return Ok(());
    }
    let target = wanted.min(limit.rlim_max);
    let raised = libc::rlimit {
        rlim_cur: target,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit reads the struct we pass, nothing else.
    let got = if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        target
    } else {
        limit.rlim_cur
    };
    if got >= wanted {
        Ok(())
    } else {
        Err(Short { wanted, got })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_count_past_any_limit_is_reported_short_not_overflowed() {
        // No limit reaches u64::MAX descriptors; the soft limit may be
        // raised to the hard one meanwhile, which is harmless in a test.
        let result = raise_open_files(usize::MAX);
        assert!(
            matches!(
                result,
                Err(Short {
                    wanted: u64::MAX,
                    ..
                })
            ),
            "{result:?}"
        );
    }
}
