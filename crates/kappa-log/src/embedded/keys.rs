//! Storage keys. Big-endian so byte order is numeric order, which keeps
//! each partition's batches contiguous and sorted by offset.

/// `topic_id | partition | base_offset` — key of a batch and of its index entry.
pub(crate) fn batch_key(topic_id: u64, partition: u32, base_offset: u64) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[0..8].copy_from_slice(&topic_id.to_be_bytes());
    k[8..12].copy_from_slice(&partition.to_be_bytes());
    k[12..20].copy_from_slice(&base_offset.to_be_bytes());
    k
}

/// `topic_id | partition` — prefix of a partition's batches, and key of its state.
pub(crate) fn partition_key(topic_id: u64, partition: u32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[0..8].copy_from_slice(&topic_id.to_be_bytes());
    k[8..12].copy_from_slice(&partition.to_be_bytes());
    k
}

/// `topic_id` — prefix of all of a topic's batches.
pub(crate) fn topic_prefix(topic_id: u64) -> [u8; 8] {
    topic_id.to_be_bytes()
}

/// The base offset in a batch key.
pub(crate) fn base_offset_of(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(12..20)?.try_into().ok()?))
}

/// `u16 len | group | u16 len | topic | u32 partition` — a group position.
pub(crate) fn group_key(group: &str, topic: &str, partition: u32) -> Vec<u8> {
    let mut k = group_prefix(group);
    k.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    k.extend_from_slice(topic.as_bytes());
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

/// Prefix of all of a group's positions.
pub(crate) fn group_prefix(group: &str) -> Vec<u8> {
    // Group names are at most 255 bytes and topic names 249, so u16 lengths fit.
    let mut k = Vec::with_capacity(2 + group.len() + 2 + 32 + 4);
    k.extend_from_slice(&(group.len() as u16).to_be_bytes());
    k.extend_from_slice(group.as_bytes());
    k
}

/// Splits a group key back into (group, topic, partition).
pub(crate) fn parse_group_key(k: &[u8]) -> Option<(&str, &str, u32)> {
    let glen = usize::from(u16::from_be_bytes(k.get(0..2)?.try_into().ok()?));
    let group = std::str::from_utf8(k.get(2..2 + glen)?).ok()?;
    let rest = k.get(2 + glen..)?;
    let tlen = usize::from(u16::from_be_bytes(rest.get(0..2)?.try_into().ok()?));
    let topic = std::str::from_utf8(rest.get(2..2 + tlen)?).ok()?;
    let p = rest.get(2 + tlen..)?;
    if p.len() != 4 {
        return None;
    }
    Some((group, topic, u32::from_be_bytes(p.try_into().ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_keys_sort_by_offset() {
        assert!(batch_key(1, 0, 255) < batch_key(1, 0, 256));
        assert!(batch_key(1, 0, u64::MAX) < batch_key(1, 1, 0));
        assert_eq!(base_offset_of(&batch_key(3, 4, 5)), Some(5));
    }

    #[test]
    fn group_keys_round_trip() {
        let k = group_key("g", "orders", 7);
        assert_eq!(parse_group_key(&k), Some(("g", "orders", 7)));
        assert!(k.starts_with(&group_prefix("g")));
        assert!(!k.starts_with(&group_prefix("g2")));
    }
}
