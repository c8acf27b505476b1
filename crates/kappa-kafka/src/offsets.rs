//! Kappa's group positions mirrored to Kafka consumer-group offsets, so
//! that Kafka's own tools (`kafka-consumer-groups`, a Kafka UI, an admin
//! client) show an application's positions and lag.
//!
//! The positions themselves stay Kappa metadata, committed atomically with
//! the outputs they account for (`docs/kafka.md`); the group offsets are a
//! copy. After a commit lands its positions are handed to a background
//! thread, which coalesces them (only the newest position of each partition
//! is sent) and commits them at most every [`INTERVAL`]. A commit never
//! waits for the copy, and a failed copy is retried with the next round.
//!
//! A group this instance is a member of (a topology's task group) is
//! committed through its member's consumer, so the broker checks the
//! member's generation and refuses the copy from an evicted member. Other
//! groups (effect runners, plain consumers), and a task group once its
//! member has left, are committed as a consumer outside any membership,
//! which Kafka accepts only while the group has no members.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kappa_log::TopicPartition;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::client;
use crate::config::KafkaConfig;
use crate::group::GroupContext;

/// Shortest time between two rounds of group-offset commits.
const INTERVAL: Duration = Duration::from_millis(100);
/// Longest time between rounds while commits keep failing.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long closing the log waits for the last round.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// The background copy of group positions into Kafka's group offsets.
pub(crate) struct OffsetMirror {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    /// Positions not yet copied, by group.
    pending: HashMap<String, HashMap<TopicPartition, u64>>,
    /// Consumers of the groups this instance is a member of.
    members: HashMap<String, Weak<BaseConsumer<GroupContext>>>,
    closing: bool,
    closed: bool,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl OffsetMirror {
    pub(crate) fn start(config: &KafkaConfig) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let inner = shared.clone();
        let config = config.clone();
        let thread = std::thread::Builder::new()
            .name("kappa-group-offsets".to_owned())
            .spawn(move || run(&inner, &config))
            .map_err(|e| tracing::error!(error = %e, "group offsets will not be mirrored to Kafka"))
            .ok();
        Self { shared, thread }
    }

    /// Copies `positions` (group, partition, next offset to read) to Kafka.
    pub(crate) fn mirror(
        &self,
        positions: impl IntoIterator<Item = (String, TopicPartition, u64)>,
    ) {
        // Most commits (commands, outcomes) carry no positions: they take no lock.
        let mut positions = positions.into_iter().peekable();
        if positions.peek().is_none() {
            return;
        }
        let mut state = lock(&self.shared.state);
        for (group, tp, offset) in positions {
            state.pending.entry(group).or_default().insert(tp, offset);
        }
        self.shared.wake.notify_one();
    }

    /// Drops the copies not sent yet of `group`'s positions: of
    /// `partitions`, or all of them (positions deleted meanwhile).
    pub(crate) fn forget(&self, group: &str, partitions: Option<&[TopicPartition]>) {
        let mut state = lock(&self.shared.state);
        match partitions {
            None => {
                state.pending.remove(group);
            }
            Some(doomed) => {
                if let Some(pending) = state.pending.get_mut(group) {
                    pending.retain(|tp, _| !doomed.contains(tp));
                }
            }
        }
    }

    /// Commits `group`'s offsets through `consumer` (a member of the
    /// group) for as long as it lives.
    pub(crate) fn member(&self, group: &str, consumer: &Arc<BaseConsumer<GroupContext>>) {
        lock(&self.shared.state)
            .members
            .insert(group.to_owned(), Arc::downgrade(consumer));
    }
}

impl Drop for OffsetMirror {
    /// Copies what is pending, waiting at most [`CLOSE_WAIT`] (an
    /// unreachable broker must not hold up closing the log).
    fn drop(&mut self) {
        if self.thread.is_none() {
            return;
        }
        let mut state = lock(&self.shared.state);
        state.closing = true;
        self.shared.wake.notify_all();
        let deadline = Instant::now() + CLOSE_WAIT;
        while !state.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!("closing before the last group offsets were mirrored to Kafka");
                return;
            }
            state = self
                .shared
                .wake
                .wait_timeout(state, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        drop(state);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(shared: &Shared, config: &KafkaConfig) {
    let mut outsiders: HashMap<String, BaseConsumer> = HashMap::new();
    let mut pause = INTERVAL;
    let mut warned: HashSet<String> = HashSet::new();
    loop {
        let (round, members, last) = {
            let mut state = lock(&shared.state);
            while state.pending.is_empty() && !state.closing {
                state = shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            let members: HashMap<String, Arc<BaseConsumer<GroupContext>>> = state
                .members
                .iter()
                .filter_map(|(g, c)| Some((g.clone(), c.upgrade()?)))
                .collect();
            (std::mem::take(&mut state.pending), members, state.closing)
        };
        let mut failed = HashMap::new();
        for (group, positions) in round {
            let result = commit(
                config,
                &mut outsiders,
                members.get(&group),
                &group,
                &positions,
            );
            match result {
                Ok(()) => {
                    if warned.remove(&group) {
                        tracing::info!(group, "group offsets are mirrored to Kafka again");
                    }
                }
                Err(e) => {
                    // Said once per group until it works again: a broker
                    // without group offsets would fill the log otherwise.
                    if warned.insert(group.clone()) {
                        tracing::warn!(group, error = %e, "could not mirror group offsets to Kafka; retrying");
                    } else {
                        tracing::debug!(group, error = %e, "could not mirror group offsets to Kafka");
                    }
                    failed.insert(group, positions);
                }
            }
        }
        let mut state = lock(&shared.state);
        if last {
            state.closed = true;
            shared.wake.notify_all();
            return;
        }
        pause = if failed.is_empty() {
            INTERVAL
        } else {
            (pause * 2).min(BACKOFF_MAX)
        };
        // A position committed meanwhile is newer than a failed one.
        for (group, positions) in failed {
            let newer = state.pending.entry(group).or_default();
            for (tp, offset) in positions {
                newer.entry(tp).or_insert(offset);
            }
        }
        let until = Instant::now() + pause;
        while !state.closing {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = shared
                .wake
                .wait_timeout(state, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }
}

/// Commits one group's positions: through its member when this instance
/// has one (falling back to a commit outside the membership once the
/// member has left), else outside any membership.
fn commit(
    config: &KafkaConfig,
    outsiders: &mut HashMap<String, BaseConsumer>,
    member: Option<&Arc<BaseConsumer<GroupContext>>>,
    group: &str,
    positions: &HashMap<TopicPartition, u64>,
) -> Result<(), String> {
    let mut tpl = TopicPartitionList::with_capacity(positions.len());
    for (tp, offset) in positions {
        let partition = i32::try_from(tp.partition).map_err(|e| e.to_string())?;
        let offset = i64::try_from(*offset).map_err(|e| e.to_string())?;
        tpl.add_partition_offset(&tp.topic, partition, Offset::Offset(offset))
            .map_err(|e| e.to_string())?;
    }
    if let Some(member) = member
        && member.commit(&tpl, CommitMode::Sync).is_ok()
    {
        return Ok(());
    }
    let consumer = match outsiders.get(group) {
        Some(c) => c,
        None => {
            let mut c = client::base(config);
            c.set("group.id", group)
                .set("client.id", format!("kappa-{}-offsets", config.instance))
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false");
            let consumer: BaseConsumer = c.create().map_err(|e| e.to_string())?;
            outsiders.entry(group.to_owned()).or_insert(consumer)
        }
    };
    consumer
        .commit(&tpl, CommitMode::Sync)
        .map_err(|e| e.to_string())
}
