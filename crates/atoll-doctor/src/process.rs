//! Layer 1, process: is the tenant running; how did it end (exit status, OOM kill); has it hit
//! its pids limit; recent guard alerts.

use crate::report::{Layer, LayerReport};
use crate::subject::Subject;

pub fn check(subject: &Subject) -> LayerReport {
    let _ = subject;
    LayerReport::not_checked(Layer::Process, "not built yet")
}
