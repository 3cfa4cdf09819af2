//! The proptest settings every property test shares: `PROPTEST_CASES` overrides the count, and
//! failures are reported with their minimal input, no files written into the tree.

use proptest::test_runner::{Config, FileFailurePersistence};

pub fn config(default_cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    }
}
