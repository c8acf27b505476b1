//! The envelope every command and event travels in.
//!
//! Commands and events share one shape, so a chain of causes can be followed
//! by `parent` from any event back to the command that started it.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// A command or an event as stored on its topic.
///
/// ```
/// use kappa_service::Envelope;
/// let command = Envelope::command("set-limit", serde_json::json!({"limit": 500}), Some("card-1".into()));
/// let event = command.event("limit-set", serde_json::json!({"limit": 500}));
/// assert_eq!(event.parent, Some(command.id));
/// assert_eq!(event.key.as_deref(), Some("card-1"));
/// assert!(!command.reject("bad-limit", serde_json::json!({})).parent.is_none());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// A UUIDv7: unique, and ordered by creation time.
    pub id: Uuid,
    /// What is asked for (commands) or what happened (events), in kebab-case.
    pub action: String,
    /// The payload, validated against the action's schema for commands.
    #[serde(default)]
    pub data: Value,
    /// The entity the record is about; it is the record key, so one
    /// entity's records stay ordered in one partition.
    #[serde(default)]
    pub key: Option<String>,
    /// Milliseconds since the epoch when the record was made.
    pub timestamp: i64,
    /// The record that caused this one (an event's command), if any.
    #[serde(default)]
    pub parent: Option<Uuid>,
    /// Marks an outcome that rejects its command.
    #[serde(default)]
    pub error: bool,
    /// The client's `Idempotency-Key`, when the command was sent with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Who sent the command (the authenticated subject), when the gateway
    /// authenticates requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
}

impl Envelope {
    /// A new command with a fresh id and the current time.
    pub fn command(action: &str, data: Value, key: Option<String>) -> Self {
        Self {
            id: Uuid::now_v7(),
            action: action.to_owned(),
            data,
            key,
            timestamp: kappa_log::now_ms(),
            parent: None,
            error: false,
            idempotency_key: None,
            principal: None,
        }
    }

    /// An event caused by this record: same entity key, `parent` = this id.
    pub fn event(&self, action: &str, data: Value) -> Self {
        Self {
            id: Uuid::now_v7(),
            action: action.to_owned(),
            data,
            key: self.key.clone(),
            timestamp: kappa_log::now_ms(),
            parent: Some(self.id),
            error: false,
            idempotency_key: None,
            principal: None,
        }
    }

    /// An event that rejects this command (`error: true`).
    pub fn reject(&self, action: &str, data: Value) -> Self {
        Self {
            error: true,
            ..self.event(action, data)
        }
    }

    /// The record key: the entity key, else the id.
    pub fn record_key(&self) -> String {
        match &self.key {
            Some(k) => k.clone(),
            None => self.id.to_string(),
        }
    }
}

/// Whether `action` is a kebab-case name: lowercase ASCII letters and
/// digits in dash-separated words, starting with a letter, at most 64 bytes.
pub fn is_action_name(action: &str) -> bool {
    let b = action.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !action.ends_with('-')
        && !action.contains("--")
}

/// Longest entity key accepted, in characters (so at most 1 KiB as UTF-8).
/// Counted in characters, as JSON Schema's `maxLength` counts, so that a
/// published schema states the rule exactly.
pub const KEY_MAX_CHARS: usize = 256;

/// Why an entity key is refused, if it is.
pub fn key_problem(key: &str) -> Option<&'static str> {
    if key.is_empty() {
        Some("must not be empty")
    } else if key.chars().count() > KEY_MAX_CHARS {
        Some("must be at most 256 characters")
    } else if key.chars().any(char::is_control) {
        Some("must not contain control characters")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_are_kebab_case() {
        for ok in ["a", "set-limit", "v2-settle", "x1"] {
            assert!(is_action_name(ok), "{ok}");
        }
        for bad in [
            "",
            "Set",
            "set_limit",
            "-a",
            "a-",
            "a--b",
            "1a",
            "a b",
            &"a".repeat(65),
        ] {
            assert!(!is_action_name(bad), "{bad}");
        }
    }

    #[test]
    fn keys_are_counted_in_characters_as_json_schema_counts_them() {
        // 256 four-byte characters: 1 KiB, still one key.
        assert_eq!(key_problem(&"\u{1F4B3}".repeat(KEY_MAX_CHARS)), None);
        assert_eq!(key_problem(&"k".repeat(KEY_MAX_CHARS)), None);
        assert!(key_problem(&"k".repeat(KEY_MAX_CHARS + 1)).is_some());
        assert!(key_problem("").is_some());
        for control in ['\u{0}', '\n', '\u{7f}', '\u{9f}'] {
            assert!(
                key_problem(&format!("card{control}")).is_some(),
                "{control:?}"
            );
        }
        assert_eq!(key_problem("card-\u{a0}-é"), None);
    }

    #[test]
    fn ids_sort_by_creation_time_as_text() {
        let a = Envelope::command("a", Value::Null, None);
        let b = Envelope::command("a", Value::Null, None);
        assert!(a.id.to_string() < b.id.to_string());
    }

    #[test]
    fn round_trips_through_json_and_keeps_optional_fields_out() {
        let c = Envelope::command("a", serde_json::json!({"x": 1}), None);
        let text = serde_json::to_string(&c).unwrap();
        assert!(!text.contains("idempotency_key"));
        assert_eq!(serde_json::from_str::<Envelope>(&text).unwrap(), c);
        assert_eq!(c.record_key(), c.id.to_string());
    }
}
