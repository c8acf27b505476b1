//! What the sink suites share: a fresh log to follow, and waiting for a
//! sink to reflect all of it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kappa_effects::SinkHandle;
use kappa_log::{EmbeddedLog, Log, TopicSpec};

/// An embedded log at `dir` holding one empty topic.
pub fn log_with_topic(dir: &Path, topic: &str, partitions: u32) -> Arc<dyn Log> {
    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir).unwrap());
    log.create_topic(&TopicSpec::new(topic, partitions))
        .unwrap();
    log
}

/// Waits until `sink` reflects its whole topic; a minute is far beyond any
/// run, so a timeout shows the sink's failure rather than slowness.
pub fn caught_up(sink: &SinkHandle) {
    assert!(
        sink.wait_caught_up(Duration::from_secs(60)).unwrap(),
        "{:?}",
        sink.failure()
    );
}
