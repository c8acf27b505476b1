//! The tasks this process runs: claimed from the log and started on
//! worker threads when assigned, stopped (after a final commit) and
//! released when revoked.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kappa_log::{GroupMembership, Log, RebalanceListener, TopicPartition};

use crate::error::StreamsError;
use crate::global::GlobalStores;
use crate::registry::Registry;
use crate::runtime::{Plan, Progress, StreamsConfig, Worker, lock, run_worker};
use crate::topology::Topology;

/// A worker thread and the tasks it runs.
struct Running {
    tasks: Vec<u32>,
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Result<(), StreamsError>>,
}

/// What this process holds, and restoring figures for `/ready` and `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskState {
    /// Tasks running here.
    pub running: Vec<u32>,
    /// Tasks assigned here whose state is being restored.
    pub restoring: Vec<u32>,
    /// Task assignments received.
    pub rebalances: u64,
    /// Milliseconds the last claim (restore) took.
    pub last_restore_ms: u64,
}

/// What the tasks of one application share, fixed while it runs.
pub(crate) struct AppContext {
    pub(crate) log: Arc<dyn Log>,
    pub(crate) topology: Topology,
    pub(crate) config: StreamsConfig,
    pub(crate) plan: Plan,
    pub(crate) globals: Arc<GlobalStores>,
    pub(crate) progress: Arc<Progress>,
    pub(crate) registry: Option<Arc<Registry>>,
}

/// The tasks of one application in this process.
pub(crate) struct Tasks {
    app: AppContext,
    running: Mutex<Vec<Running>>,
    /// Held while claiming, so a revocation waits for a claim to end.
    claiming: Mutex<()>,
    state: Mutex<TaskState>,
    next_worker: AtomicUsize,
    rebalances: AtomicU64,
    /// The first error a worker stopped by a revocation ended with.
    failure: Mutex<Option<StreamsError>>,
    /// The group membership ([`crate::Assignment::Group`]); dropping it leaves.
    pub(crate) membership: Mutex<Option<Arc<dyn GroupMembership>>>,
    /// The tasks last assigned.
    assigned: Mutex<Vec<u32>>,
}

impl Tasks {
    pub(crate) fn new(app: AppContext) -> Self {
        Self {
            app,
            running: Mutex::new(Vec::new()),
            claiming: Mutex::new(()),
            state: Mutex::new(TaskState::default()),
            next_worker: AtomicUsize::new(0),
            rebalances: AtomicU64::new(0),
            failure: Mutex::new(None),
            membership: Mutex::new(None),
            assigned: Mutex::new(Vec::new()),
        }
    }

    /// The changelog partitions holding the stores of `tasks`.
    pub(crate) fn changelogs(&self, tasks: &[u32]) -> Vec<TopicPartition> {
        let app = &self.app.config.application_id;
        let positions = kappa_log::task_changelog(app);
        let mut out: Vec<TopicPartition> = tasks
            .iter()
            .map(|p| TopicPartition::new(positions.as_str(), *p))
            .collect();
        for store in self.app.topology.stores() {
            let changelog = format!("{app}-{}-changelog", store.name);
            if kappa_log::validate_topic_name(&changelog).is_ok() {
                out.extend(
                    tasks
                        .iter()
                        .map(|p| TopicPartition::new(changelog.as_str(), *p)),
                );
            }
        }
        out
    }

    pub(crate) fn state(&self) -> TaskState {
        let mut s = lock(&self.state).clone();
        s.rebalances = self.rebalances.load(Ordering::Relaxed);
        s
    }

    /// Claims `tasks` from the log (restoring their state) and starts them.
    pub(crate) fn claim_and_start(&self, tasks: &[u32]) -> Result<(), StreamsError> {
        let claiming = lock(&self.claiming);
        lock(&self.state).restoring = tasks.to_vec();
        self.rebalances.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let changelogs = self.changelogs(tasks);
        tracing::info!(app = %self.app.config.application_id, ?tasks, changelogs = changelogs.len(), "claiming tasks: restoring their state");
        let claimed = self
            .app
            .log
            .claim_tasks(&self.app.config.application_id, tasks, &changelogs);
        let restore_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        {
            let mut s = lock(&self.state);
            s.restoring.clear();
            s.last_restore_ms = restore_ms;
        }
        claimed?;
        tracing::info!(app = %self.app.config.application_id, ?tasks, restore_ms, "tasks claimed");
        self.start_workers(tasks)?;
        drop(claiming);
        if let Some(registry) = &self.app.registry {
            registry.publish(&self.running_tasks(), &lock(&self.assigned))?;
        }
        Ok(())
    }

    /// Starts worker threads for claimed `tasks`, spread over `num_threads`.
    fn start_workers(&self, tasks: &[u32]) -> Result<(), StreamsError> {
        if tasks.is_empty() {
            return Ok(());
        }
        let threads = self.app.config.num_threads.clamp(1, tasks.len());
        let mut running = lock(&self.running);
        for i in 0..threads {
            let mine: Vec<u32> = tasks
                .iter()
                .enumerate()
                .filter(|(n, _)| n % threads == i)
                .map(|(_, p)| *p)
                .collect();
            let mut worker = Worker::new(
                self.app.log.clone(),
                &self.app.topology,
                &self.app.config,
                &self.app.plan,
                &mine,
                self.app.globals.clone(),
            )?;
            worker.index = self.next_worker.fetch_add(1, Ordering::Relaxed);
            let stop = Arc::new(AtomicBool::new(false));
            let progress = self.app.progress.clone();
            let interval = self.app.config.commit_interval;
            let flag = stop.clone();
            let handle = std::thread::Builder::new()
                .name(format!(
                    "kappa-streams-{}-{}",
                    self.app.config.application_id, worker.index
                ))
                .spawn(move || {
                    // Reports a failure even when the worker panics, so waiters wake.
                    let guard = crate::runtime::StoppedOnExit(&progress);
                    let result = run_worker(&mut worker, &flag, &progress, interval);
                    match &result {
                        Err(e) => tracing::error!(error = %e, "streams worker stopped"),
                        Ok(()) => std::mem::forget(guard),
                    }
                    result
                })
                .map_err(|e| StreamsError::Worker(e.to_string()))?;
            running.push(Running {
                tasks: mine,
                stop,
                handle,
            });
        }
        lock(&self.state).running = running.iter().flat_map(|r| r.tasks.clone()).collect();
        Ok(())
    }

    /// Tasks with a running worker.
    pub(crate) fn running_tasks(&self) -> Vec<u32> {
        let mut t: Vec<u32> = lock(&self.running)
            .iter()
            .flat_map(|r| r.tasks.iter().copied())
            .collect();
        t.sort_unstable();
        t
    }

    /// Stops (after a final commit) the workers running any of `tasks`,
    /// releases `tasks` and restarts the stopped workers' other tasks.
    /// Returns the first error a stopped worker ended with.
    pub(crate) fn stop(&self, tasks: &[u32]) -> Result<(), StreamsError> {
        let _claiming = lock(&self.claiming);
        let stopping: Vec<Running> = {
            let mut running = lock(&self.running);
            let (stop, keep): (Vec<Running>, Vec<Running>) = running
                .drain(..)
                .partition(|r| r.tasks.iter().any(|t| tasks.contains(t)));
            *running = keep;
            stop
        };
        for r in &stopping {
            r.stop.store(true, Ordering::Release);
        }
        let mut first = Ok(());
        let mut restart = Vec::new();
        for r in stopping {
            restart.extend(r.tasks.iter().copied().filter(|t| !tasks.contains(t)));
            let result = r
                .handle
                .join()
                .unwrap_or_else(|_| Err(StreamsError::Worker("a worker panicked".to_owned())));
            if first.is_ok() {
                first = result;
            }
        }
        if let Err(e) = self
            .app
            .log
            .release_tasks(&self.app.config.application_id, tasks)
        {
            tracing::warn!(error = %e, "releasing tasks failed");
        }
        restart.sort_unstable();
        self.start_workers(&restart)?;
        lock(&self.state).running = self.running_tasks();
        first
    }

    /// The first error a revoked task's worker ended with, once.
    pub(crate) fn take_failure(&self) -> Option<StreamsError> {
        lock(&self.failure).take()
    }

    /// Stops every worker (after a final commit).
    pub(crate) fn stop_all(&self) -> Result<(), StreamsError> {
        let all = self.running_tasks();
        let result = self.stop(&all);
        if let Some(registry) = &self.app.registry
            && let Err(e) = registry.publish(&[], &[])
        {
            tracing::warn!(error = %e, "could not tell the registry this instance left");
        }
        result
    }
}

/// Hands group assignments to the task manager thread and stops revoked
/// tasks before returning.
pub(crate) struct Listener {
    pub(crate) tasks: Arc<Tasks>,
    pub(crate) assigned: Mutex<mpsc::Sender<Vec<u32>>>,
}

impl RebalanceListener for Listener {
    fn revoked(&self, tasks: &[u32]) {
        tracing::info!(?tasks, "tasks revoked: stopping them after a final commit");
        if let Err(e) = self.tasks.stop(tasks) {
            tracing::error!(error = %e, "a revoked task's worker had failed");
            lock(&self.tasks.failure).get_or_insert(e);
        }
    }

    fn assigned(&self, tasks: &[u32]) {
        tracing::info!(?tasks, "tasks assigned");
        *lock(&self.tasks.assigned) = tasks.to_vec();
        // The manager thread is gone only when the application is closing.
        let _ = lock(&self.assigned).send(tasks.to_vec());
    }
}

/// The task manager thread: claims and starts assigned tasks, and keeps
/// standby copies warm, until `stop`.
pub(crate) fn manage(
    tasks: &Tasks,
    assigned: &mpsc::Receiver<Vec<u32>>,
    stop: &AtomicBool,
) -> Result<(), StreamsError> {
    let standby = tasks.app.config.num_standby_replicas > 0;
    let mut next_warm = Instant::now();
    let mut unheld_since: Option<Instant> = None;
    while !stop.load(Ordering::Acquire) {
        match assigned.recv_timeout(Duration::from_millis(100)) {
            Ok(list) => {
                // A later assignment replaces an earlier one still queued.
                let mut list = list;
                while let Ok(newer) = assigned.try_recv() {
                    list = newer;
                }
                let running = tasks.running_tasks();
                let new: Vec<u32> = list.into_iter().filter(|t| !running.contains(t)).collect();
                tasks.claim_and_start(&new)?;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        }
        // Some brokers (tansu 0.6) evict a dead member only when another
        // joins, or tell only one member that a member left: tasks can be
        // left with no live holder. When the registry shows that for a
        // while, rejoin (which makes the broker redo the assignment).
        if let Some(registry) = &tasks.app.registry {
            let mine = lock(&tasks.assigned).clone();
            let unheld = registry.unheld(&mine, tasks.app.plan.partitions);
            if unheld.is_empty() {
                unheld_since = None;
            } else {
                let first = *unheld_since.get_or_insert_with(Instant::now);
                if first.elapsed() >= REJOIN_AFTER {
                    tracing::warn!(?unheld, "tasks have no live holder: rejoining the group");
                    if let Some(m) = lock(&tasks.membership).as_ref() {
                        m.rejoin();
                    }
                    unheld_since = None;
                }
            }
        }
        if standby && Instant::now() >= next_warm {
            let running = tasks.running_tasks();
            let others: Vec<u32> = (0..tasks.app.plan.partitions)
                .filter(|t| !running.contains(t))
                .collect();
            let changelogs = tasks.changelogs(&others);
            match tasks.app.log.warm_changelogs(&changelogs) {
                Ok(n) if n > 0 => tracing::debug!(records = n, "standby copies warmed"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "warming standby copies failed"),
            }
            next_warm = Instant::now() + STANDBY_INTERVAL;
        }
    }
    Ok(())
}

/// How long tasks may look unheld before this instance rejoins its group.
const REJOIN_AFTER: Duration = Duration::from_secs(10);

/// How often standby copies are brought up to date.
const STANDBY_INTERVAL: Duration = Duration::from_secs(1);
