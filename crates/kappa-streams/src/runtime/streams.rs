//! [`Streams`]: the handle of a running topology (start, wait, query, close).

use super::*;

/// A running topology.
///
/// ```
/// use std::sync::Arc;
/// use kappa_log::{Log, MemoryLog, TopicSpec, ProducerRecord};
/// use kappa_streams::{Streams, StreamsBuilder, StreamsConfig, Utf8};
/// let log: Arc<dyn Log> = Arc::new(MemoryLog::new());
/// log.create_topic(&TopicSpec::new("in", 1))?;
/// log.create_topic(&TopicSpec::new("out", 1))?;
/// let b = StreamsBuilder::new();
/// b.stream("in", Utf8, Utf8).map_values(|v: String| v.to_uppercase()).to("out", Utf8, Utf8);
/// let streams = Streams::start(log.clone(), b.build()?, StreamsConfig::new("shout"))?;
/// log.append("in", vec![ProducerRecord::value("hi").with_key("k")])?;
/// streams.wait_for_inputs()?;
/// streams.close()?;
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
pub struct Streams {
    log: Arc<dyn Log>,
    config: StreamsConfig,
    plan: Plan,
    stop: Arc<AtomicBool>,
    progress: Arc<Progress>,
    /// The global tables' thread, the registry's and the task manager's.
    threads: Vec<JoinHandle<Result<(), StreamsError>>>,
    tasks: Arc<Tasks>,
    registry: Option<Arc<Registry>>,
    topology: Topology,
}

impl Streams {
    /// Checks the topology against the log, creates internal topics, restores
    /// state and starts `num_threads` workers.
    ///
    /// # Errors
    ///
    /// Missing input/output topics, unequal input partition counts, an
    /// invalid application id, or log failures while restoring.
    pub fn start(
        log: Arc<dyn Log>,
        topology: Topology,
        config: StreamsConfig,
    ) -> Result<Self, StreamsError> {
        let plan = plan(&*log, &topology, &config)?;
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(Progress::default());
        let mut threads = Vec::with_capacity(3);
        // Global tables are read to their end before any task processes.
        let globals = Arc::new(GlobalStores::new(&*log, &topology.graph.global_topics)?);
        globals.bootstrap(&*log)?;
        if !globals.is_empty() {
            let (log, globals, stop, progress) =
                (log.clone(), globals.clone(), stop.clone(), progress.clone());
            threads.push(spawn_guarded(
                format!("kappa-streams-{}-global", config.application_id),
                progress,
                move || follow_globals(&*log, &globals, &stop),
            )?);
        }
        let registry = match &config.application_server {
            Some(url) => {
                let registry = Arc::new(Registry::open(log.clone(), &config.application_id, url)?);
                let (r, stop, progress) = (registry.clone(), stop.clone(), progress.clone());
                threads.push(spawn_guarded(
                    format!("kappa-streams-{}-registry", config.application_id),
                    progress,
                    move || crate::registry::follow(&r, &stop),
                )?);
                Some(registry)
            }
            None => None,
        };
        let tasks = Arc::new(Tasks::new(AppContext {
            log: log.clone(),
            topology: topology.clone(),
            config: config.clone(),
            plan: plan.clone(),
            globals,
            progress: progress.clone(),
            registry: registry.clone(),
        }));
        let mut streams = Self {
            log: log.clone(),
            config: config.clone(),
            plan: plan.clone(),
            stop: stop.clone(),
            progress: progress.clone(),
            threads,
            tasks: tasks.clone(),
            registry,
            topology,
        };
        match config.assignment {
            Assignment::AllTasks => {
                // Dropping `streams` on failure stops what already started.
                let all: Vec<u32> = (0..plan.partitions).collect();
                tasks.claim_and_start(&all)?;
            }
            Assignment::Group => {
                let (sender, assigned) = std::sync::mpsc::channel();
                let manager = tasks.clone();
                let stop = stop.clone();
                streams.threads.push(spawn_guarded(
                    format!("kappa-streams-{}-tasks", config.application_id),
                    progress,
                    move || crate::tasks::manage(&manager, &assigned, &stop),
                )?);
                let listener = Arc::new(Listener {
                    tasks,
                    assigned: Mutex::new(sender),
                });
                let membership =
                    log.join_group(&config.application_id, plan.partitions, listener)?;
                *lock(&streams.tasks.membership) = Some(Arc::from(membership));
            }
        }
        tracing::info!(app = %config.application_id, threads = config.num_threads, partitions = plan.partitions, assignment = ?config.assignment, "streams started");
        Ok(streams)
    }

    /// Blocks until every input record so far is processed and committed,
    /// including records the topology itself wrote to topics it reads
    /// (repartition topics): it waits for the committed positions to reach
    /// the inputs' end offsets, again and again, until those stop moving.
    ///
    /// # Errors
    ///
    /// A worker stopped with an error.
    pub fn wait_for_inputs(&self) -> Result<(), StreamsError> {
        loop {
            let targets = self.input_ends()?;
            self.wait_for_positions(&targets)?;
            if self.input_ends()? == targets {
                return Ok(());
            }
        }
    }

    fn input_ends(&self) -> Result<Vec<(TopicPartition, u64)>, StreamsError> {
        let mut targets = Vec::new();
        for topic in &self.plan.sources {
            for p in 0..self.plan.partitions {
                let tp = TopicPartition::new(topic.as_str(), p);
                let end = self.log.offsets(&tp)?.end;
                targets.push((tp, end));
            }
        }
        Ok(targets)
    }

    fn wait_for_positions(&self, targets: &[(TopicPartition, u64)]) -> Result<(), StreamsError> {
        let mut committed = lock(&self.progress.state);
        loop {
            if committed.stopped {
                return Err(StreamsError::Worker(
                    "a worker stopped; close() reports why".to_owned(),
                ));
            }
            if targets
                .iter()
                .all(|(tp, end)| committed.positions.get(tp).copied().unwrap_or(0) >= *end)
            {
                return Ok(());
            }
            committed = self
                .progress
                .changed
                .wait(committed)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Committed input positions: for each input partition, the offset of
    /// the next record to process (everything before it is processed and
    /// its effects are committed).
    pub fn committed_positions(&self) -> Vec<(TopicPartition, u64)> {
        let s = lock(&self.progress.state);
        let mut out: Vec<(TopicPartition, u64)> =
            s.positions.iter().map(|(tp, o)| (tp.clone(), *o)).collect();
        out.sort();
        out
    }

    /// Waits until every `(partition, offset)` in `targets` is processed and
    /// committed (the committed position is past the offset), or `timeout`
    /// passes. Returns whether they were reached.
    ///
    /// # Errors
    ///
    /// A worker stopped.
    pub fn wait_for_processed(
        &self,
        targets: &[(TopicPartition, u64)],
        timeout: Duration,
    ) -> Result<bool, StreamsError> {
        let deadline = Instant::now() + timeout.min(Duration::from_secs(24 * 60 * 60));
        let mut committed = lock(&self.progress.state);
        loop {
            if targets
                .iter()
                .all(|(tp, o)| committed.positions.get(tp).is_some_and(|at| at > o))
            {
                return Ok(true);
            }
            if committed.stopped {
                return Err(StreamsError::Worker(
                    "a worker stopped; close() reports why".to_owned(),
                ));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            committed = self
                .progress
                .changed
                .wait_timeout(committed, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// Whether every worker is still running (none stopped on an error).
    pub fn is_running(&self) -> bool {
        !lock(&self.progress.state).stopped
    }

    /// The application id the topology runs under.
    pub fn application_id(&self) -> &str {
        &self.config.application_id
    }

    /// The log it runs on.
    pub fn log(&self) -> &Arc<dyn Log> {
        &self.log
    }

    /// The topics the topology reads (inputs and its own internal topics).
    pub fn input_topics(&self) -> &[String] {
        &self.plan.sources
    }

    /// The topology this runs.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The number of partitions (tasks) of the inputs.
    pub fn partitions(&self) -> u32 {
        self.plan.partitions
    }

    /// Counters summed over the workers, as of their last commits.
    pub fn metrics(&self) -> StreamsMetrics {
        let s = lock(&self.progress.state);
        s.counters
            .values()
            .fold(StreamsMetrics::default(), |a, m| StreamsMetrics {
                records_processed: a.records_processed + m.records_processed,
                late_records: a.late_records + m.late_records,
                commits: a.commits + m.commits,
                store_cache_hits: a.store_cache_hits + m.store_cache_hits,
                store_cache_misses: a.store_cache_misses + m.store_cache_misses,
            })
    }

    /// A read-only view of a store's committed contents.
    pub fn store(&self, name: &str) -> ReadOnlyStore {
        ReadOnlyStore::new(
            self.log.clone(),
            &self.config.application_id,
            name,
            self.plan.partitions,
        )
    }

    /// Who runs `task` (a partition index): with an instance registry
    /// ([`StreamsConfig::application_server`]) the instance that last said
    /// so; without one, this process runs every task.
    pub fn owner_of(&self, task: u32) -> TaskOwner {
        match &self.registry {
            Some(r) => r.owner_of(task),
            None => TaskOwner::Local,
        }
    }

    /// The instances in the registry and the tasks each last said it runs.
    pub fn instances(&self) -> Vec<(String, Vec<u32>)> {
        self.registry
            .as_ref()
            .map_or_else(Vec::new, |r| r.instances())
    }

    /// The tasks running here and those being restored.
    pub fn task_state(&self) -> TaskState {
        self.tasks.state()
    }

    /// Stops the workers after a final commit.
    ///
    /// # Errors
    ///
    /// The first error any worker stopped with.
    pub fn close(mut self) -> Result<(), StreamsError> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> Result<(), StreamsError> {
        // Leaving the group revokes (stops) the tasks first.
        let membership = lock(&self.tasks.membership).take();
        drop(membership);
        self.stop.store(true, Ordering::Release);
        let mut first = self.tasks.stop_all();
        for t in self.threads.drain(..) {
            let result = t
                .join()
                .unwrap_or_else(|_| Err(StreamsError::Worker("a thread panicked".to_owned())));
            if first.is_ok() {
                first = result;
            }
        }
        if first.is_ok()
            && let Some(e) = self.tasks.take_failure()
        {
            first = Err(e);
        }
        first
    }
}

impl Drop for Streams {
    /// Stops the workers (each makes a final commit) if `close` was not called.
    fn drop(&mut self) {
        let _ = self.shut_down();
    }
}
