//! Who runs on a log. Each Kappa service announces itself every few
//! seconds in the log's own compacted topic [`SERVICES_TOPIC`]: its name,
//! where it runs, which topics it reads (with how far behind it is) and
//! which it writes. A console on any instance reads the latest
//! announcements and draws the system as the article does: services as
//! boxes, topics between them. A service that stops says so; one that is
//! killed goes silent, and its last announcement ages.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use kappa_log::{FetchLimits, Log, LogError, ProducerRecord, TopicPartition, TopicSpec, now_ms};
use serde::{Deserialize, Serialize};

use crate::ServiceError;

/// The topic of announcements: one partition, compacted, keyed by
/// `service/instance`.
pub const SERVICES_TOPIC: &str = "kappa-services";

/// How often a running service announces itself.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(2);

/// How many of the latest announcements a reader looks at: enough for
/// dozens of services between compactions.
const READ_BACK: u64 = 4096;

/// One topic a service reads, and how far behind its end the service is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reading {
    /// The topic.
    pub topic: String,
    /// The reader's name: its group or application id.
    pub reader: String,
    /// Records of the topic the reader has not made durable yet, summed over partitions.
    pub lag: u64,
}

/// What a service says about itself.
///
/// ```
/// use kappa_service::registry::{Announcement, Reading};
/// let mut a = Announcement::new("notifier", "notifier");
/// a.reads.push(Reading { topic: "events".into(), reader: "notification".into(), lag: 0 });
/// a.writes.push("events".into());
/// assert_eq!(a.key(), "notifier/notifier");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// The service's name (`decisions`, `notifier`, …).
    pub service: String,
    /// This process among the service's instances.
    pub instance: String,
    /// The machine it runs on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// Where it answers HTTP, if it does.
    #[serde(default)]
    pub http: Option<String>,
    /// The topics it reads.
    #[serde(default)]
    pub reads: Vec<Reading>,
    /// The topics it writes.
    #[serde(default)]
    pub writes: Vec<String>,
    /// When it started (ms since the epoch).
    pub started_ms: i64,
    /// When it said this (ms since the epoch).
    pub at_ms: i64,
    /// Whether it said this as it stopped.
    #[serde(default)]
    pub stopped: bool,
}

/// The machine's name, as the kernel knows it.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

impl Announcement {
    /// An announcement of this process as `instance` of `service`, reading
    /// and writing nothing yet.
    pub fn new(service: &str, instance: &str) -> Self {
        let now = now_ms();
        Self {
            service: service.to_owned(),
            instance: instance.to_owned(),
            host: host_name(),
            pid: std::process::id(),
            http: None,
            reads: Vec::new(),
            writes: Vec::new(),
            started_ms: now,
            at_ms: now,
            stopped: false,
        }
    }

    /// The record key: `service/instance`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.service, self.instance)
    }
}

/// How far behind `reader` is on each of `topics`, from its committed
/// `positions` (next offset per partition) and the log's ends.
///
/// # Errors
///
/// Log failures.
pub fn lag_of(
    log: &dyn Log,
    reader: &str,
    positions: &[(TopicPartition, u64)],
) -> Result<Vec<Reading>, LogError> {
    let mut by_topic: BTreeMap<&str, u64> = BTreeMap::new();
    for (tp, position) in positions {
        let end = log.offsets(tp)?.end;
        *by_topic.entry(&tp.topic).or_default() += end.saturating_sub(*position);
    }
    Ok(by_topic
        .into_iter()
        .map(|(topic, lag)| Reading {
            topic: topic.to_owned(),
            reader: reader.to_owned(),
            lag,
        })
        .collect())
}

/// Creates [`SERVICES_TOPIC`] when missing.
fn ensure_topic(log: &dyn Log) -> Result<(), LogError> {
    match log.create_topic(&TopicSpec::new(SERVICES_TOPIC, 1).compacted()) {
        Ok(()) | Err(LogError::TopicExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

fn announce(log: &dyn Log, a: &Announcement) -> Result<(), LogError> {
    let value = serde_json::to_vec(a).map_err(|e| LogError::InvalidConfig(e.to_string()))?;
    log.append(
        SERVICES_TOPIC,
        vec![ProducerRecord::value(value).with_key(a.key())],
    )?;
    Ok(())
}

/// Announces a service every [`ANNOUNCE_EVERY`] on a thread of its own,
/// until dropped; then says it stopped.
pub struct Beacon {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Beacon {
    /// Announces `base` as `refresh` brings it up to date (its reads, its
    /// lag) each time, the first time before returning.
    ///
    /// # Errors
    ///
    /// The topic could not be made, the first announcement written, or the
    /// thread started.
    pub fn start(
        log: Arc<dyn Log>,
        base: Announcement,
        refresh: impl Fn(&mut Announcement) + Send + 'static,
    ) -> Result<Self, ServiceError> {
        ensure_topic(&*log)?;
        let mut last = base;
        refresh(&mut last);
        last.at_ms = now_ms();
        announce(&*log, &last)?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("kappa-beacon".to_owned())
            .spawn(move || {
                let (lock, wake) = &*stopping;
                loop {
                    let stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
                    let (stopped, _) = wake
                        .wait_timeout_while(stopped, ANNOUNCE_EVERY, |s| !*s)
                        .unwrap_or_else(|e| e.into_inner());
                    if *stopped {
                        break;
                    }
                    drop(stopped);
                    refresh(&mut last);
                    last.at_ms = now_ms();
                    if let Err(e) = announce(&*log, &last) {
                        tracing::warn!(error = %e, "announcing the service failed");
                    }
                }
                last.stopped = true;
                last.at_ms = now_ms();
                if let Err(e) = announce(&*log, &last) {
                    tracing::warn!(error = %e, "announcing the service's stop failed");
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Beacon {
    fn drop(&mut self) {
        let (lock, wake) = &*self.stop;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A service as last announced, and how long ago.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Announced {
    /// What it said last.
    #[serde(flatten)]
    pub announcement: Announcement,
    /// Milliseconds since it said it.
    pub age_ms: i64,
    /// `running` (heard from lately), `silent` (not heard from for three
    /// announcement intervals: killed, or cut off) or `stopped`.
    pub state: &'static str,
}

/// The latest announcement of every service instance, by key.
///
/// # Errors
///
/// Log failures; a log where nothing was ever announced answers an empty list.
pub fn announced(log: &dyn Log) -> Result<Vec<Announced>, LogError> {
    let tp = TopicPartition::new(SERVICES_TOPIC, 0);
    let range = match log.offsets(&tp) {
        Ok(r) => r,
        Err(LogError::UnknownTopic(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut latest: BTreeMap<Vec<u8>, Option<Announcement>> = BTreeMap::new();
    let mut at = range.end.saturating_sub(READ_BACK).max(range.start);
    let mut batch = Vec::new();
    while at < range.end {
        batch.clear();
        log.fetch(
            &[(tp.clone(), at)],
            FetchLimits {
                records_max: 1024,
                ..FetchLimits::default()
            },
            &mut batch,
        )?;
        let Some(last) = batch.last() else { break };
        at = last.offset + 1;
        for r in &batch {
            let Some(key) = &r.key else { continue };
            // Whatever does not parse is someone else's; a tombstone forgets.
            let a = r
                .value
                .as_deref()
                .and_then(|v| serde_json::from_slice::<Announcement>(v).ok());
            latest.insert(key.to_vec(), a);
        }
    }
    let now = now_ms();
    let silent_after = 3 * ANNOUNCE_EVERY.as_millis() as i64;
    Ok(latest
        .into_values()
        .flatten()
        .map(|a| {
            let age_ms = now.saturating_sub(a.at_ms).max(0);
            let state = if a.stopped {
                "stopped"
            } else if age_ms > silent_after {
                "silent"
            } else {
                "running"
            };
            Announced {
                announcement: a,
                age_ms,
                state,
            }
        })
        .collect())
}
