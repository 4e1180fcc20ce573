//! The fuzz targets' checks: structured cases decoded from the fuzzer's bytes, each with the
//! properties the monitor promises at the guest boundary. The code is the monitor's own test
//! module (crates/mayfly-monitor/tests/boundary), shared with its proptests.

#[path = "../../crates/mayfly-monitor/tests/boundary/mod.rs"]
pub mod boundary;
