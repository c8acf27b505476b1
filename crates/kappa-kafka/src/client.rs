//! Building librdkafka clients from a [`KafkaConfig`] and turning their errors into [`LogError`]s.

use kappa_log::LogError;
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::KafkaConfig;

/// Header naming the write-ahead entry a record was produced for:
/// `<instance>/<slot>/<sequence>/<index>`. Stripped when Kappa reads records.
pub(crate) const COMMIT_HEADER: &str = "kappa-commit";

/// Header on each record of a write-ahead entry that shares its
/// destination partition with others of the same entry: `<k>/<n>`, its
/// place among those `n` records. Kappa's reader delivers the `n`
/// together, so a commit's records in one partition become visible
/// together, as on the embedded log. Absent where `n` is 1 (and on
/// records written before it existed). Stripped when Kappa reads records.
pub(crate) const PART_HEADER: &str = "kappa-commit-part";

/// Whether a header is one the backend adds to what it writes.
pub(crate) fn is_backend_header(name: &[u8]) -> bool {
    name == COMMIT_HEADER.as_bytes() || name == PART_HEADER.as_bytes()
}

/// `record` without the headers the backend adds to what it writes.
pub(crate) fn without_backend_headers(mut record: kappa_log::Record) -> kappa_log::Record {
    record.headers.retain(|h| !is_backend_header(&h.name));
    record
}

/// The properties every client shares: brokers, timeouts, and the
/// operator's passthrough (security) settings.
pub(crate) fn base(config: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.bootstrap);
    let ms = config.timeout.as_millis().to_string();
    c.set("socket.timeout.ms", &ms);
    c.set("log_level", "4");
    for (k, v) in &config.client {
        c.set(k, v);
    }
    c
}

/// An idempotent producer's properties: acks from all replicas, no
/// duplicates or reordering on retry.
pub(crate) fn producer(config: &KafkaConfig) -> ClientConfig {
    let mut c = base(config);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("message.timeout.ms", config.timeout.as_millis().to_string())
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576");
    c
}

/// A reader's properties: it is assigned partitions explicitly (never joins
/// a group) and sees only committed records.
pub(crate) fn reader(config: &KafkaConfig) -> ClientConfig {
    let mut c = base(config);
    c.set("group.id", format!("kappa-reader-{}", config.instance))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "error")
        .set("fetch.wait.max.ms", "50")
        .set("allow.auto.create.topics", "false");
    c
}

/// The readers' context. A reader asks to be told when it reaches a
/// partition's end (`enable.partition.eof`), and librdkafka also reports
/// that as a global error event, which the default context logs at ERROR
/// for every partition, every time: thousands of lines a minute for a
/// service that follows the log. Reaching the end is no failure.
///
/// Public for other consumers that ask for ends, such as the benchmarks':
///
/// ```no_run
/// use rdkafka::consumer::BaseConsumer;
/// let consumer: BaseConsumer<kappa_kafka::ReaderContext> = rdkafka::ClientConfig::new()
///     .set("bootstrap.servers", "127.0.0.1:9092")
///     .set("enable.partition.eof", "true")
///     .create_with_context(kappa_kafka::ReaderContext)?;
/// # Ok::<_, rdkafka::error::KafkaError>(())
/// ```
pub struct ReaderContext;

impl ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        match error {
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF) => {}
            e => tracing::error!(error = %e, reason, "librdkafka"),
        }
    }
}

impl ConsumerContext for ReaderContext {}

/// Maps a client error to the log's error, naming what was being done.
pub(crate) fn broker(doing: &str, e: &KafkaError) -> LogError {
    LogError::Broker(format!("{doing}: {e}"))
}
