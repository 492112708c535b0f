//! Issue #14: counts are linearizable with batches as single operations.
//! The checker (tests/common/linearizability.rs) lives here, so its unit
//! tests run in this binary.

#[path = "common/linearizability.rs"]
mod linearizability;
