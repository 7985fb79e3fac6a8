//! Test-only support shared by atoll's crates (a dev-dependency, never published):
//! - [`gate`]: whether a root test can run on this host; the one place that reads
//!   `ATOLL_TESTS_MUST_RUN`.
//! - [`probe`]: the path of the atoll-probe binary the escape tests copy into containers, and
//!   of the atoll-cdi helper the devices tests need beside atoll.
//! - [`fuzz`]: a seeded mutator that turns a corpus of real inputs into many broken ones.

pub mod fuzz;
pub mod gate;
pub mod probe;
