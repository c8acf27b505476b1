//! Who may do what: rules mapping principals (by subject or role) to the
//! command actions they may send, the views they may read, the streams
//! (command and event history, live updates) they may follow and the other
//! routes they may call, optionally only for entities named in a claim of
//! their token; and, for Kafka clients of a Kappa node, the topics, groups
//! and transactional ids they may use.
//!
//! ```
//! use kappa_auth::{Access, Policy, Principal};
//! let policy: Policy = serde_json::from_value(serde_json::json!({"rules": [
//!     {"roles": ["customer"], "commands": ["authorize"], "views": ["cards"],
//!      "routes": ["/cards/{key}", "/cards/{key}/**"], "keys_from_claim": "cards"},
//!     {"roles": ["operator"], "commands": ["*"], "views": ["*"], "streams": ["*"], "routes": ["/**"]}
//! ]}))?;
//! let alice = Principal::new("alice", &["customer"]).with_claim("cards", serde_json::json!(["card-1"]));
//! assert!(policy.allows(&alice, &Access::Command { action: "authorize", key: Some("card-1") }));
//! assert!(!policy.allows(&alice, &Access::Command { action: "authorize", key: Some("card-2") }));
//! assert!(policy.allows(&alice, &Access::Route { path: "/cards/card-1/balance" }));
//! assert!(!policy.allows(&alice, &Access::Route { path: "/cards/card-2" }));
//! assert!(!policy.allows(&alice, &Access::Stream { name: "events" }));
//! # Ok::<_, serde_json::Error>(())
//! ```

use serde::Deserialize;
use serde_json::Value;

use crate::token::Principal;

/// What a request asks to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access<'a> {
    /// Send a command with this action about this entity (`key`).
    Command {
        /// The action.
        action: &'a str,
        /// The entity key, if the command names one.
        key: Option<&'a str>,
    },
    /// Read a view: one key, or a scan (`None`).
    View {
        /// The store.
        store: &'a str,
        /// The key read; `None` for scans and listings.
        key: Option<&'a str>,
    },
    /// Follow or list a stream of records (`commands`, `events`).
    Stream {
        /// The stream.
        name: &'a str,
    },
    /// Any other route (an application's own, the API documents, metrics).
    Route {
        /// The request path as received (percent-encoded).
        path: &'a str,
    },
    /// A Kafka client's operation on a topic.
    Topic {
        /// The topic.
        name: &'a str,
        /// What it asks to do.
        operation: TopicOperation,
    },
    /// A Kafka client joining, committing to, describing or deleting a
    /// consumer group.
    Group {
        /// The group.
        name: &'a str,
    },
    /// A Kafka producer using a transactional id.
    TransactionalId {
        /// The id.
        id: &'a str,
    },
}

/// What a Kafka client asks to do with a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopicOperation {
    /// Fetch its records, commit offsets on it.
    Read,
    /// Produce to it.
    Write,
    /// Create, grow, reconfigure or delete it.
    Create,
    /// See it in metadata, its offsets and configs. Any other right on a
    /// topic includes this one.
    Describe,
}

/// The topics a rule opens to Kafka clients, by operation. Each list holds
/// names, `*` for all, or a prefix ending in `*` (`orders-*`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
// A rule lists only the operations it grants.
#[serde(default, deny_unknown_fields)]
pub struct TopicRights {
    /// Topics that may be read.
    pub read: Vec<String>,
    /// Topics that may be written.
    pub write: Vec<String>,
    /// Topics that may be created, grown, reconfigured and deleted.
    pub create: Vec<String>,
    /// Topics that may be described only.
    pub describe: Vec<String>,
}

/// One rule: whom it is for, and what it allows them.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
// A rule names only what it grants; whatever it leaves out is empty.
#[serde(default, deny_unknown_fields)]
pub struct Rule {
    /// Principals with any of these roles…
    pub roles: Vec<String>,
    /// …or with one of these subjects (both empty: every authenticated principal).
    pub subjects: Vec<String>,
    /// Command actions allowed (`*`: all).
    pub commands: Vec<String>,
    /// Views (stores) readable (`*`: all).
    pub views: Vec<String>,
    /// Streams followable: `commands`, `events` (`*`: all).
    pub streams: Vec<String>,
    /// Route patterns: `/`-separated segments where `*` matches one
    /// segment, `{key}` matches one and names the entity, and a final `**`
    /// matches the rest.
    pub routes: Vec<String>,
    /// When set, only entities named in this claim of the principal's token
    /// (a string or an array of strings): commands and view reads must name
    /// one of them as their key, routes must have one as their `{key}`.
    /// Scans, streams and routes without `{key}` are then not allowed.
    pub keys_from_claim: Option<String>,
    /// Kafka topics, by operation (for clients of a Kappa node).
    pub topics: TopicRights,
    /// Kafka consumer groups that may be used (names, `*`, `prefix*`).
    pub groups: Vec<String>,
    /// Kafka transactional ids that may be used (names, `*`, `prefix*`).
    pub transactional_ids: Vec<String>,
}

/// Rules; a request is allowed when any rule allows it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The rules, in any order.
    pub rules: Vec<Rule>,
}

impl Policy {
    /// Whether `principal` may do `access`.
    pub fn allows(&self, principal: &Principal, access: &Access<'_>) -> bool {
        self.rules.iter().any(|r| r.allows(principal, access))
    }
}

fn listed(list: &[String], name: &str) -> bool {
    list.iter().any(|x| x == "*" || x == name)
}

/// As [`listed`], and an entry ending in `*` matches names it begins.
fn listed_or_prefixed(list: &[String], name: &str) -> bool {
    list.iter().any(|x| match x.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => x == name,
    })
}

impl Rule {
    fn applies_to(&self, p: &Principal) -> bool {
        (self.roles.is_empty() && self.subjects.is_empty())
            || self.subjects.contains(&p.subject)
            || self.roles.iter().any(|r| p.roles.contains(r))
    }

    /// Whether the principal's claim names `key`.
    fn owns(&self, p: &Principal, key: Option<&str>) -> bool {
        let Some(claim) = &self.keys_from_claim else {
            return true;
        };
        let Some(key) = key else {
            return false;
        };
        match p.claims.get(claim) {
            Some(Value::String(s)) => s == key,
            Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(key)),
            _ => false,
        }
    }

    fn allows(&self, p: &Principal, access: &Access<'_>) -> bool {
        if !self.applies_to(p) {
            return false;
        }
        match *access {
            Access::Command { action, key } => listed(&self.commands, action) && self.owns(p, key),
            Access::View { store, key } => listed(&self.views, store) && self.owns(p, key),
            Access::Stream { name } => {
                listed(&self.streams, name) && self.keys_from_claim.is_none()
            }
            Access::Route { path } => self
                .routes
                .iter()
                .filter_map(|pattern| route_match(pattern, path))
                .any(|key| self.owns(p, key.as_deref())),
            // Kafka clients have no entity claims: a rule limited to the
            // entities of a claim opens nothing to them.
            _ if self.keys_from_claim.is_some() => false,
            Access::Topic { name, operation } => {
                let t = &self.topics;
                let on = |list: &[String]| listed_or_prefixed(list, name);
                match operation {
                    TopicOperation::Read => on(&t.read),
                    TopicOperation::Write => on(&t.write),
                    TopicOperation::Create => on(&t.create),
                    TopicOperation::Describe => {
                        on(&t.describe) || on(&t.read) || on(&t.write) || on(&t.create)
                    }
                }
            }
            Access::Group { name } => listed_or_prefixed(&self.groups, name),
            Access::TransactionalId { id } => listed_or_prefixed(&self.transactional_ids, id),
        }
    }
}

/// Whether the raw `path` matches `pattern`; if so, the `{key}` segment it
/// names, percent-decoded as the application's router will decode it.
fn route_match(pattern: &str, path: &str) -> Option<Option<String>> {
    let mut segments = path.trim_start_matches('/').split('/').map(decode_segment);
    let mut key = None;
    for want in pattern.trim_start_matches('/').split('/') {
        if want == "**" {
            return Some(key);
        }
        let got = segments.next()?;
        match want {
            "*" if !got.is_empty() => {}
            "{key}" if !got.is_empty() => key = Some(got),
            literal if literal == got => {}
            _ => return None,
        }
    }
    segments.next().is_none().then_some(key)
}

/// One path segment with its `%XX` escapes decoded (a bad escape is kept
/// as written, so it names no entity of a claim by accident).
pub fn decode_segment(segment: &str) -> String {
    let b = segment.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|c| hex(*c)),
                b.get(i + 2).and_then(|c| hex(*c)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| segment.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn route_patterns() {
        let key = |k: &str| Some(Some(k.to_owned()));
        assert_eq!(route_match("/cards/{key}", "/cards/c1"), key("c1"));
        assert_eq!(route_match("/cards/{key}", "/cards/c1/balance"), None);
        assert_eq!(
            route_match("/cards/{key}/**", "/cards/c1/balance"),
            key("c1")
        );
        assert_eq!(route_match("/cards/{key}", "/cards/c%2D1"), key("c-1"));
        // An escaped slash stays inside its segment, as the router keeps it.
        assert_eq!(
            route_match("/cards/{key}/**", "/cards/c1%2F..%2Fc2"),
            key("c1/../c2")
        );
        assert_eq!(decode_segment("a%zzb%4"), "a%zzb%4");
        assert_eq!(route_match("/cards/{key}", "/cards/"), None);
        assert_eq!(route_match("/docs", "/docs"), Some(None));
        assert_eq!(route_match("/**", "/anything/at/all"), Some(None));
        assert_eq!(route_match("/*/x", "/a/x"), Some(None));
        assert_eq!(route_match("/*/x", "//x"), None);
    }

    #[test]
    fn entity_rules_need_the_key_in_the_claim() {
        let rule = Rule {
            roles: vec!["customer".into()],
            commands: vec!["*".into()],
            views: vec!["cards".into()],
            streams: vec!["events".into()],
            keys_from_claim: Some("cards".into()),
            ..Rule::default()
        };
        let policy = Policy { rules: vec![rule] };
        let one = Principal::new("a", &["customer"]).with_claim("cards", json!("c1"));
        let none = Principal::new("b", &["customer"]);
        let other_role = Principal::new("c", &["guest"]).with_claim("cards", json!(["c1"]));
        let view = |key| Access::View {
            store: "cards",
            key,
        };
        assert!(policy.allows(&one, &view(Some("c1"))));
        assert!(!policy.allows(&one, &view(Some("c2"))));
        assert!(!policy.allows(&one, &view(None)), "no scans");
        assert!(
            !policy.allows(&one, &Access::Stream { name: "events" }),
            "no streams"
        );
        assert!(!policy.allows(&none, &view(Some("c1"))));
        assert!(!policy.allows(&other_role, &view(Some("c1"))));
        assert!(!policy.allows(
            &one,
            &Access::Command {
                action: "x",
                key: None
            }
        ));
    }

    #[test]
    fn kafka_rights_name_topics_groups_and_transactional_ids() {
        let policy: Policy = serde_json::from_value(json!({"rules": [
            {"roles": ["notifier"], "topics": {"read": ["events"], "write": ["notices-*"]},
             "groups": ["notifier"], "transactional_ids": ["notifier-*"]},
            {"roles": ["customer"], "topics": {"read": ["*"]}, "keys_from_claim": "cards"}
        ]}))
        .unwrap();
        let n = Principal::new("n", &["notifier"]);
        let topic = |name, operation| Access::Topic { name, operation };
        assert!(policy.allows(&n, &topic("events", TopicOperation::Read)));
        assert!(policy.allows(&n, &topic("events", TopicOperation::Describe)));
        assert!(!policy.allows(&n, &topic("events", TopicOperation::Write)));
        assert!(policy.allows(&n, &topic("notices-eu", TopicOperation::Write)));
        assert!(!policy.allows(&n, &topic("notices", TopicOperation::Write)));
        assert!(!policy.allows(&n, &topic("events", TopicOperation::Create)));
        assert!(!policy.allows(&n, &topic("commands", TopicOperation::Describe)));
        assert!(policy.allows(&n, &Access::Group { name: "notifier" }));
        assert!(!policy.allows(&n, &Access::Group { name: "notifier-2" }));
        assert!(policy.allows(&n, &Access::TransactionalId { id: "notifier-0" }));
        let c = Principal::new("c", &["customer"]).with_claim("cards", json!(["c1"]));
        assert!(
            !policy.allows(&c, &topic("events", TopicOperation::Read)),
            "a claim-limited rule opens nothing to Kafka clients"
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let bad: Result<Policy, _> = serde_json::from_value(json!({"rules": [{"role": ["x"]}]}));
        assert!(bad.is_err());
    }
}
