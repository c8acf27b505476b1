//! How the backend names its metadata keys and its own topics.

use kappa_log::TopicPartition;

use super::{METADATA_TOPIC, TASKS_TOPIC_PREFIX};

/// Metadata keys of group positions: `GROUPS_PREFIX group \0 topic \0 partition`.
pub(super) const GROUPS_PREFIX: &[u8] = b"kappa-log/groups/";
/// Metadata keys of the topic registry: `TOPICS_PREFIX topic`.
pub(super) const TOPICS_PREFIX: &[u8] = b"kappa-log/topics/";

/// The transactional id of a group's task: whoever holds the task uses it,
/// so claiming the task fences the instance that held it before.
pub(super) fn task_transactional_id(group: &str, task: u32) -> String {
    format!("kappa-{group}-{task}")
}

pub(super) fn topics_key(topic: &str) -> Vec<u8> {
    let mut k = TOPICS_PREFIX.to_vec();
    k.extend_from_slice(topic.as_bytes());
    k
}

pub(super) fn group_prefix(group: &str) -> Vec<u8> {
    let mut k = GROUPS_PREFIX.to_vec();
    k.extend_from_slice(group.as_bytes());
    k.push(0);
    k
}

pub(super) fn group_key(group: &str, tp: &TopicPartition) -> Vec<u8> {
    let mut k = group_prefix(group);
    k.extend_from_slice(tp.topic.as_bytes());
    k.push(0);
    k.extend_from_slice(&tp.partition.to_be_bytes());
    k
}

/// `group \0 topic \0 partition` back into its parts.
pub(super) fn parse_group_key(k: &[u8]) -> Option<(String, TopicPartition)> {
    let g = k.iter().position(|b| *b == 0)?;
    let rest = &k[g + 1..];
    let t = rest.iter().position(|b| *b == 0)?;
    let p: [u8; 4] = rest.get(t + 1..)?.try_into().ok()?;
    Some((
        String::from_utf8(k[..g].to_vec()).ok()?,
        TopicPartition::new(std::str::from_utf8(&rest[..t]).ok()?, u32::from_be_bytes(p)),
    ))
}

/// Topics that are the backend's own machinery, not the application's.
pub(super) fn is_internal(topic: &str) -> bool {
    topic.starts_with("__")
        || topic == METADATA_TOPIC
        || topic.starts_with("kappa-commits-")
        || topic.starts_with(TASKS_TOPIC_PREFIX)
        || topic.ends_with("-changelog")
}
