//! Topic administration: create, grow, reconfigure, delete and list topics
//! on the cluster.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kappa_log::{CleanupPolicy, LogError, TopicConfig, TopicSpec};
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaResult, RDKafkaErrorCode};

use crate::client;
use crate::config::KafkaConfig;

/// Creates and deletes topics: the cluster's admin API, or a test
/// cluster's own way when it has none.
pub trait TopicAdmin: Send + Sync {
    /// Creates a topic with its partitions and configuration.
    ///
    /// # Errors
    ///
    /// [`LogError::TopicExists`], or the cluster refused.
    fn create(&self, spec: &TopicSpec) -> Result<(), LogError>;

    /// Deletes a topic.
    ///
    /// # Errors
    ///
    /// [`LogError::UnknownTopic`], or the cluster refused.
    fn delete(&self, name: &str) -> Result<(), LogError>;

    /// Grows a topic to `partitions` partitions, returning once every one
    /// of them has a leader.
    ///
    /// # Errors
    ///
    /// [`LogError::UnknownTopic`], [`LogError::InvalidConfig`] for a count
    /// the cluster refuses, or the cluster refused otherwise.
    fn create_partitions(&self, name: &str, partitions: u32) -> Result<(), LogError>;

    /// Replaces a topic's configuration with `config` (every property
    /// [`topic_configs`] names is set).
    ///
    /// # Errors
    ///
    /// [`LogError::UnknownTopic`], or the cluster refused.
    fn alter_config(&self, name: &str, config: &TopicConfig) -> Result<(), LogError>;
}

/// The cluster's admin API, used blocking.
pub(crate) struct Admin {
    admin: AdminClient<DefaultClientContext>,
    options: AdminOptions,
    replication_factor: i32,
    timeout: Duration,
}

/// How often a new topic's metadata is asked for until it is ready.
const READY_POLL: Duration = Duration::from_millis(20);

impl Admin {
    pub(crate) fn new(config: &KafkaConfig) -> Result<Self, LogError> {
        let admin = client::base(config)
            .create()
            .map_err(|e| client::broker("creating an admin client", &e))?;
        Ok(Self {
            admin,
            options: AdminOptions::new()
                .request_timeout(Some(config.timeout))
                .operation_timeout(Some(config.timeout)),
            replication_factor: config.replication_factor,
            timeout: config.timeout,
        })
    }

    /// Waits until the cluster's metadata shows every partition of a topic
    /// just created with a leader. Apache Kafka answers `CreateTopics` once
    /// the controller has the topic, before the broker serving it knows:
    /// reads and writes right after it failed with unknown topic or not
    /// leader (Kafka 4.1, one KRaft node).
    fn wait_until_ready(&self, name: &str, partitions: usize) -> Result<(), LogError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let ready = self
                .admin
                .inner()
                .fetch_metadata(Some(name), self.timeout)
                .is_ok_and(|md| {
                    md.topics().iter().any(|t| {
                        t.name() == name
                            && t.error().is_none()
                            && t.partitions().len() == partitions
                            && t.partitions()
                                .iter()
                                .all(|p| p.error().is_none() && p.leader() >= 0)
                    })
                });
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(LogError::Broker(format!(
                    "topic {name:?} was created but its partitions had no leader within {:?}",
                    self.timeout
                )));
            }
            std::thread::sleep(READY_POLL);
        }
    }

    /// Deletes a consumer group and its committed offsets from the cluster;
    /// a group the cluster does not know is already gone.
    ///
    /// # Errors
    ///
    /// [`LogError::InvalidConfig`] while the group has members (Kafka
    /// deletes only empty groups), or the cluster refused.
    pub(crate) fn delete_group(&self, group: &str) -> Result<(), LogError> {
        request(
            "deleting group",
            group,
            self.admin.delete_groups(&[group], &self.options),
            |code| match code {
                RDKafkaErrorCode::GroupIdNotFound => Some(Ok(())),
                RDKafkaErrorCode::NonEmptyGroup => Some(Err(LogError::InvalidConfig(format!(
                    "group {group:?} has members on the cluster; stop them before deleting its positions"
                )))),
                _ => None,
            },
        )
    }

    /// Every topic and its partition count, as the cluster's metadata says.
    pub(crate) fn partition_counts(
        &self,
        timeout: std::time::Duration,
    ) -> Result<BTreeMap<String, u32>, LogError> {
        let md = self
            .admin
            .inner()
            .fetch_metadata(None, timeout)
            .map_err(|e| client::broker("listing topics", &e))?;
        Ok(md
            .topics()
            .iter()
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .map(|t| {
                let n = u32::try_from(t.partitions().len()).unwrap_or(u32::MAX);
                (t.name().to_owned(), n)
            })
            .collect())
    }
}

impl TopicAdmin for Admin {
    fn create(&self, spec: &TopicSpec) -> Result<(), LogError> {
        let partitions = i32::try_from(spec.partitions).map_err(|_| {
            LogError::InvalidConfig(format!("{} partitions are too many", spec.partitions))
        })?;
        let configs = topic_configs(&spec.config);
        let mut topic = NewTopic::new(
            &spec.name,
            partitions,
            TopicReplication::Fixed(self.replication_factor),
        );
        for (k, v) in &configs {
            topic = topic.set(k, v);
        }
        request(
            "creating topic",
            &spec.name,
            self.admin.create_topics([&topic], &self.options),
            |code| match code {
                RDKafkaErrorCode::TopicAlreadyExists => {
                    Some(Err(LogError::TopicExists(spec.name.clone())))
                }
                _ => None,
            },
        )?;
        self.wait_until_ready(&spec.name, spec.partitions as usize)
    }

    fn delete(&self, name: &str) -> Result<(), LogError> {
        request(
            "deleting topic",
            name,
            self.admin.delete_topics(&[name], &self.options),
            |code| unknown_topic(code, name),
        )
    }

    fn create_partitions(&self, name: &str, partitions: u32) -> Result<(), LogError> {
        let count = partitions as usize;
        let grow = NewPartitions::new(name, count);
        request(
            "adding partitions to",
            name,
            self.admin.create_partitions([&grow], &self.options),
            |code| match code {
                RDKafkaErrorCode::InvalidPartitions => Some(Err(LogError::InvalidConfig(format!(
                    "the cluster refused {partitions} partitions for {name:?}"
                )))),
                _ => unknown_topic(code, name),
            },
        )?;
        self.wait_until_ready(name, count)
    }

    fn alter_config(&self, name: &str, config: &TopicConfig) -> Result<(), LogError> {
        let configs = topic_configs(config);
        let mut alter = AlterConfig::new(ResourceSpecifier::Topic(name));
        for (k, v) in &configs {
            alter = alter.set(k, v);
        }
        request(
            "altering the config of",
            name,
            self.admin.alter_configs([&alter], &self.options),
            |code| unknown_topic(code, name),
        )
    }
}

/// Runs one admin request about `subject` and checks the cluster's answer
/// for it: `expected` gives the outcome of the error codes the caller knows
/// what to make of (`None` for the rest, which are broker errors), so every
/// request reports a refusal the same way.
fn request<N>(
    doing: &str,
    subject: &str,
    request: impl Future<Output = KafkaResult<Vec<Result<N, (N, RDKafkaErrorCode)>>>>,
    expected: impl Fn(RDKafkaErrorCode) -> Option<Result<(), LogError>>,
) -> Result<(), LogError> {
    let results = futures_executor::block_on(request)
        .map_err(|e| client::broker(&format!("{doing} {subject:?}"), &e))?;
    for r in results {
        if let Err((_, code)) = r {
            expected(code)
                .unwrap_or_else(|| Err(LogError::Broker(format!("{doing} {subject:?}: {code}"))))?;
        }
    }
    Ok(())
}

/// The answer to a request about topic `name` that the cluster does not know.
fn unknown_topic(code: RDKafkaErrorCode, name: &str) -> Option<Result<(), LogError>> {
    (code == RDKafkaErrorCode::UnknownTopicOrPartition)
        .then(|| Err(LogError::UnknownTopic(name.to_owned())))
}

/// A topic's configuration as Kafka topic properties.
pub(crate) fn topic_configs(c: &TopicConfig) -> Vec<(&'static str, String)> {
    let mut out = vec![
        (
            "cleanup.policy",
            match c.cleanup_policy {
                CleanupPolicy::Compact => "compact",
                _ => "delete",
            }
            .to_owned(),
        ),
        ("max.message.bytes", c.max_record_bytes.to_string()),
        ("delete.retention.ms", c.delete_retention_ms.to_string()),
        ("retention.ms", c.retention_ms.unwrap_or(-1).to_string()),
    ];
    out.push((
        "retention.bytes",
        c.retention_bytes
            .map_or_else(|| "-1".to_owned(), |b| b.to_string()),
    ));
    out
}

/// Encodes a topic configuration for the backend's topic registry (the
/// same properties, one `name=value` per line), because some brokers
/// do not describe topic configurations.
pub(crate) fn encode_config(c: &TopicConfig) -> Vec<u8> {
    let mut s = String::new();
    for (k, v) in topic_configs(c) {
        s.push_str(k);
        s.push('=');
        s.push_str(&v);
        s.push('\n');
    }
    s.into_bytes()
}

/// Decodes [`encode_config`]; unknown or malformed lines keep defaults.
pub(crate) fn decode_config(bytes: &[u8]) -> TopicConfig {
    let mut c = TopicConfig::default();
    let text = String::from_utf8_lossy(bytes);
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k {
            "cleanup.policy" if v == "compact" => c.cleanup_policy = CleanupPolicy::Compact,
            "max.message.bytes" => {
                if let Ok(n) = v.parse() {
                    c.max_record_bytes = n;
                }
            }
            "delete.retention.ms" => {
                if let Ok(n) = v.parse() {
                    c.delete_retention_ms = n;
                }
            }
            "retention.ms" => c.retention_ms = v.parse().ok().filter(|n: &i64| *n >= 0),
            "retention.bytes" => c.retention_bytes = v.parse().ok(),
            _ => {}
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_configs_round_trip_through_the_registry_encoding() {
        let spec = TopicSpec::new("t", 3).compacted().with_retention_ms(60_000);
        let back = decode_config(&encode_config(&spec.config));
        assert_eq!(back, spec.config);
        let plain = TopicSpec::new("u", 1).with_retention_bytes(1 << 20);
        assert_eq!(decode_config(&encode_config(&plain.config)), plain.config);
    }
}
