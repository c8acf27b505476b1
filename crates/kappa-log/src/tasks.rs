//! Task ownership: which process of a group runs which task (partition
//! index of co-partitioned inputs), and how the owner learns of changes.
//!
//! On a log only one process uses (the embedded log), that process owns
//! every task. On a shared log (Kafka) the processes of a group split the
//! tasks between them and move them when processes join or leave; the
//! log calls a [`RebalanceListener`] around each move.

use std::sync::Arc;

/// The compacted topic in which a backend that keeps metadata in topics
/// (Kafka) keeps `group`'s per-task metadata: its positions and the
/// keys declared for it ([`crate::Log::declare_changelog`]), partition
/// `p` belonging to task `p` (so only the task's holder writes it).
pub fn task_changelog(group: &str) -> String {
    format!("kappa-tasks-{group}-changelog")
}

/// Told when tasks move to or away from this process.
///
/// `revoked` is called before another process may be given the tasks:
/// it must return only once nothing more is processed or committed for
/// them. `assigned` should return promptly (hand the work to another
/// thread); the tasks are this process's until the next `revoked`.
pub trait RebalanceListener: Send + Sync {
    /// The tasks are about to move away.
    fn revoked(&self, tasks: &[u32]);
    /// The tasks are now this process's.
    fn assigned(&self, tasks: &[u32]);
}

/// A process's place in a group; dropping it leaves the group (the log
/// calls `revoked` for the tasks held first).
pub trait GroupMembership: Send + Sync {
    /// Leaves and joins again, so the group assigns its tasks anew (for
    /// when the group is known to have left tasks unassigned).
    fn rejoin(&self) {}
}

/// The membership of a log that only one process uses: every task, always.
pub struct SoleMember {
    tasks: u32,
    listener: Arc<dyn RebalanceListener>,
}

impl SoleMember {
    /// Gives `listener` all `tasks` tasks at once.
    pub fn join(tasks: u32, listener: Arc<dyn RebalanceListener>) -> Self {
        listener.assigned(&(0..tasks).collect::<Vec<_>>());
        Self { tasks, listener }
    }
}

impl GroupMembership for SoleMember {}

impl Drop for SoleMember {
    fn drop(&mut self) {
        self.listener.revoked(&(0..self.tasks).collect::<Vec<_>>());
    }
}
