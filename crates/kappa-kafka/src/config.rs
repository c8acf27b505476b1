//! How to reach a Kafka cluster and where this instance keeps its local state.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use kappa_log::LogError;

/// Settings of a [`crate::KafkaLog`].
///
/// ```
/// use kappa_kafka::KafkaConfig;
/// let c = KafkaConfig::from_url(
///     "kafka://127.0.0.1:9092,127.0.0.1:9093?security.protocol=SASL_PLAINTEXT&sasl.mechanism=PLAIN",
///     "/tmp/kappa-state",
/// )?;
/// assert_eq!(c.bootstrap, "127.0.0.1:9092,127.0.0.1:9093");
/// assert_eq!(c.client["sasl.mechanism"], "PLAIN");
/// # Ok::<_, kappa_log::LogError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `host:port[,host:port...]`.
    pub bootstrap: String,
    /// Local directory for the metadata cache and its changelog checkpoints.
    /// One instance per directory.
    pub state_dir: PathBuf,
    /// This instance's name: it owns the commit topic `kappa-commits-<instance>`,
    /// whose last entries it redoes when it starts (see `docs/kafka.md`).
    pub instance: String,
    /// librdkafka properties passed to every client (security settings such
    /// as `security.protocol`, `sasl.mechanism`, `sasl.username`,
    /// `sasl.password`, `ssl.ca.location`).
    pub client: BTreeMap<String, String>,
    /// Replication factor of the topics this backend creates (-1: the broker's default).
    pub replication_factor: i32,
    /// How long one broker request may take before the operation fails.
    pub timeout: Duration,
    /// Work around tansu 0.6 (`kappa.compat=tansu-0.6`): it reports a
    /// partition's end as its last batch's first offset + 1, so ends are
    /// found by reading; and a fetch from inside a batch skips the rest of
    /// that batch, so reads start up to [`TANSU_REWIND`] records earlier and
    /// drop what comes before the asked offset.
    pub compat_tansu: bool,
    /// How task commits are made atomic (`kappa.commit`).
    pub commit: CommitProtocol,
}

/// How a task's commit (its outputs, changelog records and input
/// positions) is made atomic and fenced. See `docs/kafka.md`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CommitProtocol {
    /// The backend's choice: for now the write-ahead protocol on every
    /// broker. With librdkafka 2.12 a transaction costs 3 to 30 ms (its
    /// `AddPartitionsToTxn` is retried every 20 ms while the previous
    /// transaction's markers are written), against 1 to 2 ms for a
    /// write-ahead commit, and card-limits on Apache Kafka answered sync
    /// commands at p50 2.6 s instead of 29 ms (`docs/kafka.md`).
    #[default]
    Auto,
    /// One transactional producer per task (`transactional.id`
    /// `kappa-<group>-<task>`): claiming a task fences its last holder.
    Transactions,
    /// Each commit written ahead to the task's slot, then produced; for
    /// brokers without transactions.
    WriteAhead,
}

impl KafkaConfig {
    /// Whether task commits are Kafka transactions.
    pub fn transactional(&self) -> bool {
        match self.commit {
            CommitProtocol::Auto | CommitProtocol::WriteAhead => false,
            CommitProtocol::Transactions => true,
        }
    }
}

/// How far before the asked offset reads start on tansu 0.6: librdkafka's
/// largest batch (`batch.num.messages`), so the batch holding the offset is
/// fetched whole.
pub const TANSU_REWIND: u64 = 10_000;

/// Properties the backend sets itself; passing them would break its guarantees.
const RESERVED: &[&str] = &[
    "bootstrap.servers",
    "enable.idempotence",
    "acks",
    "group.id",
    "enable.auto.commit",
    "isolation.level",
    "partitioner",
    "transactional.id",
];

impl KafkaConfig {
    /// Settings for `bootstrap` with defaults: instance `"0"`, broker-default
    /// replication, 30 s requests.
    pub fn new(bootstrap: impl Into<String>, state_dir: impl Into<PathBuf>) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            state_dir: state_dir.into(),
            instance: "0".to_owned(),
            client: BTreeMap::new(),
            replication_factor: -1,
            timeout: Duration::from_secs(30),
            compat_tansu: false,
            commit: CommitProtocol::Auto,
        }
    }

    /// Parses `kafka://host:port[,host:port...][?property=value&...]`; the
    /// query sets librdkafka client properties (for example the security ones).
    ///
    /// # Errors
    ///
    /// [`LogError::InvalidConfig`] for another scheme, no broker, a malformed
    /// property, or a property the backend sets itself.
    pub fn from_url(url: &str, state_dir: impl Into<PathBuf>) -> Result<Self, LogError> {
        let rest = url.strip_prefix("kafka://").ok_or_else(|| {
            LogError::InvalidConfig(format!("{url:?} is not a kafka://host:port address"))
        })?;
        let (hosts, query) = rest.split_once('?').unwrap_or((rest, ""));
        let brokers: Vec<&str> = hosts.split(',').filter(|b| !b.is_empty()).collect();
        if brokers.is_empty() {
            return Err(LogError::InvalidConfig(format!(
                "{url:?} names no broker; expected kafka://host:port[,host:port...]"
            )));
        }
        for b in &brokers {
            let port_ok = b
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !port_ok {
                return Err(LogError::InvalidConfig(format!(
                    "broker {b:?} in {url:?} is not host:port"
                )));
            }
        }
        let mut config = Self::new(brokers.join(","), state_dir);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                LogError::InvalidConfig(format!("{pair:?} in {url:?} is not property=value"))
            })?;
            config.set(k, v)?;
        }
        Ok(config)
    }

    /// Sets a client property, or one of the backend's own (`kappa.instance`,
    /// `kappa.replication.factor`, `kappa.timeout.ms`, `kappa.compat`,
    /// `kappa.commit`).
    ///
    /// # Errors
    ///
    /// [`LogError::InvalidConfig`] for a property the backend sets itself or a bad value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<&mut Self, LogError> {
        let bad = |what: &str| LogError::InvalidConfig(format!("{key}={value:?}: {what}"));
        match key {
            "kappa.instance" => {
                if value.is_empty()
                    || kappa_log::validate_topic_name(&format!("kappa-commits-{value}")).is_err()
                {
                    return Err(bad("an instance name is letters, digits, '.', '_' or '-'"));
                }
                self.instance = value.to_owned();
            }
            "kappa.replication.factor" => {
                self.replication_factor = value.parse().map_err(|_| bad("not a number"))?;
            }
            "kappa.compat" => {
                self.compat_tansu = match value {
                    "tansu-0.6" => true,
                    "none" => false,
                    _ => return Err(bad("expected `none` or `tansu-0.6`")),
                };
            }
            "kappa.commit" => {
                self.commit = match value {
                    "auto" => CommitProtocol::Auto,
                    "transactions" => CommitProtocol::Transactions,
                    "write-ahead" => CommitProtocol::WriteAhead,
                    _ => return Err(bad("expected `auto`, `transactions` or `write-ahead`")),
                };
            }
            "kappa.timeout.ms" => {
                let ms: u64 = value.parse().map_err(|_| bad("not a number"))?;
                self.timeout = Duration::from_millis(ms.max(1));
            }
            k if RESERVED.contains(&k) => {
                return Err(bad(
                    "the Kafka backend sets this property itself to keep its guarantees",
                ));
            }
            k if k.is_empty() || k.contains(char::is_whitespace) => {
                return Err(bad("not a property name"));
            }
            k => {
                self.client.insert(k.to_owned(), value.to_owned());
            }
        }
        Ok(self)
    }

    /// Parses a `--log kafka://…` value as [`KafkaConfig::from_url`] does, keeping
    /// local state in `base/<instance>` (so instances sharing `base` never
    /// share a directory).
    ///
    /// # Errors
    ///
    /// As [`KafkaConfig::from_url`].
    pub fn from_location(url: &str, base: &std::path::Path) -> Result<Self, LogError> {
        let mut c = Self::from_url(url, base)?;
        c.state_dir = base.join(&c.instance);
        Ok(c)
    }

    /// The commit topic this instance writes ahead to.
    pub fn commit_topic(&self) -> String {
        format!("kappa-commits-{}", self.instance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_brokers_and_client_properties() {
        let c = KafkaConfig::from_url("kafka://a:1,b:2?sasl.username=u&kappa.instance=blue", "/s")
            .unwrap();
        assert_eq!(c.bootstrap, "a:1,b:2");
        assert_eq!(c.instance, "blue");
        assert_eq!(c.commit_topic(), "kappa-commits-blue");
        assert_eq!(c.client.get("sasl.username").map(String::as_str), Some("u"));
    }

    #[test]
    fn commits_are_transactions_when_asked_for() {
        let c = |url: &str| KafkaConfig::from_url(url, "/s").unwrap().transactional();
        assert!(!c("kafka://a:1"));
        assert!(!c("kafka://a:1?kappa.commit=auto"));
        assert!(!c("kafka://a:1?kappa.commit=write-ahead"));
        assert!(c("kafka://a:1?kappa.commit=transactions"));
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, says) in [
            ("http://a:1", "not a kafka://"),
            ("kafka://", "names no broker"),
            ("kafka://a", "not host:port"),
            ("kafka://a:x", "not host:port"),
            ("kafka://a:1?acks=0", "sets this property itself"),
            ("kafka://a:1?novalue", "not property=value"),
            ("kafka://a:1?kappa.instance=a/b", "instance name"),
            ("kafka://a:1?kappa.commit=sometimes", "expected `auto`"),
        ] {
            let e = KafkaConfig::from_url(url, "/s").unwrap_err().to_string();
            assert!(e.contains(says), "{url}: {e}");
        }
    }
}
