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

/// Parses comma-separated positions, exactly as [`positions_pattern`]
/// describes them (the empty text is no position). An offset too large
/// for a `u64` is read as `u64::MAX`: a position no log reaches.
///
/// # Errors
///
/// An element is not `topic/partition/offset` with decimal digits.
///
/// ```
/// let p = kappa_service::position::parse_positions("commands/0/7,events/1/3").unwrap();
/// assert_eq!(p.len(), 2);
/// assert!(kappa_service::position::parse_positions("commands/x").is_err());
/// assert!(kappa_service::position::parse_positions("commands/0/+7").is_err());
/// assert!(kappa_service::position::parse_positions("").unwrap().is_empty());
/// ```
pub fn parse_positions(text: &str) -> Result<Vec<Position>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split(',').map(parse_position).collect()
}

fn parse_position(text: &str) -> Result<Position, String> {
    let bad =
        || format!("{text:?} is not a position (topic/partition/offset, for example orders/0/42)");
    let mut parts = text.rsplitn(3, '/');
    let (Some(offset), Some(partition), Some(topic)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if topic.is_empty() || !is_digits(partition) || !is_digits(offset) {
        return Err(bad());
    }
    Ok(Position {
        topic: topic.into(),
        partition: partition.parse().map_err(|_| bad())?,
        offset: offset.parse().unwrap_or(u64::MAX),
    })
}

fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// A regular expression (ECMA-262 and Python alike, for JSON Schema's
/// `pattern`) of `topic` as a literal: topic names hold only
/// `A-Z a-z 0-9 . _ -`, and of those only `.` means something to a regex.
fn literal(topic: &str) -> String {
    topic.replace('.', "[.]")
}

/// The JSON Schema `pattern` of a `min_position` a read of `topics` (each
/// with `partitions` partitions) takes: what [`parse_positions`] parses,
/// naming only those topics and partitions.
///
/// ```
/// let p = kappa_service::position::positions_pattern(&["commands"], 2);
/// assert_eq!(p, "^(?:(?:commands)/(?:0|1)/[0-9]+(?:,(?:commands)/(?:0|1)/[0-9]+)*)?$");
/// ```
pub fn positions_pattern(topics: &[&str], partitions: u32) -> String {
    if topics.is_empty() || partitions == 0 {
        return "^$".to_owned();
    }
    let topics: Vec<String> = topics.iter().map(|t| literal(t)).collect();
    let partitions: Vec<String> = (0..partitions).map(|p| p.to_string()).collect();
    let one = format!(
        "(?:{})/(?:{})/[0-9]+",
        topics.join("|"),
        partitions.join("|")
    );
    format!("^(?:{one}(?:,{one})*)?$")
}

/// The OpenAPI `min_position` query parameter of a read of `topics`
/// (each with `partitions` partitions), with its exact pattern.
///
/// ```
/// let p = kappa_service::position::min_position_parameter(&["commands"], 2);
/// assert_eq!(p["in"], "query");
/// ```
pub fn min_position_parameter(topics: &[&str], partitions: u32) -> serde_json::Value {
    serde_json::json!({"name": "min_position", "in": "query", "required": false,
        "description": "Comma-separated positions (topic/partition/offset) the answer must reflect first (read-your-writes).",
        "schema": {"type": "string", "pattern": positions_pattern(topics, partitions)}})
}

/// The JSON Schema `pattern` of a live stream's cursor over `topics` (in
/// this order, each with `partitions` partitions): what
/// [`Cursor::decode`] takes.
///
/// ```
/// let p = kappa_service::position::cursor_pattern(&["events"], 3);
/// assert_eq!(p, "^events@[0-9]+[.][0-9]+[.][0-9]+$");
/// ```
pub fn cursor_pattern(topics: &[&str], partitions: u32) -> String {
    let offsets = vec!["[0-9]+"; partitions as usize].join("[.]");
    let parts: Vec<String> = topics
        .iter()
        .map(|t| format!("{}@{offsets}", literal(t)))
        .collect();
    format!("^{}$", parts.join(";"))
}

/// Why `positions` (records, as `(partition, offset)`) name one nobody
/// wrote, if they do: an offset at or past the end of its partition. What
/// a client's own write returned, and what a cursor this service gave has
/// passed, is always below the end; so a `min_position` naming more is
/// answered at once instead of waiting out its `wait_ms` for a record
/// that may never come, and such a cursor is refused.
///
/// # Errors
///
/// The log cannot say where a partition ends.
pub fn not_written(
    log: &dyn kappa_log::Log,
    positions: &[(TopicPartition, u64)],
) -> Result<Option<String>, kappa_log::LogError> {
    for (tp, offset) in positions {
        let end = log.offsets(tp)?.end;
        if *offset >= end {
            return Ok(Some(format!(
                "nothing was written at {tp}/{offset}: the partition ends at offset {end}"
            )));
        }
    }
    Ok(None)
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
                if !is_digits(o) {
                    return Err(format!("{o:?} is not an offset"));
                }
                // Past every log: a stream that resumes there waits.
                let o: u64 = o.parse().unwrap_or(u64::MAX);
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
