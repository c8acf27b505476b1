//! Running a topology: tasks (one per input partition), worker threads, and
//! exactly-once commits.
//!
//! A worker owns some tasks. It fetches a batch of records for all of them,
//! runs each record through its task's nodes, and every `commit_interval`
//! writes one `Log::commit` holding every output record, every store write
//! and every input position of its tasks. Until that commit lands nothing
//! is visible: outputs wait in memory, store writes in task buffers. A crash
//! loses only uncommitted work, which is redone from the committed
//! positions against the committed stores, so each input affects outputs
//! and stores exactly once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kappa_log::{Commit, FetchLimits, Log, Record, TopicPartition, TopicSpec};

use crate::context::TaskContext;
use crate::error::StreamsError;
use crate::global::GlobalStores;
use crate::node::{SourceNode, TaskInit};
use crate::registry::{Registry, TaskOwner};
use crate::store::{ReadOnlyStore, StoreKind, TaskStore, replay_mark_key, stream_time_key};
use crate::tasks::{AppContext, Listener, TaskState, Tasks};
use crate::topology::Topology;

mod streams;

pub use self::streams::Streams;

/// The default of [`StreamsConfig::store_cache_bytes`]: 32 MiB per worker.
pub const STORE_CACHE_BYTES_DEFAULT: usize = 32 << 20;

/// How a topology runs.
#[derive(Clone, Debug)]
pub struct StreamsConfig {
    /// Names the consumer group, the stores and the internal topics.
    pub application_id: String,
    /// Worker threads; tasks are spread over them.
    pub num_threads: usize,
    /// How often each worker commits.
    pub commit_interval: Duration,
    /// Most records one fetch returns.
    pub fetch_records_max: usize,
    /// Where undecodable input records go; `None` stops the topology with an error.
    pub dead_letter_topic: Option<String>,
    /// How this process finds its tasks: all of them, or a share of them
    /// agreed with the other processes of the application's group.
    pub assignment: Assignment,
    /// The URL other instances reach this one's HTTP server at (for
    /// interactive queries of keys this instance owns); published in the
    /// instance registry when set.
    pub application_server: Option<String>,
    /// Keep warm copies of this many other instances' task stores, so
    /// taking a task over restores only the tail (see [`Assignment::Group`]).
    pub num_standby_replicas: u32,
    /// Bytes each worker thread may keep of what its tasks' persistent
    /// stores read, so keys and windows read again skip the storage engine
    /// (split evenly between the worker's stores; 0 turns the cache off).
    /// The cache holds committed contents only and follows the worker's
    /// own commits, so reads are the same with or without it.
    pub store_cache_bytes: usize,
}

/// How the tasks of an application are split between processes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Assignment {
    /// This process runs every task: the only process of the application.
    #[default]
    AllTasks,
    /// The processes of the application share its tasks through the log's
    /// group membership ([`kappa_log::Log::join_group`]); tasks move when
    /// processes join or leave. On Kafka the group uses the `range`
    /// assignor, which the log (not Kappa) runs, so standby copies cannot
    /// be placed: with `num_standby_replicas > 0` an instance follows the
    /// changelogs of every task it does not own.
    Group,
}

impl StreamsConfig {
    /// Defaults: one thread, 100 ms commits, failing on undecodable input.
    pub fn new(application_id: &str) -> Self {
        Self {
            application_id: application_id.to_owned(),
            num_threads: 1,
            commit_interval: Duration::from_millis(100),
            fetch_records_max: 10_000,
            dead_letter_topic: None,
            assignment: Assignment::AllTasks,
            application_server: None,
            num_standby_replicas: 0,
            store_cache_bytes: STORE_CACHE_BYTES_DEFAULT,
        }
    }
}

/// Sources reading the same topic.
struct FanOut(Vec<Box<dyn SourceNode>>);

impl SourceNode for FanOut {
    fn process(&mut self, ctx: &mut TaskContext, record: &Record) -> Result<(), StreamsError> {
        for source in &mut self.0 {
            source.process(ctx, record)?;
        }
        Ok(())
    }

    fn tick(&mut self, ctx: &mut TaskContext, now_ms: i64) -> Result<(), StreamsError> {
        for source in &mut self.0 {
            source.tick(ctx, now_ms)?;
        }
        Ok(())
    }
}

/// One input partition's share of the topology.
pub(crate) struct Task {
    pub(crate) partition: u32,
    ctx: TaskContext,
    /// The stream time as of the last commit (unchanged ones are not written again).
    committed_stream_time: i64,
    /// Source nodes by topic; cursors point at them by index.
    sources: Vec<(Arc<str>, Box<dyn SourceNode>)>,
}

impl Task {
    fn tick(&mut self, now_ms: i64) -> Result<(), StreamsError> {
        for (_, source) in &mut self.sources {
            source.tick(&mut self.ctx, now_ms)?;
        }
        Ok(())
    }

    fn process(&mut self, source: usize, record: &Record) -> Result<(), StreamsError> {
        let Some((_, node)) = self.sources.get_mut(source) else {
            return Err(StreamsError::Topology(format!(
                "no source reads {}",
                record.topic
            )));
        };
        self.ctx.set_current(record);
        node.process(&mut self.ctx, record)
    }
}

/// The part of a running topology one thread drives; the test driver drives one synchronously.
pub(crate) struct Worker {
    log: Arc<dyn Log>,
    group: String,
    tasks: Vec<Task>,
    /// Input partitions and the next offset to read, with the task index.
    cursors: Vec<(TopicPartition, u64)>,
    /// Per cursor: the position as of the last commit (unchanged ones are not written again).
    committed_at: Vec<u64>,
    /// For each cursor: its task and the task's source for that topic.
    cursor_task: Vec<(usize, usize)>,
    /// True when positions moved since the last commit.
    dirty: bool,
    records: Vec<Record>,
    fetch_records_max: usize,
    /// Wall-clock time for punctuators: the system clock, or a clock the
    /// test driver moves by hand.
    manual_clock_ms: Option<i64>,
    /// A commit failed (or a record failed mid-way); nothing more may be
    /// processed or committed by this worker.
    failed: bool,
    /// This worker's number, for metrics.
    pub(crate) index: usize,
    /// Records processed, as of the last commit and since.
    processed_committed: u64,
    processed: u64,
    commits: u64,
    /// Per cursor (same order): below this offset the task rebuilds state
    /// without writing outputs ([`crate::rebuild_application`]); 0 = none.
    replay_until: Vec<u64>,
    /// The application id, for the replay marks.
    app: Arc<str>,
    /// Per cursor: whether it reads one of the application's internal topics.
    internal: Vec<bool>,
    /// Whether records may need replay handling (marks, or internal topics
    /// that may carry records written by a replay).
    replays: bool,
}

/// Marks a record a replaying task wrote to an internal topic, so the task
/// that reads it replays it too (no outputs again).
pub(crate) const REPLAY_HEADER: &str = "kappa-replay";

/// Topics, partitions and stores a topology runs with, checked against the log.
#[derive(Clone)]
pub(crate) struct Plan {
    pub(crate) sources: Vec<String>,
    pub(crate) partitions: u32,
}

pub(crate) fn plan(
    log: &dyn Log,
    topology: &Topology,
    config: &StreamsConfig,
) -> Result<Plan, StreamsError> {
    if config.application_id.is_empty()
        || kappa_log::validate_topic_name(&format!("{}-x", config.application_id)).is_err()
    {
        return Err(StreamsError::Topology(format!(
            "application id {:?} must be usable in topic names (letters, digits, '.', '_', '-')",
            config.application_id
        )));
    }
    let app = &config.application_id;
    let internal = topology.internal_topics(app);
    let mut sources = topology.source_topics(app);
    sources.sort();
    sources.dedup();
    // Every user input must exist, with one partition count (co-partitioning):
    // a task joins the same partition of every input.
    let mut partitions: Option<(String, u32)> = None;
    for topic in sources.iter().filter(|t| !internal.contains(t)) {
        let n = log.partition_count(topic).map_err(|e| match e {
            kappa_log::LogError::UnknownTopic(_) => StreamsError::Topology(format!(
                "input topic {topic:?} does not exist; create it first"
            )),
            other => StreamsError::Log(other),
        })?;
        match &partitions {
            Some((first, m)) if *m != n => {
                return Err(StreamsError::Topology(format!(
                    "inputs must have equal partition counts to be processed together: {first:?} has {m}, {topic:?} has {n}"
                )));
            }
            Some(_) => {}
            None => partitions = Some((topic.clone(), n)),
        }
    }
    let partitions = partitions.map_or(1, |(_, n)| n);
    for topic in &internal {
        match log.create_topic(&TopicSpec::new(topic.as_str(), partitions)) {
            Ok(()) => {}
            Err(kappa_log::LogError::TopicExists(_)) => {
                let existing = log.partition_count(topic)?;
                if existing != partitions {
                    return Err(StreamsError::Topology(format!(
                        "internal topic {topic:?} has {existing} partitions but the inputs have {partitions}; reset the application"
                    )));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    // Backends that keep state in topics give each store a changelog, and
    // each task's stream time a place beside its positions.
    let mut stream_time = crate::store::app_prefix(app);
    stream_time.extend_from_slice(b"!stream-time/");
    log.declare_changelog(&stream_time, &kappa_log::task_changelog(app), partitions)?;

    for store in topology.stores() {
        let changelog = format!("{app}-{}-changelog", store.name);
        if kappa_log::validate_topic_name(&changelog).is_ok() {
            let mut prefix = crate::store::app_prefix(app);
            prefix.extend_from_slice(store.name.as_bytes());
            prefix.push(b'/');
            log.declare_changelog(&prefix, &changelog, partitions)?;
        }
    }
    for topic in topology.sink_topics(app) {
        if log.partition_count(&topic).is_err() {
            return Err(StreamsError::Topology(format!(
                "output topic {topic:?} does not exist; create it first"
            )));
        }
    }
    for topic in &topology.graph.global_topics {
        if log.partition_count(topic).is_err() {
            return Err(StreamsError::Topology(format!(
                "global table topic {topic:?} does not exist; create it first"
            )));
        }
    }
    if let Some(dl) = &config.dead_letter_topic
        && log.partition_count(dl).is_err()
    {
        return Err(StreamsError::Topology(format!(
            "dead-letter topic {dl:?} does not exist; create it first"
        )));
    }
    Ok(Plan {
        sources,
        partitions,
    })
}

impl Worker {
    /// Builds the tasks for `partitions`, restoring stores and positions from the log.
    pub(crate) fn new(
        log: Arc<dyn Log>,
        topology: &Topology,
        config: &StreamsConfig,
        plan: &Plan,
        partitions: &[u32],
        globals: Arc<GlobalStores>,
    ) -> Result<Self, StreamsError> {
        let app = config.application_id.as_str();
        let committed: HashMap<TopicPartition, u64> =
            log.group_positions(app)?.into_iter().collect();
        let store_names: Vec<String> = topology.stores().iter().map(|s| s.name.clone()).collect();
        let dead_letter_topic = config.dead_letter_topic.as_deref().map(Arc::from);
        let init = TaskInit {
            app,
            store_names: &store_names,
            dead_letter_topic,
        };
        let persistent = topology
            .stores()
            .iter()
            .filter(|s| s.kind == StoreKind::Persistent)
            .count();
        let cache_bytes = config.store_cache_bytes / (persistent * partitions.len()).max(1);
        let mut tasks = Vec::with_capacity(partitions.len());
        let mut cursors = Vec::new();
        let mut cursor_task = Vec::new();
        for &p in partitions {
            let mut stores = Vec::with_capacity(topology.stores().len());
            for spec in topology.stores() {
                stores.push(TaskStore::open(&*log, app, spec, p, cache_bytes)?);
            }
            let mut sources: Vec<(Arc<str>, Box<dyn SourceNode>)> = Vec::new();
            for source in &topology.graph.sources {
                let topic: Arc<str> = source.topic(app).into();
                let built = source.build(&init)?;
                // Several streams may read one topic: each record goes to all of them.
                match sources.iter().position(|(t, _)| *t == topic) {
                    Some(i) => {
                        let (t, first) = sources.swap_remove(i);
                        sources.push((t, Box::new(FanOut(vec![first, built]))));
                    }
                    None => sources.push((topic, built)),
                }
            }
            for topic in &plan.sources {
                let tp = TopicPartition::new(topic.as_str(), p);
                let start = match committed.get(&tp) {
                    Some(&o) => o,
                    None => log.start_offset(&tp)?,
                };
                let source = sources
                    .iter()
                    .position(|(t, _)| **t == **topic)
                    .unwrap_or(usize::MAX);
                cursors.push((tp, start));
                cursor_task.push((tasks.len(), source));
            }
            let mut ctx = TaskContext::new(log.clone(), stores, globals.clone());
            if let Some(t) = log.metadata(&stream_time_key(app, p))? {
                let b: [u8; 8] = t[..].try_into().map_err(|_| {
                    StreamsError::Topology(format!("stored stream time of task {p} is not 8 bytes"))
                })?;
                ctx.stream_time = i64::from_be_bytes(b);
            }
            tasks.push(Task {
                partition: p,
                committed_stream_time: ctx.stream_time,
                ctx,
                sources,
            });
        }
        let mut replay_until = Vec::with_capacity(cursors.len());
        for (tp, _) in &cursors {
            let mark = log.metadata(&replay_mark_key(app, &tp.topic, tp.partition))?;
            replay_until.push(
                mark.and_then(|m| m[..].try_into().ok())
                    .map_or(0, u64::from_be_bytes),
            );
        }
        if replay_until.iter().all(|u| *u == 0) {
            replay_until.clear();
        }
        let internal: Vec<bool> = cursors
            .iter()
            .map(|(tp, _)| crate::store::is_internal_topic(app, &tp.topic))
            .collect();
        Ok(Self {
            log,
            group: app.to_owned(),
            tasks,
            committed_at: cursors.iter().map(|(_, at)| *at).collect(),
            cursors,
            cursor_task,
            dirty: false,
            records: Vec::new(),
            fetch_records_max: config.fetch_records_max,
            manual_clock_ms: None,
            failed: false,
            index: 0,
            processed_committed: 0,
            processed: 0,
            commits: 0,
            replays: !replay_until.is_empty() || internal.iter().any(|i| *i),
            replay_until,
            app: Arc::from(app),
            internal,
        })
    }

    /// Fetches and processes one batch; returns how many records it processed.
    pub(crate) fn poll(&mut self, wait: Duration) -> Result<usize, StreamsError> {
        self.check_healthy()?;
        let mut records = std::mem::take(&mut self.records);
        records.clear();
        let limits = FetchLimits {
            records_max: self.fetch_records_max,
            wait_max: wait,
            ..FetchLimits::default()
        };
        let outcome = self.log.fetch(&self.cursors, limits, &mut records)?;
        // A fetch returns runs of records of one partition: remember the last match.
        let mut last: Option<(*const u8, u32, (usize, usize, usize))> = None;
        for r in &records {
            let task = match last {
                Some((topic, partition, found))
                    if std::ptr::eq(topic, r.topic.as_ptr()) && partition == r.partition =>
                {
                    Some(found)
                }
                _ => {
                    let found = self
                        .cursors
                        .iter()
                        .position(|(tp, _)| tp.partition == r.partition && tp.topic == r.topic)
                        .map(|i| (self.cursor_task[i].0, self.cursor_task[i].1, i));
                    if let Some(f) = found {
                        last = Some((r.topic.as_ptr(), r.partition, f));
                    }
                    found
                }
            };
            match task {
                Some((t, source, cursor)) => {
                    if self.replays {
                        // Below its mark, or written by a replay into an internal topic.
                        let replaying =
                            self.replay_until.get(cursor).is_some_and(|u| r.offset < *u)
                                || (self.internal[cursor] && r.header(REPLAY_HEADER).is_some());
                        self.tasks[t].ctx.replaying = replaying.then(|| self.app.clone());
                    }
                    if let Err(e) = self.tasks[t].process(source, r) {
                        // Half-processed state is in the buffers: never commit it.
                        self.failed = true;
                        return Err(e);
                    }
                }
                None => {
                    return Err(StreamsError::Topology(format!(
                        "fetched {} which no task reads",
                        r.position()
                    )));
                }
            }
        }
        self.tick()?;
        for ((_, at), next) in self.cursors.iter_mut().zip(outcome.next_offsets) {
            if *at != next {
                *at = next;
                self.dirty = true;
            }
        }
        let n = records.len();
        self.processed += n as u64;
        self.records = records;
        Ok(n)
    }

    /// Lets wall-clock punctuators run.
    pub(crate) fn tick(&mut self) -> Result<(), StreamsError> {
        let now = self.manual_clock_ms.unwrap_or_else(kappa_log::now_ms);
        for task in &mut self.tasks {
            task.tick(now)?;
        }
        Ok(())
    }

    /// Replaces the system clock with `now_ms` (the test driver's clock).
    pub(crate) fn set_manual_clock(&mut self, now_ms: i64) {
        self.manual_clock_ms = Some(now_ms);
    }

    /// Counters as of the last commit.
    pub(crate) fn metrics(&self) -> StreamsMetrics {
        let cache = self
            .tasks
            .iter()
            .flat_map(|t| &t.ctx.stores)
            .map(TaskStore::cache_counts)
            .fold((0, 0), |(h, m), c| (h + c.hits, m + c.misses));
        StreamsMetrics {
            records_processed: self.processed_committed,
            late_records: self.late_records(),
            commits: self.commits,
            store_cache_hits: cache.0,
            store_cache_misses: cache.1,
        }
    }

    /// Records that arrived after all their windows closed, over all tasks.
    pub(crate) fn late_records(&self) -> u64 {
        self.tasks.iter().map(|t| t.ctx.late_records).sum()
    }

    /// Records waiting for the next commit.
    pub(crate) fn pending_outputs(&self) -> usize {
        self.tasks.iter().map(|t| t.ctx.outputs.len()).sum()
    }

    /// Commits outputs, store writes and positions of every task in one `Log::commit`.
    pub(crate) fn commit(&mut self) -> Result<(), StreamsError> {
        self.check_healthy()?;
        let stores_pending = self
            .tasks
            .iter()
            .any(|t| t.ctx.stores.iter().any(TaskStore::has_pending));
        if !self.dirty && self.pending_outputs() == 0 && !stores_pending {
            return Ok(());
        }
        // Outputs leave the tasks here; if the commit fails they are gone from
        // memory, so the worker refuses to go on (a restart redoes the work
        // from the last commit) rather than commit later state without them.
        self.failed = true;
        // One commit per task: on a shared log each task is committed (and
        // may be taken over) on its own.
        let mut commits: Vec<(u32, Commit)> = self
            .tasks
            .iter()
            .map(|t| (t.partition, Commit::new()))
            .collect();
        for (task, (_, commit)) in self.tasks.iter_mut().zip(&mut commits) {
            // Each run of outputs to one topic goes in at once, so the
            // commit's record list is sized once instead of grown by doubling.
            let outputs = &mut task.ctx.outputs;
            let mut runs: Vec<(Arc<str>, usize)> = Vec::new();
            for (topic, _) in outputs.iter() {
                match runs.last_mut() {
                    Some((t, n)) if t == topic => *n += 1,
                    _ => runs.push((topic.clone(), 1)),
                }
            }
            let mut drained = outputs.drain(..);
            for (topic, n) in runs {
                let run = drained.by_ref().take(n).map(|(_, record)| record);
                commit.append_all(&topic, None, run);
            }
            for store in &task.ctx.stores {
                store.stage(commit);
            }
            if task.ctx.stream_time != task.committed_stream_time {
                commit.put_metadata(
                    stream_time_key(&self.group, task.partition),
                    task.ctx.stream_time.to_be_bytes().to_vec(),
                );
            }
        }
        for (i, (tp, at)) in self.cursors.iter().enumerate() {
            if self.committed_at[i] != *at {
                commits[self.cursor_task[i].0]
                    .1
                    .set_group_position(&self.group, tp.clone(), *at);
            }
        }
        // Replay marks the positions have passed are done with.
        let mut marks_done = false;
        for (i, ((tp, at), until)) in self.cursors.iter().zip(&mut self.replay_until).enumerate() {
            if *until > 0 && *at >= *until {
                commits[self.cursor_task[i].0]
                    .1
                    .delete_metadata(replay_mark_key(&self.app, &tp.topic, tp.partition));
                *until = 0;
                marks_done = true;
            }
        }
        if marks_done && self.replay_until.iter().all(|u| *u == 0) {
            self.replay_until.clear();
            self.replays = self.internal.iter().any(|i| *i);
            for task in &mut self.tasks {
                task.ctx.replaying = None;
            }
        }
        commits.retain(|(_, c)| !c.is_empty());
        self.log.commit_tasks(&self.group, commits)?;
        for task in &mut self.tasks {
            for store in &mut task.ctx.stores {
                store.committed();
            }
            task.committed_stream_time = task.ctx.stream_time;
        }
        for (committed, (_, at)) in self.committed_at.iter_mut().zip(&self.cursors) {
            *committed = *at;
        }
        self.dirty = false;
        self.failed = false;
        self.commits += 1;
        self.processed_committed = self.processed;
        Ok(())
    }

    fn check_healthy(&self) -> Result<(), StreamsError> {
        if self.failed {
            return Err(StreamsError::Worker(
                "an earlier commit failed; restart to resume from the last commit".to_owned(),
            ));
        }
        Ok(())
    }

    /// Partitions this worker's tasks handle.
    pub(crate) fn partitions(&self) -> Vec<u32> {
        self.tasks.iter().map(|t| t.partition).collect()
    }
}

/// Committed positions reported by the workers, so callers can wait for
/// progress without polling the log.
#[derive(Default)]
pub(crate) struct Progress {
    state: Mutex<ProgressState>,
    changed: Condvar,
}

#[derive(Default)]
struct ProgressState {
    positions: HashMap<TopicPartition, u64>,
    /// A worker has stopped (error or close).
    stopped: bool,
    /// Each worker's counters at its last commit, by worker index.
    counters: HashMap<usize, StreamsMetrics>,
}

/// Counters of a running topology, as of each worker's last commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamsMetrics {
    /// Input records processed and committed.
    pub records_processed: u64,
    /// Records that arrived after all their windows closed.
    pub late_records: u64,
    /// Commits made.
    pub commits: u64,
    /// Reads of persistent stores answered by the store cache
    /// ([`StreamsConfig::store_cache_bytes`]).
    pub store_cache_hits: u64,
    /// Reads of persistent stores that went to the log.
    pub store_cache_misses: u64,
}

impl Progress {
    fn committed(&self, worker: &Worker) {
        let mut s = lock(&self.state);
        for (tp, at) in &worker.cursors {
            s.positions.insert(tp.clone(), *at);
        }
        s.counters.insert(worker.index, worker.metrics());
        self.changed.notify_all();
    }

    pub(crate) fn stopped(&self) {
        lock(&self.state).stopped = true;
        self.changed.notify_all();
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Spawns a thread that marks the application stopped when it fails or panics.
fn spawn_guarded(
    name: String,
    progress: Arc<Progress>,
    f: impl FnOnce() -> Result<(), StreamsError> + Send + 'static,
) -> Result<JoinHandle<Result<(), StreamsError>>, StreamsError> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let guard = StoppedOnExit(&progress);
            let result = f();
            match &result {
                Err(e) => tracing::error!(error = %e, thread = %name, "streams thread stopped"),
                Ok(()) => std::mem::forget(guard),
            }
            result
        })
        .map_err(|e| StreamsError::Worker(e.to_string()))
}

pub(crate) fn run_worker(
    worker: &mut Worker,
    stop: &AtomicBool,
    progress: &Progress,
    interval: Duration,
) -> Result<(), StreamsError> {
    tracing::debug!(partitions = ?worker.partitions(), "worker started");
    progress.committed(worker);
    let mut next_commit = Instant::now() + interval;
    while !stop.load(Ordering::Acquire) {
        // Bounded so a stop request is seen promptly even with idle inputs.
        let wait = next_commit
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(50));
        worker.poll(wait)?;
        if Instant::now() >= next_commit || worker.pending_outputs() >= COMMIT_RECORDS_MAX {
            worker.commit()?;
            progress.committed(worker);
            next_commit = Instant::now() + interval;
        }
    }
    worker.commit()?;
    progress.committed(worker);
    Ok(())
}

/// Marks the application stopped when dropped (also during a panic).
pub(crate) struct StoppedOnExit<'a>(pub(crate) &'a Progress);

impl Drop for StoppedOnExit<'_> {
    fn drop(&mut self) {
        self.0.stopped();
    }
}

/// Keeps the global tables following their topics until stopped.
fn follow_globals(
    log: &dyn Log,
    globals: &GlobalStores,
    stop: &AtomicBool,
) -> Result<(), StreamsError> {
    while !stop.load(Ordering::Acquire) {
        // Bounded so a stop request is seen promptly.
        globals.catch_up(log, Duration::from_millis(50))?;
    }
    Ok(())
}

/// Commit early once this many output records wait, bounding memory.
const COMMIT_RECORDS_MAX: usize = 50_000;
