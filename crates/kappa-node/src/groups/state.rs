//! One group's state machine: Empty → PreparingRebalance →
//! CompletingRebalance → Stable, and back to PreparingRebalance whenever a
//! member joins, leaves or goes quiet.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use indexmap::IndexMap;
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::{Decodable, Message};
use tokio::sync::oneshot;

use super::GroupDescription;
use crate::codes;

/// Where a group is in its rebalance cycle (Kafka's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    pub(crate) const ALL: [Self; 4] = [
        Self::Empty,
        Self::PreparingRebalance,
        Self::CompletingRebalance,
        Self::Stable,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
        }
    }
}

/// The answer to a JoinGroup.
#[derive(Debug)]
pub(crate) struct JoinOutcome {
    pub error_code: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Every member and its metadata, for the leader only.
    pub members: Vec<(String, Bytes)>,
}

impl JoinOutcome {
    pub(crate) fn error(code: i16, member_id: &str) -> Self {
        Self {
            error_code: code,
            generation: -1,
            protocol_type: None,
            protocol: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

/// The answer to a SyncGroup.
#[derive(Debug)]
pub(crate) struct SyncOutcome {
    pub error_code: i16,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignment: Bytes,
}

impl SyncOutcome {
    pub(crate) fn error(code: i16) -> Self {
        Self {
            error_code: code,
            protocol_type: None,
            protocol: None,
            assignment: Bytes::new(),
        }
    }
}

pub(crate) struct Member {
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub last_heard: Instant,
    pub join_waiter: Option<oneshot::Sender<JoinOutcome>>,
    pub sync_waiter: Option<oneshot::Sender<SyncOutcome>>,
}

impl Member {
    pub(crate) fn new(client_id: &str, client_host: &str) -> Self {
        Self {
            client_id: client_id.to_string(),
            client_host: client_host.to_string(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(10),
            protocols: Vec::new(),
            assignment: Bytes::new(),
            last_heard: Instant::now(),
            join_waiter: None,
            sync_waiter: None,
        }
    }

    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

pub(crate) struct Group {
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// In join order; the first is the leader when one must be chosen.
    pub members: IndexMap<String, Member>,
    /// Ids handed out with MEMBER_ID_REQUIRED, not yet joined.
    pub pending_ids: HashSet<String>,
    rebalance_deadline: Option<Instant>,
    /// Before this, an empty group's first rebalance waits for more members.
    initial_delay_until: Option<Instant>,
}

impl Group {
    pub(crate) fn new() -> Self {
        Self {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: IndexMap::new(),
            pending_ids: HashSet::new(),
            rebalance_deadline: None,
            initial_delay_until: None,
        }
    }

    /// Whether a member with these protocols may join.
    pub(crate) fn accepts(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
    }

    pub(crate) fn begin_rebalance(&mut self, now: Instant, initial_delay: Option<Duration>) {
        // Members waiting for an assignment learn it will not come.
        for m in self.members.values_mut() {
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncOutcome::error(codes::REBALANCE_IN_PROGRESS));
            }
        }
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.state = GroupState::PreparingRebalance;
        self.rebalance_deadline = Some(now + timeout);
        self.initial_delay_until = initial_delay.filter(|d| !d.is_zero()).map(|d| now + d);
    }

    /// Completes the join phase when every member has rejoined.
    pub(crate) fn try_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        if self.initial_delay_until.is_some_and(|until| now < until) {
            return;
        }
        if self.members.values().all(|m| m.join_waiter.is_some()) {
            self.complete_join();
        }
    }

    fn complete_join(&mut self) {
        self.rebalance_deadline = None;
        self.initial_delay_until = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            return;
        }
        let leader = match &self.leader {
            Some(l) if self.members.contains_key(l) => l.clone(),
            _ => self.members.keys().next().cloned().unwrap_or_default(),
        };
        // The first of the leader's protocols that every member supports.
        let protocol = self.members.get(&leader).and_then(|l| {
            l.protocols
                .iter()
                .map(|(name, _)| name.clone())
                .find(|name| {
                    self.members
                        .values()
                        .all(|m| m.protocols.iter().any(|(n, _)| n == name))
                })
        });
        self.protocol = protocol.clone();
        self.leader = Some(leader.clone());
        self.state = GroupState::CompletingRebalance;
        let all: Vec<(String, Bytes)> = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.metadata(protocol.as_deref().unwrap_or(""))))
            .collect();
        for (id, m) in &mut self.members {
            m.assignment = Bytes::new();
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinOutcome {
                    error_code: codes::NONE,
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol: protocol.clone(),
                    leader: leader.clone(),
                    member_id: id.clone(),
                    members: if *id == leader {
                        all.clone()
                    } else {
                        Vec::new()
                    },
                });
            }
        }
    }

    /// Stores the leader's assignment and answers every waiting member.
    pub(crate) fn complete_sync(&mut self, assignments: Vec<(String, Bytes)>) {
        for (id, assignment) in assignments {
            if let Some(m) = self.members.get_mut(&id) {
                m.assignment = assignment;
            }
        }
        self.state = GroupState::Stable;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let outcome = self.sync_outcome(&id);
            if let Some(w) = self.members.get_mut(&id).and_then(|m| m.sync_waiter.take()) {
                let _ = w.send(outcome);
            }
        }
    }

    pub(crate) fn sync_outcome(&self, member_id: &str) -> SyncOutcome {
        SyncOutcome {
            error_code: codes::NONE,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            assignment: self
                .members
                .get(member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
        }
    }

    /// Removes a member, answering what it waits for; false if unknown.
    pub(crate) fn remove_member(&mut self, id: &str) -> bool {
        let Some(m) = self.members.shift_remove(id) else {
            return false;
        };
        if let Some(w) = m.join_waiter {
            let _ = w.send(JoinOutcome::error(codes::UNKNOWN_MEMBER_ID, id));
        }
        if let Some(w) = m.sync_waiter {
            let _ = w.send(SyncOutcome::error(codes::UNKNOWN_MEMBER_ID));
        }
        true
    }

    /// After members left or expired: rebalance the rest.
    pub(crate) fn after_departure(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance {
            self.begin_rebalance(now, None);
        }
        self.try_complete_join(now);
    }

    pub(crate) fn expire(&mut self, now: Instant) {
        let quiet: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.join_waiter.is_none() && m.sync_waiter.is_none())
            .filter(|(_, m)| now.duration_since(m.last_heard) > m.session_timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &quiet {
            tracing::info!(member = %id, "a group member's session expired");
            self.remove_member(id);
        }
        if self.state == GroupState::PreparingRebalance
            && self.rebalance_deadline.is_some_and(|d| now >= d)
        {
            // Members that did not rejoin in time are out.
            let late: Vec<String> = self
                .members
                .iter()
                .filter(|(_, m)| m.join_waiter.is_none())
                .map(|(id, _)| id.clone())
                .collect();
            for id in &late {
                self.remove_member(id);
            }
            self.initial_delay_until = None;
            self.complete_join();
        } else if !quiet.is_empty() {
            self.after_departure(now);
        } else {
            self.try_complete_join(now);
        }
    }

    /// The topics the members subscribe to, read from their metadata for
    /// the chosen protocol (Kafka's consumer protocol subscription); `None`
    /// if one cannot be read.
    pub(crate) fn subscribed_topics(&self) -> Option<HashSet<String>> {
        let protocol = self.protocol.as_deref()?;
        let mut topics = HashSet::new();
        for m in self.members.values() {
            let mut metadata = m.metadata(protocol);
            if metadata.len() < 2 {
                return None;
            }
            let version = metadata.get_i16();
            let version = version.clamp(0, ConsumerProtocolSubscription::VERSIONS.max);
            let subscription = ConsumerProtocolSubscription::decode(&mut metadata, version).ok()?;
            topics.extend(subscription.topics.iter().map(ToString::to_string));
        }
        Some(topics)
    }

    pub(crate) fn describe(&self) -> GroupDescription {
        let protocol = self.protocol.clone().unwrap_or_default();
        GroupDescription {
            state: self.state,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol: protocol.clone(),
            members: self
                .members
                .iter()
                .map(|(id, m)| {
                    (
                        id.clone(),
                        m.client_id.clone(),
                        m.client_host.clone(),
                        m.metadata(&protocol),
                        m.assignment.clone(),
                    )
                })
                .collect(),
        }
    }
}
