//! Position tokens: what a write returns and what a read reflects or waits for.
//!
//! A record's position is `topic/partition/offset`. A view reports, for each
//! input partition it has processed, the position of the last record it
//! processed there, comma-separated; `min_position` takes the same form, and
//! is reached once every listed record has been processed.
//!
//! Live streams resume from a cursor: the next offset to read in each
//! partition of each topic, as `topic@o0.o1.o2;topic2@…` (the `id` of every
//! server-sent event).

use kappa_log::{Position, TopicPartition};

/// Parses comma-separated positions.
///
/// # Errors
///
/// An element is not `topic/partition/offset`.
///
/// ```
/// let p = kappa_service::position::parse_positions("commands/0/7,events/1/3").unwrap();
/// assert_eq!(p.len(), 2);
/// assert!(kappa_service::position::parse_positions("commands/x").is_err());
/// ```
pub fn parse_positions(text: &str) -> Result<Vec<Position>, String> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse::<Position>()
                .map_err(|e| format!("{s:?} is not a position (topic/partition/offset): {e}"))
        })
        .collect()
}

/// The positions of the last records processed, from committed next offsets
/// (partitions where nothing was processed yet are left out).
pub fn processed_token(committed: &[(TopicPartition, u64)]) -> String {
    let mut out = String::new();
    for (tp, next) in committed {
        if *next == 0 {
            continue;
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(&format!("{}/{}/{}", tp.topic, tp.partition, next - 1));
    }
    out
}

/// The positions a read of `streams`' stores reflects: of one partition
/// (the task holding the key read), or of all when `partition` is `None`.
/// Read it before the store, so the value read is at least as new.
pub fn reflected(streams: &kappa_streams::Streams, partition: Option<u32>) -> String {
    let committed: Vec<(TopicPartition, u64)> = streams
        .committed_positions()
        .into_iter()
        .filter(|(tp, _)| partition.is_none_or(|p| tp.partition == p))
        .collect();
    processed_token(&committed)
}

/// Next offsets per partition of several topics: where a live stream resumes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor(pub Vec<(TopicPartition, u64)>);

impl Cursor {
    /// The cursor as text (`topic@o0.o1;topic2@o0`), partitions in order.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let mut current: Option<&str> = None;
        for (tp, next) in &self.0 {
            if current == Some(&*tp.topic) {
                out.push('.');
            } else {
                if current.is_some() {
                    out.push(';');
                }
                out.push_str(&tp.topic);
                out.push('@');
                current = Some(&tp.topic);
            }
            out.push_str(&next.to_string());
        }
        out
    }

    /// Parses a cursor for exactly `topics`, each with `partitions` partitions.
    ///
    /// # Errors
    ///
    /// Malformed, or naming other topics or partition counts.
    ///
    /// ```
    /// use kappa_service::position::Cursor;
    /// let c = Cursor::decode("events@3.0", &["events".into()], 2).unwrap();
    /// assert_eq!(c.encode(), "events@3.0");
    /// assert!(Cursor::decode("events@3", &["events".into()], 2).is_err());
    /// ```
    pub fn decode(text: &str, topics: &[String], partitions: u32) -> Result<Self, String> {
        let mut out = Vec::new();
        let parts: Vec<&str> = text.split(';').collect();
        if parts.len() != topics.len() {
            return Err(format!(
                "the cursor names {} topics, expected {} ({})",
                parts.len(),
                topics.len(),
                topics.join(", ")
            ));
        }
        for (part, topic) in parts.iter().zip(topics) {
            let (name, offsets) = part
                .split_once('@')
                .ok_or_else(|| format!("{part:?} is not topic@offsets"))?;
            if name != topic {
                return Err(format!(
                    "the cursor names topic {name:?}, expected {topic:?}"
                ));
            }
            let offsets: Vec<&str> = offsets.split('.').collect();
            if offsets.len() != partitions as usize {
                return Err(format!(
                    "the cursor has {} offsets for {topic}, which has {partitions} partitions",
                    offsets.len()
                ));
            }
            for (p, o) in (0..partitions).zip(offsets) {
                let o: u64 = o.parse().map_err(|_| format!("{o:?} is not an offset"))?;
                out.push((TopicPartition::new(topic.as_str(), p), o));
            }
        }
        Ok(Self(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processed_token_names_last_processed_records() {
        let t = processed_token(&[
            (TopicPartition::new("a", 0), 0),
            (TopicPartition::new("a", 1), 5),
            (TopicPartition::new("b", 1), 1),
        ]);
        assert_eq!(t, "a/1/4,b/1/0");
        assert_eq!(parse_positions(&t).unwrap()[0].offset, 4);
    }

    #[test]
    fn cursors_round_trip_over_several_topics() {
        let topics = vec!["e1".to_owned(), "e2".to_owned()];
        let c = Cursor(vec![
            (TopicPartition::new("e1", 0), 1),
            (TopicPartition::new("e1", 1), 2),
            (TopicPartition::new("e2", 0), 3),
            (TopicPartition::new("e2", 1), 4),
        ]);
        assert_eq!(c.encode(), "e1@1.2;e2@3.4");
        assert_eq!(Cursor::decode(&c.encode(), &topics, 2).unwrap(), c);
        for bad in [
            "",
            "e1@1.2",
            "e2@1.2;e1@3.4",
            "e1@1.x;e2@3.4",
            "e1@1.2;e2@3.4.5",
        ] {
            assert!(Cursor::decode(bad, &topics, 2).is_err(), "{bad}");
        }
    }
}
