//! Group membership: a Kafka consumer group decides which instance holds
//! which task.
//!
//! Each instance of an application joins the consumer group named after
//! it, subscribed to the group's task-slot topic (`kappa-tasks-<group>`,
//! one partition per task): the partitions the group assigns are the
//! tasks the instance holds. The `range` assignor's eager protocol
//! revokes every task before reassigning, so a task is never held twice
//! while instances behave; the assigned partitions are paused at once, as
//! the group is only used to agree on ownership (records are read through
//! the log's own readers). A poll thread serves the group's callbacks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kappa_log::{GroupMembership, LogError, RebalanceListener};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientConfig, ClientContext, TopicPartitionList};

use crate::client;
use crate::config::KafkaConfig;

/// How long a member may go without heartbeats before the group gives
/// its tasks to the others (unless the operator sets `session.timeout.ms`).
const SESSION_TIMEOUT_MS: &str = "6000";
const HEARTBEAT_INTERVAL_MS: &str = "1000";
/// How long leaving waits for the group to revoke the tasks.
const LEAVE_WAIT: Duration = Duration::from_secs(10);

/// A member consumer's context: tells the listener when tasks move.
pub(crate) struct GroupContext {
    listener: Arc<dyn RebalanceListener>,
    held: Mutex<Vec<u32>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn tasks_of(tpl: &TopicPartitionList) -> Vec<u32> {
    let mut tasks: Vec<u32> = tpl
        .elements()
        .iter()
        .filter_map(|e| u32::try_from(e.partition()).ok())
        .collect();
    tasks.sort_unstable();
    tasks
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let tasks = tasks_of(tpl);
            lock(&self.held).retain(|t| !tasks.contains(t));
            // Returns once the tasks are stopped: only then may the group
            // give them to another instance.
            self.listener.revoked(&tasks);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                if let Err(e) = consumer.pause(tpl) {
                    tracing::warn!(error = %e, "could not pause the task-slot partitions");
                }
                let tasks = tasks_of(tpl);
                lock(&self.held).clone_from(&tasks);
                self.listener.assigned(&tasks);
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "group rebalance failed"),
        }
    }
}

/// This instance's membership of a group; dropping it leaves the group.
pub(crate) struct Member {
    /// Shared with the poll thread; also commits the group's offsets
    /// (`crate::offsets`), with this member's generation.
    consumer: Arc<BaseConsumer<GroupContext>>,
    stop: Arc<AtomicBool>,
    rejoin: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Member {
    pub(crate) fn join(
        config: &KafkaConfig,
        group: &str,
        topic: &str,
        listener: Arc<dyn RebalanceListener>,
    ) -> Result<Self, LogError> {
        let mut c = ClientConfig::new();
        c.set("session.timeout.ms", SESSION_TIMEOUT_MS)
            .set("heartbeat.interval.ms", HEARTBEAT_INTERVAL_MS);
        // The operator's settings (passthrough) win over the defaults above.
        for (k, v) in client::base(config).config_map() {
            c.set(k, v);
        }
        c.set("group.id", group)
            .set("client.id", format!("kappa-{}-{}", group, config.instance))
            .set("partition.assignment.strategy", "range")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "latest")
            .set("allow.auto.create.topics", "false");
        let context = GroupContext {
            listener: listener.clone(),
            held: Mutex::new(Vec::new()),
        };
        let consumer: Arc<BaseConsumer<GroupContext>> = Arc::new(
            c.create_with_context(context)
                .map_err(|e| client::broker("joining the group", &e))?,
        );
        consumer
            .subscribe(&[topic])
            .map_err(|e| client::broker("subscribing to the task topic", &e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let rejoin = Arc::new(AtomicBool::new(false));
        let (flag, again) = (stop.clone(), rejoin.clone());
        let (group_name, topic_name) = (group.to_owned(), topic.to_owned());
        let polled = consumer.clone();
        let thread = std::thread::Builder::new()
            .name(format!("kappa-group-{group}"))
            .spawn(move || {
                poll(&polled, &flag, &again, &*listener, &group_name, &topic_name);
            })
            .map_err(|e| LogError::Broker(format!("starting the group thread: {e}")))?;
        tracing::info!(group, topic, "joined the group");
        Ok(Self {
            consumer,
            stop,
            rejoin,
            thread: Some(thread),
        })
    }

    /// The member's consumer.
    pub(crate) fn consumer(&self) -> &Arc<BaseConsumer<GroupContext>> {
        &self.consumer
    }
}

/// Serves the group's callbacks until `stop`, then leaves the group.
fn poll(
    consumer: &BaseConsumer<GroupContext>,
    stop: &AtomicBool,
    rejoin: &AtomicBool,
    listener: &dyn RebalanceListener,
    group: &str,
    topic: &str,
) {
    while !stop.load(Ordering::Acquire) {
        // Records never arrive (the partitions are paused); this serves
        // heartbeats' results and rebalances.
        if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
            tracing::debug!(group, error = %e, "group consumer");
        }
        if rejoin.swap(false, Ordering::AcqRel) {
            tracing::warn!(group, "rejoining the group: its tasks are not all assigned");
            leave(consumer, listener);
            if let Err(e) = consumer.subscribe(&[topic]) {
                tracing::error!(group, error = %e, "could not rejoin the group");
            }
        }
    }
    leave(consumer, listener);
    tracing::info!(group, "left the group");
}

/// Leaves the group: it revokes our tasks (the listener stops them) and
/// gives them to the others at once instead of after a session timeout.
fn leave(consumer: &BaseConsumer<GroupContext>, listener: &dyn RebalanceListener) {
    consumer.unsubscribe();
    let deadline = Instant::now() + LEAVE_WAIT;
    while !lock(&consumer.context().held).is_empty() && Instant::now() < deadline {
        let _ = consumer.poll(Duration::from_millis(100));
    }
    let left = std::mem::take(&mut *lock(&consumer.context().held));
    if !left.is_empty() {
        // The group did not answer: stop the tasks anyway.
        listener.revoked(&left);
    }
}

impl GroupMembership for Member {
    fn rejoin(&self) {
        self.rejoin.store(true, Ordering::Release);
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
