//! A group's tasks: their commit topic and changelog, and claiming them.

use super::*;

impl KafkaLog {
    /// The commit topic of `group`'s task slots, made with `tasks`
    /// partitions when missing.
    pub(super) fn task_topic(&self, group: &str, tasks: u32) -> Result<Arc<str>, LogError> {
        kappa_log::check_group_name(group)?;
        let topic = format!("{TASKS_TOPIC_PREFIX}{group}");
        kappa_log::validate_topic_name(&topic)?;
        let spec =
            TopicSpec::new(topic.as_str(), tasks.max(1)).with_retention_ms(COMMIT_RETENTION_MS);
        match self.partition_count(&topic) {
            Ok(n) if n == spec.partitions => {}
            Ok(n) => {
                return Err(LogError::InvalidConfig(format!(
                    "{topic:?} has {n} partitions but group {group:?} has {tasks} tasks; reset the application"
                )));
            }
            Err(LogError::UnknownTopic(_)) => {
                match self.topics.create(&spec) {
                    Ok(()) | Err(LogError::TopicExists(_)) => {}
                    Err(e) => return Err(e),
                }
                self.partitions
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(topic.clone(), spec.partitions);
            }
            Err(e) => return Err(e),
        }
        let changelog = kappa_log::task_changelog(group);
        match self.create_topic(&TopicSpec::new(changelog.as_str(), spec.partitions).compacted()) {
            Ok(()) => {}
            Err(LogError::TopicExists(_)) => {
                let n = self.partition_count(&changelog)?;
                if n != spec.partitions {
                    return Err(LogError::InvalidConfig(format!(
                        "{changelog:?} has {n} partitions but group {group:?} has {tasks} tasks; reset the application"
                    )));
                }
            }
            Err(e) => return Err(e),
        }
        self.task_groups
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(group.to_owned(), (changelog.into(), spec.partitions));
        Ok(topic.into())
    }

    pub(super) fn forget_group_positions_of(&self, topic: &str) -> Result<(), LogError> {
        let mut commit = Commit::new();
        let mut after: Option<Bytes> = None;
        loop {
            let page = self.cache.page(GROUPS_PREFIX, after.as_deref(), 1024)?;
            let Some(last) = page.last() else {
                break;
            };
            after = Some(last.0.clone());
            for (k, _) in &page {
                if parse_group_key(&k[GROUPS_PREFIX.len()..])
                    .is_some_and(|(_, tp)| *tp.topic == *topic)
                {
                    commit.delete_metadata(k.clone());
                }
            }
        }
        commit.delete_metadata(topics_key(topic));
        self.commit(commit).map(|_| ())
    }

    /// Claims `tasks` of `group`: finishes their write-ahead slots, starts
    /// their transactional producers (fencing the last holder) when the
    /// group commits by transactions, and restores their state.
    pub(super) fn claim(
        &self,
        group: &str,
        tasks: &[u32],
        changelogs: &[TopicPartition],
    ) -> Result<(), LogError> {
        let count = tasks.iter().max().map_or(1, |m| m + 1);
        // Made by joining the group, or by an earlier claim of all tasks.
        let n = match self.partition_count(&format!("{TASKS_TOPIC_PREFIX}{group}")) {
            Ok(n) if n >= count => n,
            _ => count,
        };
        let topic = self.task_topic(group, n)?;
        let writer: Arc<str> = format!("@{group}").into();
        let mut slots = Vec::with_capacity(tasks.len());
        for &task in tasks {
            self.check_partition(&topic, task)?;
            // Finishes what a write-ahead holder left, also when the group
            // now commits by transactions.
            slots.push(self.recover_slot(topic.clone(), writer.clone(), task)?);
        }
        let writers: Vec<(u32, TaskWriter)> = if self.config.transactional() {
            // Before the state is read: initialising a task's producer
            // fences its last holder and aborts its open transaction.
            let config = &self.config;
            std::thread::scope(|scope| {
                let starting: Vec<_> = tasks
                    .iter()
                    .map(|&task| {
                        scope.spawn(move || {
                            let id = task_transactional_id(group, task);
                            Sender::transactional(config, &id)
                                .map(|s| (task, TaskWriter::Transactional(s)))
                        })
                    })
                    .collect();
                starting
                    .into_iter()
                    .map(|t| {
                        t.join().unwrap_or_else(|_| {
                            Err(LogError::Broker(
                                "a task's producer thread panicked".to_owned(),
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, LogError>>()
            })?
        } else {
            slots
                .into_iter()
                .map(|slot| (slot.partition, TaskWriter::Ahead(slot)))
                .collect()
        };
        let mut tps = changelogs.to_vec();
        tps.push(TopicPartition::new(METADATA_TOPIC, 0));
        let started = Instant::now();
        let records = self.restore(&tps)?;
        {
            let mut stats = lock(&self.restore);
            stats.records += records;
            stats.seconds += started.elapsed().as_secs_f64();
        }
        tracing::info!(
            group,
            ?tasks,
            records,
            seconds = started.elapsed().as_secs_f64(),
            "tasks claimed: their state is restored"
        );
        // The last holder may have committed positions and stopped before
        // copying them to the group's Kafka offsets (killed or frozen in
        // between). A task with nothing new to read would never commit
        // again, so Kafka's tools would show that stale lag for good:
        // the new holder copies what it took over.
        let taken_over: Vec<(String, TopicPartition, u64)> = self
            .group_positions(group)?
            .into_iter()
            .filter(|(tp, _)| tasks.contains(&tp.partition))
            .map(|(tp, offset)| (group.to_owned(), tp, offset))
            .collect();
        self.offsets.mirror(taken_over);
        let mut held = lock(&self.task_writers);
        for (task, writer) in writers {
            held.insert((group.to_owned(), task), writer);
        }
        Ok(())
    }
}
