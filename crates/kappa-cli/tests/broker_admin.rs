//! Administration through the Kafka protocol, on `kappa broker` and on
//! Apache Kafka side by side: topics grow (CreatePartitions), topic configs
//! change (IncrementalAlterConfigs, AlterConfigs) and take effect, groups
//! and their offsets are deleted (DeleteGroups, OffsetDelete) under
//! Kafka's rules, groups are listed and described with their members'
//! assignments (ListGroups, DescribeGroups), topics are deleted and made
//! again (DeleteTopics), acks=0 producers are served, and the cluster is
//! described (DescribeCluster); a node makes topics clients name only when
//! told to. librdkafka sends what it can; the rest is sent with
//! kafka-protocol's encoder (`node::send_request`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

#[macro_use]
mod node;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::{
    ApiKey, GroupId, IncrementalAlterConfigsRequest, OffsetDeleteRequest, RequestKind,
    ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kappa_log::partition_for_key;
use node::{Cluster, runtime, send_request};
use rdkafka::ClientConfig;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, ResourceSpecifier,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

const WAIT: Duration = Duration::from_secs(30);

/// Sends `$request`, an `$api` request at `$version`, to the broker and
/// returns its answer, failing the test if the answer is of another API.
macro_rules! ask {
    ($broker:expr, $api:ident, $version:expr, $request:expr) => {{
        let answer = send_request(
            $broker.addr(),
            ApiKey::$api,
            $version,
            RequestKind::$api($request),
        );
        let ResponseKind::$api(r) = answer else {
            panic!(concat!("an ", stringify!($api), " answer"));
        };
        r
    }};
}

/// Kafka's error codes, as the raw responses carry them.
const NONE: i16 = 0;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_CONFIG: i16 = 40;
const GROUP_ID_NOT_FOUND: i16 = 69;
const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;

fn admin(broker: &dyn Cluster) -> AdminClient<DefaultClientContext> {
    broker.client().create().unwrap()
}

fn options() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(WAIT))
}

fn produce_keyed(broker: &dyn Cluster, topic: &str, keys: &[String]) {
    let rt = runtime();
    let producer: FutureProducer = broker
        .client()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .create()
        .unwrap();
    for key in keys {
        rt.block_on(producer.send(
            FutureRecord::to(topic).key(key).payload(key.as_bytes()),
            WAIT,
        ))
        .unwrap();
    }
}

/// Every record of a topic: key → partition.
fn partitions_of_keys(broker: &dyn Cluster, topic: &str, partitions: i32) -> BTreeMap<String, i32> {
    let consumer: BaseConsumer = broker
        .client()
        .set("group.id", "key-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut left = 0;
    for p in 0..partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, WAIT).unwrap();
        left += high - low;
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut seen = BTreeMap::new();
    let deadline = Instant::now() + WAIT;
    while left > 0 {
        assert!(Instant::now() < deadline, "read every record in time");
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
            assert!(
                seen.insert(key, m.partition()).is_none(),
                "each record once"
            );
            left -= 1;
        }
    }
    seen
}

fn a_topic_grows_and_keys_written_afterwards_follow_the_new_count(broker: &mut dyn Cluster) {
    let rt = runtime();
    broker.create_topic(&rt, "grown", 2);
    let before: Vec<String> = (0..20).map(|i| format!("before-{i}")).collect();
    produce_keyed(broker, "grown", &before);

    let admin = admin(broker);
    let code = |r: &rdkafka::admin::TopicResult| r.as_ref().err().map(|(_, c)| *c);
    let grown = rt
        .block_on(admin.create_partitions(&[NewPartitions::new("grown", 5)], &options()))
        .unwrap();
    assert_eq!(code(&grown[0]), None, "{grown:?}");
    for (count, why) in [(5, "as many as now"), (3, "fewer than now")] {
        let refused = rt
            .block_on(admin.create_partitions(&[NewPartitions::new("grown", count)], &options()))
            .unwrap();
        assert_eq!(
            code(&refused[0]),
            Some(RDKafkaErrorCode::InvalidPartitions),
            "{why}"
        );
    }
    let unknown = rt
        .block_on(admin.create_partitions(&[NewPartitions::new("no-such-topic", 3)], &options()))
        .unwrap();
    assert_eq!(
        code(&unknown[0]),
        Some(RDKafkaErrorCode::UnknownTopicOrPartition)
    );
    let one_replica: &[i32] = &[0];
    let too_few: &[&[i32]] = &[one_replica];
    let mismatched = rt
        .block_on(admin.create_partitions(
            &[NewPartitions::new("grown", 7).assign(too_few)],
            &options(),
        ))
        .unwrap();
    assert_eq!(
        code(&mismatched[0]),
        Some(RDKafkaErrorCode::InvalidReplicaAssignment),
        "two new partitions, one assignment"
    );

    broker.restart();
    let after: Vec<String> = (0..20).map(|i| format!("after-{i}")).collect();
    produce_keyed(broker, "grown", &after);
    let placed = partitions_of_keys(broker, "grown", 5);
    assert_eq!(placed.len(), 40, "{placed:?}");
    for (key, partition) in &placed {
        let count = if key.starts_with("before") { 2 } else { 5 };
        assert_eq!(
            *partition,
            partition_for_key(key.as_bytes(), count) as i32,
            "{key} on murmur2 % {count}"
        );
    }
}

fn incremental_alter(
    broker: &dyn Cluster,
    topic: &str,
    ops: &[(&str, i8, Option<&str>)],
    validate_only: bool,
) -> (i16, Option<String>) {
    let resource = AlterConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(StrBytes::from_string(topic.into()))
        .with_configs(
            ops.iter()
                .map(|(name, op, value)| {
                    AlterableConfig::default()
                        .with_name(StrBytes::from_string((*name).into()))
                        .with_config_operation(*op)
                        .with_value(value.map(|v| StrBytes::from_string(v.into())))
                })
                .collect(),
        );
    let request = IncrementalAlterConfigsRequest::default()
        .with_resources(vec![resource])
        .with_validate_only(validate_only);
    let r = ask!(broker, IncrementalAlterConfigs, 1, request);
    let answer = &r.responses[0];
    (
        answer.error_code,
        answer.error_message.as_ref().map(ToString::to_string),
    )
}

/// `(value, set on the topic itself)` of each config asked for.
fn described(broker: &dyn Cluster, topic: &str, keys: &[&str]) -> Vec<(Option<String>, bool)> {
    let rt = runtime();
    let configs = rt
        .block_on(admin(broker).describe_configs(&[ResourceSpecifier::Topic(topic)], &options()))
        .unwrap();
    let config = configs[0].as_ref().unwrap();
    keys.iter()
        .map(|key| {
            let entry = config
                .get(key)
                .unwrap_or_else(|| panic!("{key} is described"));
            (
                entry.value.clone(),
                matches!(entry.source, ConfigSource::DynamicTopic),
            )
        })
        .collect()
}

fn send_value(broker: &dyn Cluster, topic: &str, bytes: usize) -> Result<(), RDKafkaErrorCode> {
    let rt = runtime();
    let producer: FutureProducer = broker
        .client()
        .set("acks", "all")
        .set("message.send.max.retries", "0")
        .create()
        .unwrap();
    let value = vec![b'v'; bytes];
    match rt.block_on(producer.send(FutureRecord::<(), _>::to(topic).payload(&value), WAIT)) {
        Ok(_) => Ok(()),
        Err((KafkaError::MessageProduction(code), _)) => Err(code),
        Err((other, _)) => panic!("producing failed otherwise: {other}"),
    }
}

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;

fn altered_topic_configs_are_described_and_enforced(broker: &mut dyn Cluster) {
    let rt = runtime();
    broker.create_topic(&rt, "tuned", 1);
    assert_eq!(send_value(broker, "tuned", 5_000), Ok(()));

    let (code, message) = incremental_alter(
        broker,
        "tuned",
        &[
            ("retention.ms", SET, Some("3600000")),
            ("max.message.bytes", SET, Some("2000")),
        ],
        false,
    );
    assert_eq!(code, NONE, "{message:?}");
    assert_eq!(
        described(broker, "tuned", &["retention.ms", "max.message.bytes"]),
        [
            (Some("3600000".to_string()), true),
            (Some("2000".to_string()), true)
        ]
    );
    assert_eq!(
        send_value(broker, "tuned", 5_000),
        Err(RDKafkaErrorCode::MessageSizeTooLarge),
        "the new max.message.bytes applies at once"
    );
    assert_eq!(send_value(broker, "tuned", 100), Ok(()));

    // Refusals change nothing.
    for (ops, why) in [
        (
            vec![("retention.ms", SET, Some("soon"))],
            "a value that is not a number",
        ),
        (
            vec![("retention.ms", APPEND, Some("1"))],
            "APPEND to a config that is not a list",
        ),
        (
            vec![("no.such.config", SET, Some("1"))],
            "an unknown config",
        ),
    ] {
        let (code, message) = incremental_alter(broker, "tuned", &ops, false);
        assert_eq!(code, INVALID_CONFIG, "{why}: {message:?}");
    }
    // Validate-only accepts a valid change; a missing topic is named as such.
    for (topic, value, validate_only, expected) in [
        ("tuned", "7200000", true, NONE),
        ("no-such-topic", "1000", false, UNKNOWN_TOPIC_OR_PARTITION),
    ] {
        let ops = [("retention.ms", SET, Some(value))];
        let (code, _) = incremental_alter(broker, topic, &ops, validate_only);
        assert_eq!(code, expected, "{topic}, validate-only {validate_only}");
    }
    assert_eq!(
        described(broker, "tuned", &["retention.ms"]),
        [(Some("3600000".to_string()), true)],
        "refused and validate-only requests left it alone"
    );

    let (code, _) = incremental_alter(broker, "tuned", &[("retention.ms", DELETE, None)], false);
    assert_eq!(code, NONE);
    assert!(
        !described(broker, "tuned", &["retention.ms"])[0].1,
        "a deleted config is back to its default"
    );

    // The older AlterConfigs replaces the whole set: what is not given
    // goes back to its default.
    let replaced = rt
        .block_on(
            admin(broker).alter_configs(
                &[AlterConfig::new(ResourceSpecifier::Topic("tuned"))
                    .set("cleanup.policy", "compact")],
                &options(),
            ),
        )
        .unwrap();
    assert!(replaced[0].is_ok(), "{replaced:?}");
    let now = described(broker, "tuned", &["cleanup.policy", "max.message.bytes"]);
    assert_eq!(now[0], (Some("compact".to_string()), true));
    assert!(!now[1].1, "max.message.bytes is back to its default");
    assert_eq!(
        send_value(broker, "tuned", 5_000),
        Err(RDKafkaErrorCode::InvalidRecord),
        "a compacted topic refuses a record without a key"
    );
}

fn member(broker: &dyn Cluster, group: &str, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = broker
        .client()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + WAIT;
    while consumer.assignment().unwrap().count() == 0 {
        assert!(Instant::now() < deadline, "joined {group} in time");
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            m.unwrap();
        }
    }
    consumer
}

/// The committed offset of `group` on `topic`/0, or `None`.
fn committed(broker: &dyn Cluster, group: &str, topic: &str) -> Option<i64> {
    let consumer: BaseConsumer = broker.client().set("group.id", group).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let got = consumer.committed_offsets(tpl, WAIT).unwrap();
    match got.find_partition(topic, 0).unwrap().offset() {
        Offset::Offset(o) => Some(o),
        Offset::Invalid => None,
        other => panic!("committed offset {other:?}"),
    }
}

fn commit_at(consumer: &BaseConsumer, topic: &str, offset: i64) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(offset))
        .unwrap();
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
}

fn a_group_goes_with_its_offsets_once_its_members_have_left(broker: &mut dyn Cluster) {
    let rt = runtime();
    broker.create_topic(&rt, "work", 1);
    produce_keyed(broker, "work", &["a".into(), "b".into(), "c".into()]);
    let consumer = member(broker, "leaving", "work");
    commit_at(&consumer, "work", 3);
    assert_eq!(committed(broker, "leaving", "work"), Some(3));

    let admin = admin(broker);
    let code = |r: &rdkafka::admin::GroupResult| r.as_ref().err().map(|(_, c)| *c);
    let busy = rt
        .block_on(admin.delete_groups(&["leaving"], &options()))
        .unwrap();
    assert_eq!(code(&busy[0]), Some(RDKafkaErrorCode::NonEmptyGroup));
    assert_eq!(
        committed(broker, "leaving", "work"),
        Some(3),
        "kept while in use"
    );

    drop(consumer); // leaves the group
    let gone = rt
        .block_on(admin.delete_groups(&["leaving", "never-seen"], &options()))
        .unwrap();
    assert_eq!(code(&gone[0]), None, "{gone:?}");
    assert_eq!(
        code(&gone[1]),
        Some(RDKafkaErrorCode::GroupIdNotFound),
        "{gone:?}"
    );
    assert_eq!(committed(broker, "leaving", "work"), None);
    let again = rt
        .block_on(admin.delete_groups(&["leaving"], &options()))
        .unwrap();
    assert_eq!(code(&again[0]), Some(RDKafkaErrorCode::GroupIdNotFound));
}

/// Sends OffsetDelete for `topic`/0 of each topic: the group's error and
/// each partition's.
fn delete_offsets(broker: &dyn Cluster, group: &str, topics: &[&str]) -> (i16, Vec<i16>) {
    let request = OffsetDeleteRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.into())))
        .with_topics(
            topics
                .iter()
                .map(|t| {
                    OffsetDeleteRequestTopic::default()
                        .with_name(TopicName(StrBytes::from_string((*t).into())))
                        .with_partitions(vec![
                            OffsetDeleteRequestPartition::default().with_partition_index(0),
                        ])
                })
                .collect(),
        );
    let r = ask!(broker, OffsetDelete, 0, request);
    let mut by_topic: BTreeMap<String, i16> = r
        .topics
        .iter()
        .map(|t| (t.name.0.to_string(), t.partitions[0].error_code))
        .collect();
    (
        r.error_code,
        topics
            .iter()
            .map(|t| by_topic.remove(*t).unwrap_or(i16::MIN))
            .collect(),
    )
}

fn offsets_go_only_for_topics_the_group_does_not_consume(broker: &mut dyn Cluster) {
    let rt = runtime();
    broker.create_topic(&rt, "consumed", 1);
    broker.create_topic(&rt, "abandoned", 1);
    for topic in ["consumed", "abandoned"] {
        produce_keyed(broker, topic, &["x".into(), "y".into()]);
    }
    let consumer = member(broker, "picky", "consumed");
    commit_at(&consumer, "consumed", 2);
    commit_at(&consumer, "abandoned", 1);

    let (group, partitions) =
        delete_offsets(broker, "picky", &["consumed", "abandoned", "nowhere"]);
    assert_eq!(group, NONE);
    assert_eq!(
        partitions,
        [GROUP_SUBSCRIBED_TO_TOPIC, NONE, UNKNOWN_TOPIC_OR_PARTITION]
    );
    assert_eq!(committed(broker, "picky", "consumed"), Some(2));
    assert_eq!(committed(broker, "picky", "abandoned"), None);

    assert_eq!(
        delete_offsets(broker, "nobody", &["consumed"]).0,
        GROUP_ID_NOT_FOUND
    );

    drop(consumer);
    assert_eq!(
        delete_offsets(broker, "picky", &["consumed"]),
        (NONE, vec![NONE])
    );
    assert_eq!(committed(broker, "picky", "consumed"), None);
}

/// The topic partitions of a member's assignment as a consumer group
/// carries it (ConsumerProtocolAssignment): version, then each topic's
/// name and partitions; user data after that is not read.
fn assigned_partitions(bytes: &[u8]) -> Vec<(String, i32)> {
    fn take<const N: usize>(b: &mut &[u8]) -> [u8; N] {
        let (head, rest) = b.split_at(N);
        *b = rest;
        head.try_into().unwrap()
    }
    let mut b = bytes;
    let _version = i16::from_be_bytes(take(&mut b));
    let mut out = Vec::new();
    for _ in 0..i32::from_be_bytes(take(&mut b)) {
        let len = i16::from_be_bytes(take(&mut b)) as usize;
        let (name, rest) = b.split_at(len);
        b = rest;
        let name = String::from_utf8(name.to_vec()).unwrap();
        for _ in 0..i32::from_be_bytes(take(&mut b)) {
            out.push((name.clone(), i32::from_be_bytes(take(&mut b))));
        }
    }
    out
}

/// `group` as ListGroups and DescribeGroups show it: its state, protocol
/// type, protocol, and each member's client id and assigned partitions.
type Described = (String, String, String, Vec<(String, Vec<(String, i32)>)>);

fn describe_group(consumer: &BaseConsumer, group: &str) -> Described {
    let list = consumer.fetch_group_list(Some(group), WAIT).unwrap();
    let [g] = list.groups() else {
        panic!("one group named {group}: {} found", list.groups().len());
    };
    let mut members: Vec<(String, Vec<(String, i32)>)> = g
        .members()
        .iter()
        .map(|m| {
            let mut parts = assigned_partitions(m.assignment().unwrap_or_default());
            parts.sort();
            (m.client_id().to_owned(), parts)
        })
        .collect();
    members.sort();
    (
        g.state().to_owned(),
        g.protocol_type().to_owned(),
        g.protocol().to_owned(),
        members,
    )
}

/// Polls each of `members` until every one holds an assignment of its own.
fn settle(members: &[&BaseConsumer]) {
    let deadline = Instant::now() + WAIT;
    while members.iter().any(|c| c.assignment().unwrap().count() == 0) {
        assert!(Instant::now() < deadline, "every member assigned in time");
        for c in members {
            if let Some(m) = c.poll(Duration::from_millis(50)) {
                m.unwrap();
            }
        }
    }
}

fn groups_are_listed_and_described_with_their_members(broker: &mut dyn Cluster) {
    let rt = runtime();
    broker.create_topic(&rt, "shared", 2);
    let named = |id: &str| {
        let consumer: BaseConsumer = broker
            .client()
            .set("group.id", "pair")
            .set("client.id", id)
            .set("enable.auto.commit", "false")
            .set("partition.assignment.strategy", "range")
            .set("session.timeout.ms", "10000")
            .create()
            .unwrap();
        consumer.subscribe(&["shared"]).unwrap();
        consumer
    };
    let (first, second) = (named("first"), named("second"));
    settle(&[&first, &second]);
    // A rebalance may still be finishing: wait until both hold one partition each.
    let deadline = Instant::now() + WAIT;
    let described = loop {
        let d = describe_group(&first, "pair");
        if d.0 == "Stable" && d.3.iter().all(|(_, parts)| parts.len() == 1) {
            break d;
        }
        assert!(Instant::now() < deadline, "a stable group in time: {d:?}");
        for c in [&first, &second] {
            if let Some(m) = c.poll(Duration::from_millis(50)) {
                m.unwrap();
            }
        }
    };
    assert_eq!(described.1, "consumer");
    assert_eq!(described.2, "range");
    let clients: Vec<&str> = described.3.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(clients, ["first", "second"]);
    let mut all: Vec<(String, i32)> = described.3.iter().flat_map(|(_, p)| p.clone()).collect();
    all.sort();
    assert_eq!(all, [("shared".to_owned(), 0), ("shared".to_owned(), 1)]);

    let listed = first.fetch_group_list(None, WAIT).unwrap();
    assert!(
        listed.groups().iter().any(|g| g.name() == "pair"),
        "ListGroups names the group"
    );

    drop(second);
    drop(first);
    let observer: BaseConsumer = broker.client().create().unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let d = describe_group(&observer, "pair");
        if d.0 == "Empty" {
            assert!(d.3.is_empty(), "no members once both left: {d:?}");
            break;
        }
        assert!(Instant::now() < deadline, "an empty group in time: {d:?}");
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

/// The topic's partitions as Metadata shows them, or its error.
fn topic_metadata(broker: &dyn Cluster, topic: &str) -> Result<usize, RDKafkaErrorCode> {
    topic_metadata_as(&broker.client(), topic)
}

/// As [`topic_metadata`], asked by a consumer with the settings `client`.
fn topic_metadata_as(client: &ClientConfig, topic: &str) -> Result<usize, RDKafkaErrorCode> {
    let consumer: BaseConsumer = client.create().unwrap();
    let md = consumer.fetch_metadata(Some(topic), WAIT).unwrap();
    let t = &md.topics()[0];
    match t.error() {
        Some(e) => Err(e.into()),
        None => Ok(t.partitions().len()),
    }
}

fn a_deleted_topic_is_gone_and_its_name_can_be_used_again(broker: &mut dyn Cluster) {
    let rt = runtime();
    broker.create_topic(&rt, "doomed", 2);
    produce_keyed(broker, "doomed", &["a".into(), "b".into(), "c".into()]);
    let admin = admin(broker);
    let deleted = rt
        .block_on(admin.delete_topics(&["doomed", "never-made"], &options()))
        .unwrap();
    assert_eq!(deleted[0], Ok("doomed".to_owned()));
    assert_eq!(
        deleted[1],
        Err((
            "never-made".to_owned(),
            RDKafkaErrorCode::UnknownTopicOrPartition
        ))
    );
    // Apache Kafka finishes a deletion after answering it.
    let deadline = Instant::now() + WAIT;
    while topic_metadata(broker, "doomed") != Err(RDKafkaErrorCode::UnknownTopicOrPartition) {
        assert!(
            Instant::now() < deadline,
            "the topic gone from Metadata in time"
        );
        std::thread::park_timeout(Duration::from_millis(100));
    }
    // Made again, it starts empty with the partitions it is made with.
    let deadline = Instant::now() + WAIT;
    loop {
        let made = rt
            .block_on(admin.create_topics(
                &[rdkafka::admin::NewTopic::new(
                    "doomed",
                    1,
                    rdkafka::admin::TopicReplication::Fixed(1),
                )],
                &options(),
            ))
            .unwrap();
        match &made[0] {
            Ok(_) => break,
            // Kafka refuses the name while the old topic is still being removed.
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) if Instant::now() < deadline => {
                std::thread::park_timeout(Duration::from_millis(200));
            }
            Err(e) => panic!("making the topic again: {e:?}"),
        }
    }
    let deadline = Instant::now() + WAIT;
    while topic_metadata(broker, "doomed") != Ok(1) {
        assert!(
            Instant::now() < deadline,
            "the new topic in Metadata in time"
        );
        std::thread::park_timeout(Duration::from_millis(100));
    }
    // A new topic on Kafka answers once its leader is elected.
    let consumer: BaseConsumer = broker.client().create().unwrap();
    let deadline = Instant::now() + WAIT;
    let marks = loop {
        match consumer.fetch_watermarks("doomed", 0, WAIT) {
            Ok(marks) => break marks,
            Err(_) if Instant::now() < deadline => {
                std::thread::park_timeout(Duration::from_millis(200));
            }
            Err(e) => panic!("the new topic's offsets: {e}"),
        }
    };
    assert_eq!(marks, (0, 0), "the topic made again holds nothing");
}

fn records_sent_with_acks_zero_arrive_in_order(broker: &mut dyn Cluster) {
    let rt = runtime();
    broker.create_topic(&rt, "unacknowledged", 1);
    let producer: rdkafka::producer::BaseProducer = broker
        .client()
        .set("acks", "0")
        .set("enable.idempotence", "false")
        .create()
        .unwrap();
    for i in 0..100 {
        producer
            .send(
                rdkafka::producer::BaseRecord::<(), str>::to("unacknowledged")
                    .partition(0)
                    .payload(&format!("record-{i}")),
            )
            .unwrap();
    }
    rdkafka::producer::Producer::flush(&producer, WAIT).unwrap();
    let consumer: BaseConsumer = broker
        .client()
        .set("group.id", "acks-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("unacknowledged", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    while got.len() < 100 {
        assert!(
            Instant::now() < deadline,
            "{} of 100 records read in time",
            got.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            got.push((
                m.offset(),
                String::from_utf8(m.payload().unwrap().to_vec()).unwrap(),
            ));
        }
    }
    let expected: Vec<(i64, String)> = (0..100).map(|i| (i, format!("record-{i}"))).collect();
    assert_eq!(got, expected);
}

/// DescribeCluster as Python `confluent-kafka`'s admin client asks it: one
/// broker, the controller, at the address clients connect to.
fn the_cluster_is_described_as_one_node(broker: &mut dyn Cluster) {
    const SCRIPT: &str = r#"
import json, sys
from confluent_kafka.admin import AdminClient
admin = AdminClient({"bootstrap.servers": sys.argv[1], "broker.address.family": "v4"})
c = admin.describe_cluster(request_timeout=30).result(30)
print(json.dumps({"id": c.cluster_id, "controller": c.controller.id,
                  "nodes": [[n.id, n.host, n.port] for n in c.nodes]}))
"#;
    let out = std::process::Command::new(node::python())
        .args(["-c", SCRIPT, broker.addr()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let described: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (host, port) = broker.addr().rsplit_once(':').unwrap();
    let nodes = described["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{described}");
    assert_eq!(
        (nodes[0][1].as_str(), nodes[0][2].as_u64()),
        (Some(host), Some(port.parse().unwrap())),
        "{described}"
    );
    assert_eq!(described["controller"], nodes[0][0], "{described}");
    assert!(
        described["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{described}"
    );
}

/// A Kappa node makes a topic a client's metadata request names only when
/// started with `--auto-create-topics`, and only for a client that allows
/// it (Apache Kafka's `auto.create.topics.enable`, off by default here).
#[test]
fn a_node_makes_topics_clients_name_only_when_started_to() {
    let asking = |broker: &node::Broker, allowed: bool, topic: &str| {
        let mut client = broker.client();
        client.set("allow.auto.create.topics", allowed.to_string());
        topic_metadata_as(&client, topic)
    };
    let dir = tempfile::tempdir().unwrap();
    let off = node::Broker::start(dir.path());
    for _ in 0..2 {
        assert_eq!(
            asking(&off, true, "named"),
            Err(RDKafkaErrorCode::UnknownTopicOrPartition)
        );
    }
    drop(off);
    let dir = tempfile::tempdir().unwrap();
    let on = node::Broker::start_with(
        dir.path(),
        "127.0.0.1:0",
        &["--auto-create-topics", "--auto-create-partitions", "3"],
    );
    assert_eq!(
        asking(&on, false, "named"),
        Err(RDKafkaErrorCode::UnknownTopicOrPartition),
        "a client that does not allow it"
    );
    assert_eq!(asking(&on, true, "named"), Ok(3));
    assert_eq!(asking(&on, false, "named"), Ok(3), "made once, kept");
}

/// The offsets and values of the records a Fetch (v12) from `offset` of
/// partition 0 of `topic` returns under the byte limits given.
fn fetched(
    broker: &dyn Cluster,
    topic: &str,
    offset: i64,
    max_bytes: i32,
    partition_max_bytes: i32,
) -> Vec<(i64, String)> {
    use kafka_protocol::messages::FetchRequest;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    let request = FetchRequest::default()
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(partition_max_bytes),
                ]),
        ]);
    let r = ask!(broker, Fetch, 12, request);
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, NONE);
    let mut bytes = p.records.clone().unwrap_or_default();
    kafka_protocol::records::RecordBatchDecoder::decode_all(&mut bytes)
        .unwrap()
        .into_iter()
        .flat_map(|set| set.records)
        .map(|r| {
            let value = r.value.map(|v| String::from_utf8(v.to_vec()).unwrap());
            (r.offset, value.unwrap_or_default())
        })
        .collect()
}

/// A Fetch returns whole batches within the bytes it asks for, and at
/// least the first batch however small its limits (KIP-74).
fn fetches_return_whole_batches_within_their_byte_limits(broker: &mut dyn Cluster) {
    let rt = runtime();
    broker.create_topic(&rt, "limited", 1);
    let producer: FutureProducer = broker.client().set("linger.ms", "0").create().unwrap();
    let values: Vec<String> = ["a", "b", "c"].iter().map(|c| c.repeat(100)).collect();
    // One at a time: a batch each.
    for v in &values {
        rt.block_on(producer.send(FutureRecord::<(), _>::to("limited").payload(v), WAIT))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    let all: Vec<(i64, String)> = (0..).zip(values.iter().cloned()).collect();
    assert_eq!(fetched(broker, "limited", 0, 1 << 20, 1 << 20), all);
    assert_eq!(
        fetched(broker, "limited", 0, 1, 1 << 20),
        all[..1],
        "max_bytes 1"
    );
    assert_eq!(
        fetched(broker, "limited", 0, 1 << 20, 1),
        all[..1],
        "partition_max_bytes 1"
    );
    assert_eq!(fetched(broker, "limited", 1, 1, 1), all[1..2]);
    assert_eq!(fetched(broker, "limited", 3, 1 << 20, 1 << 20), []);
}

on_both!(
    fetches_return_whole_batches_within_their_byte_limits,
    the_cluster_is_described_as_one_node,
    a_topic_grows_and_keys_written_afterwards_follow_the_new_count,
    altered_topic_configs_are_described_and_enforced,
    a_group_goes_with_its_offsets_once_its_members_have_left,
    offsets_go_only_for_topics_the_group_does_not_consume,
    groups_are_listed_and_described_with_their_members,
    a_deleted_topic_is_gone_and_its_name_can_be_used_again,
    records_sent_with_acks_zero_arrive_in_order,
);
