//! The instance registry: which instance of an application runs which
//! task, and where its HTTP server is, so that an interactive query for
//! any key can be sent to the instance that holds it.
//!
//! Each instance appends `{"url": ..., "tasks": [...]}` (keyed by its URL)
//! to the compacted topic `<app>-instances` whenever the tasks it runs
//! change, and every instance follows the topic. A task's owner is the
//! instance whose latest record lists it and was written last. Instances
//! republish their claims every [`HEARTBEAT`]; a claim not republished
//! for a while is from an instance presumed dead, and is ignored.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kappa_log::{FetchLimits, Log, ProducerRecord, Record, TopicPartition, TopicSpec};
use serde::{Deserialize, Serialize};

use crate::error::StreamsError;
use crate::runtime::lock;

/// Who runs a task, as far as this instance knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskOwner {
    /// This instance.
    Local,
    /// Another instance, at this HTTP base URL.
    Remote(String),
    /// No instance has said it runs the task (yet).
    Unknown,
}

#[derive(Serialize, Deserialize)]
struct Claim {
    url: String,
    /// Tasks running (queries for them are answered there).
    tasks: Vec<u32>,
    /// Tasks assigned, including those still restoring.
    #[serde(default)]
    assigned: Vec<u32>,
}

/// An instance's latest claim.
struct Entry {
    offset: u64,
    tasks: Vec<u32>,
    assigned: Vec<u32>,
    /// When this instance read it: claims are republished every
    /// [`HEARTBEAT`], so an older one is from an instance presumed dead.
    seen: Instant,
}

/// Each instance's latest claim.
#[derive(Default)]
struct Claims {
    by_url: HashMap<String, Entry>,
    next: u64,
}

/// How often an instance republishes its claim.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(2);
/// A claim not republished for this long is from an instance presumed dead.
const STALE: Duration = Duration::from_secs(15);

pub(crate) struct Registry {
    log: Arc<dyn Log>,
    topic: TopicPartition,
    me: String,
    claims: Mutex<Claims>,
    /// What this instance last published (running, assigned), republished
    /// every [`HEARTBEAT`] by the follower thread.
    mine: Mutex<(Vec<u32>, Vec<u32>)>,
}

impl Registry {
    /// The registry of application `app`, for the instance at `url`.
    pub(crate) fn open(log: Arc<dyn Log>, app: &str, url: &str) -> Result<Self, StreamsError> {
        let topic = format!("{app}-instances");
        match log.create_topic(&TopicSpec::new(topic.as_str(), 1).compacted()) {
            Ok(()) | Err(kappa_log::LogError::TopicExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let registry = Self {
            log,
            topic: TopicPartition::new(topic.as_str(), 0),
            me: url.to_owned(),
            claims: Mutex::new(Claims::default()),
            mine: Mutex::new((Vec::new(), Vec::new())),
        };
        registry.catch_up(Duration::ZERO)?;
        Ok(registry)
    }

    /// Says which tasks this instance runs and which it was assigned.
    pub(crate) fn publish(&self, tasks: &[u32], assigned: &[u32]) -> Result<(), StreamsError> {
        *lock(&self.mine) = (tasks.to_vec(), assigned.to_vec());
        let claim = Claim {
            url: self.me.clone(),
            tasks: tasks.to_vec(),
            assigned: assigned.to_vec(),
        };
        let value = serde_json::to_vec(&claim)
            .map_err(|e| StreamsError::Worker(format!("encoding a registry entry: {e}")))?;
        self.log.append(
            &self.topic.topic,
            vec![ProducerRecord::value(value).with_key(self.me.as_bytes().to_vec())],
        )?;
        tracing::debug!(url = %self.me, ?tasks, "published this instance's tasks");
        Ok(())
    }

    /// Reads what other instances published since the last call.
    pub(crate) fn catch_up(&self, wait: Duration) -> Result<usize, StreamsError> {
        let from = lock(&self.claims).next;
        let mut out: Vec<Record> = Vec::new();
        let limits = FetchLimits {
            wait_max: wait,
            ..FetchLimits::default()
        };
        let outcome = self
            .log
            .fetch(&[(self.topic.clone(), from)], limits, &mut out)?;
        let mut claims = lock(&self.claims);
        let now = Instant::now();
        for r in &out {
            let Some(claim) = r
                .value
                .as_deref()
                .and_then(|v| serde_json::from_slice::<Claim>(v).ok())
            else {
                tracing::warn!(at = %r.position(), "ignoring a registry record that is not a claim");
                continue;
            };
            claims.by_url.insert(
                claim.url,
                Entry {
                    offset: r.offset,
                    tasks: claim.tasks,
                    assigned: claim.assigned,
                    seen: now,
                },
            );
        }
        if let Some(next) = outcome.next_offsets.first() {
            claims.next = *next;
        }
        Ok(out.len())
    }

    /// The tasks of `0..tasks` that neither `mine` nor a live instance
    /// was assigned.
    pub(crate) fn unheld(&self, mine: &[u32], tasks: u32) -> Vec<u32> {
        let claims = lock(&self.claims);
        let live: Vec<&Entry> = claims
            .by_url
            .iter()
            .filter(|(url, e)| **url != self.me && e.seen.elapsed() < STALE)
            .map(|(_, e)| e)
            .collect();
        (0..tasks)
            .filter(|t| !mine.contains(t) && !live.iter().any(|e| e.assigned.contains(t)))
            .collect()
    }

    /// Who runs `task`.
    pub(crate) fn owner_of(&self, task: u32) -> TaskOwner {
        let claims = lock(&self.claims);
        let owner = claims
            .by_url
            .iter()
            .filter(|(url, e)| {
                e.tasks.contains(&task) && (**url == self.me || e.seen.elapsed() < STALE)
            })
            .max_by_key(|(_, e)| e.offset)
            .map(|(url, _)| url.clone());
        match owner {
            Some(url) if url == self.me => TaskOwner::Local,
            Some(url) => TaskOwner::Remote(url),
            None => TaskOwner::Unknown,
        }
    }

    /// Every instance's URL and the tasks it last said it runs.
    pub(crate) fn instances(&self) -> Vec<(String, Vec<u32>)> {
        let claims = lock(&self.claims);
        let mut out: Vec<(String, Vec<u32>)> = claims
            .by_url
            .iter()
            .map(|(url, e)| (url.clone(), e.tasks.clone()))
            .collect();
        out.sort();
        out
    }
}

/// Follows the registry, and republishes this instance's claim every
/// [`HEARTBEAT`] (on its own thread, so a long restore does not make the
/// instance look dead), until `stop`.
pub(crate) fn follow(registry: &Registry, stop: &AtomicBool) -> Result<(), StreamsError> {
    let mut next_heartbeat = Instant::now() + HEARTBEAT;
    while !stop.load(Ordering::Acquire) {
        // Bounded so a stop request is seen promptly.
        registry.catch_up(Duration::from_millis(100))?;
        if Instant::now() >= next_heartbeat {
            let (tasks, assigned) = lock(&registry.mine).clone();
            if let Err(e) = registry.publish(&tasks, &assigned) {
                tracing::warn!(error = %e, "could not republish this instance's claim");
            }
            next_heartbeat = Instant::now() + HEARTBEAT;
        }
    }
    Ok(())
}
