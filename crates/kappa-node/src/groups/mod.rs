//! The group coordinator: Kafka's classic consumer-group protocol.
//!
//! Members join, the coordinator waits until every known member has
//! (re)joined or the rebalance timeout passes, bumps the generation and
//! names a leader; the leader computes the assignment (range, round-robin,
//! cooperative-sticky: all client-side) and hands it over in `SyncGroup`;
//! heartbeats tell members when a rebalance begins. Membership lives in
//! memory, as in Kafka a restarted coordinator makes members rejoin;
//! committed offsets live in the log (see `apis/offsets.rs`).

mod state;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::codes;
use crate::config::NodeConfig;
use crate::ticker::Ticker;
use state::{Group, Member};
pub(crate) use state::{GroupState, JoinOutcome, SyncOutcome};

/// How often session and rebalance deadlines are checked.
const TICK: Duration = Duration::from_millis(100);

/// What a member says when it joins.
pub(crate) struct JoinRequest {
    pub group: String,
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// Whether a new member must first be given an id (JoinGroup v4+).
    pub require_member_id: bool,
}

/// A group as `DescribeGroups` shows it.
pub(crate) struct GroupDescription {
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol: String,
    /// `(member id, client id, client host, metadata, assignment)`.
    pub members: Vec<(String, String, String, Bytes, Bytes)>,
}

/// Whether a group's members use its offsets (Kafka's OffsetDelete checks).
pub(crate) enum OffsetsInUse {
    /// No member has joined it since the node started.
    Unknown,
    /// Known, with no members.
    Empty,
    /// Members of a protocol other than `consumer`, whose use is unknown.
    NonEmpty,
    /// Consumers subscribed to these topics; `None` when a member's
    /// subscription could not be read, so every topic counts as in use.
    Subscribed(Option<std::collections::HashSet<String>>),
}

/// Every group's membership.
pub(crate) struct Coordinator {
    groups: Mutex<HashMap<String, Group>>,
    session_timeout_min: Duration,
    session_timeout_max: Duration,
    initial_delay: Duration,
    stopped: std::sync::atomic::AtomicBool,
}

impl Coordinator {
    pub(crate) fn start(config: &NodeConfig) -> Arc<Self> {
        let c = Arc::new(Self {
            groups: Mutex::new(HashMap::new()),
            session_timeout_min: config.group_session_timeout_min,
            session_timeout_max: config.group_session_timeout_max,
            initial_delay: config.group_initial_rebalance_delay,
            stopped: std::sync::atomic::AtomicBool::new(false),
        });
        tokio::spawn(expire(Arc::downgrade(&c)));
        c
    }

    pub(crate) fn stop(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        self.groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Joins a member; the answer comes when the rebalance completes.
    pub(crate) fn join(
        &self,
        req: JoinRequest,
    ) -> Result<oneshot::Receiver<JoinOutcome>, Box<JoinOutcome>> {
        let refuse = |code, member_id: &str| Err(Box::new(JoinOutcome::error(code, member_id)));
        if req.session_timeout < self.session_timeout_min
            || req.session_timeout > self.session_timeout_max
        {
            return refuse(codes::INVALID_SESSION_TIMEOUT, &req.member_id);
        }
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return refuse(codes::INCONSISTENT_GROUP_PROTOCOL, &req.member_id);
        }
        let mut groups = self.lock();
        let group = groups.entry(req.group.clone()).or_insert_with(Group::new);
        if !group.accepts(&req.protocol_type, &req.protocols) {
            return refuse(codes::INCONSISTENT_GROUP_PROTOCOL, &req.member_id);
        }
        let member_id = if req.member_id.is_empty() {
            let id = format!("{}-{}", req.client_id, uuid::Uuid::now_v7());
            if req.require_member_id {
                group.pending_ids.insert(id.clone());
                return refuse(codes::MEMBER_ID_REQUIRED, &id);
            }
            id
        } else if group.members.contains_key(&req.member_id)
            || group.pending_ids.remove(&req.member_id)
        {
            req.member_id
        } else {
            return refuse(codes::UNKNOWN_MEMBER_ID, &req.member_id);
        };
        let (tx, rx) = oneshot::channel();
        let now = Instant::now();
        let member = group
            .members
            .entry(member_id.clone())
            .or_insert_with(|| Member::new(&req.client_id, &req.client_host));
        member.session_timeout = req.session_timeout;
        member.rebalance_timeout = req.rebalance_timeout;
        member.protocols = req.protocols;
        member.last_heard = now;
        member.join_waiter = Some(tx);
        group.protocol_type = Some(req.protocol_type);
        if group.state != GroupState::PreparingRebalance {
            let delay = (group.state == GroupState::Empty).then_some(self.initial_delay);
            group.begin_rebalance(now, delay);
        }
        group.try_complete_join(now);
        Ok(rx)
    }

    /// Takes the leader's assignment, or waits for it.
    pub(crate) fn sync(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        assignments: Vec<(String, Bytes)>,
    ) -> Result<oneshot::Receiver<SyncOutcome>, SyncOutcome> {
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(group_id) else {
            return Err(SyncOutcome::error(codes::UNKNOWN_MEMBER_ID));
        };
        let Some(member) = group.members.get_mut(member_id) else {
            return Err(SyncOutcome::error(codes::UNKNOWN_MEMBER_ID));
        };
        member.last_heard = Instant::now();
        if generation != group.generation {
            return Err(SyncOutcome::error(codes::ILLEGAL_GENERATION));
        }
        match group.state {
            GroupState::Stable => Err(group.sync_outcome(member_id)),
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                member.sync_waiter = Some(tx);
                if group.leader.as_deref() == Some(member_id) {
                    group.complete_sync(assignments);
                }
                Ok(rx)
            }
            _ => Err(SyncOutcome::error(codes::REBALANCE_IN_PROGRESS)),
        }
    }

    pub(crate) fn heartbeat(&self, group_id: &str, generation: i32, member_id: &str) -> i16 {
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(group_id) else {
            return codes::UNKNOWN_MEMBER_ID;
        };
        let Some(member) = group.members.get_mut(member_id) else {
            return codes::UNKNOWN_MEMBER_ID;
        };
        member.last_heard = Instant::now();
        if generation != group.generation {
            return codes::ILLEGAL_GENERATION;
        }
        match group.state {
            GroupState::PreparingRebalance => codes::REBALANCE_IN_PROGRESS,
            _ => codes::NONE,
        }
    }

    /// Removes members; the answer per member.
    pub(crate) fn leave(&self, group_id: &str, member_ids: &[String]) -> Vec<i16> {
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(group_id) else {
            return vec![codes::UNKNOWN_MEMBER_ID; member_ids.len()];
        };
        let now = Instant::now();
        let codes: Vec<i16> = member_ids
            .iter()
            .map(|id| {
                if group.remove_member(id) {
                    codes::NONE
                } else {
                    codes::UNKNOWN_MEMBER_ID
                }
            })
            .collect();
        if codes.contains(&codes::NONE) {
            group.after_departure(now);
        }
        codes
    }

    /// Whether an offset commit from `member_id` in `generation` may land.
    pub(crate) fn check_commit(&self, group_id: &str, generation: i32, member_id: &str) -> i16 {
        let groups = self.lock();
        let Some(group) = groups.get(group_id) else {
            // A group nobody has joined: commits by tools and by consumers
            // that assign partitions themselves.
            return if generation < 0 {
                codes::NONE
            } else {
                codes::ILLEGAL_GENERATION
            };
        };
        if generation < 0 && group.members.is_empty() {
            return codes::NONE;
        }
        if group.state == GroupState::CompletingRebalance {
            return codes::REBALANCE_IN_PROGRESS;
        }
        if !group.members.contains_key(member_id) {
            return codes::UNKNOWN_MEMBER_ID;
        }
        if generation != group.generation {
            return codes::ILLEGAL_GENERATION;
        }
        codes::NONE
    }

    /// `(group, protocol type, state)` of every group.
    pub(crate) fn list(&self) -> Vec<(String, String, GroupState)> {
        let mut out: Vec<_> = self
            .lock()
            .iter()
            .map(|(name, g)| {
                (
                    name.clone(),
                    g.protocol_type.clone().unwrap_or_default(),
                    g.state,
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Every group's state, for the figures.
    pub(crate) fn count_by_state(&self) -> Vec<GroupState> {
        self.lock().values().map(|g| g.state).collect()
    }

    pub(crate) fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        self.lock().get(group_id).map(Group::describe)
    }

    /// Forgets a group with no members, so DeleteGroups may remove its
    /// offsets: `Ok(true)` if it was known here, `Err(NON_EMPTY_GROUP)` if
    /// members are in it.
    pub(crate) fn forget_if_empty(&self, group_id: &str) -> Result<bool, i16> {
        let mut groups = self.lock();
        match groups.get(group_id) {
            None => Ok(false),
            Some(g) if !g.members.is_empty() => Err(codes::NON_EMPTY_GROUP),
            Some(_) => {
                groups.remove(group_id);
                Ok(true)
            }
        }
    }

    /// What guards a group's offsets from OffsetDelete.
    pub(crate) fn offsets_in_use(&self, group_id: &str) -> OffsetsInUse {
        let groups = self.lock();
        let Some(g) = groups.get(group_id) else {
            return OffsetsInUse::Unknown;
        };
        if g.members.is_empty() {
            return OffsetsInUse::Empty;
        }
        if g.protocol_type.as_deref() != Some("consumer") {
            return OffsetsInUse::NonEmpty;
        }
        OffsetsInUse::Subscribed(g.subscribed_topics())
    }

    /// Ends sessions that went quiet and rebalances that ran out of time.
    fn expire_now(&self) {
        let now = Instant::now();
        for group in self.lock().values_mut() {
            group.expire(now);
        }
    }
}

async fn expire(coordinator: Weak<Coordinator>) {
    let mut ticker = Ticker::new(TICK, coordinator);
    while let Some(c) = ticker.tick().await {
        if c.stopped.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        c.expire_now();
    }
}
