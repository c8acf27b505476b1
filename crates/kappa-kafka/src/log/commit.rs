//! The commit path: a commit checked and routed (`plan`), then written
//! ahead or in a transaction, then its metadata applied (`commit_planned`).

use super::*;

/// A checked commit: records with fixed destinations (outputs first, then
/// metadata changelog records) and the metadata changes themselves.
pub(super) struct Planned {
    pub(super) records: Vec<Outgoing>,
    pub(super) outputs: usize,
    pub(super) changes: Vec<(Bytes, Option<Bytes>)>,
}

impl KafkaLog {
    /// The changelog partition a metadata key belongs to.
    pub(super) fn route(&self, key: &[u8]) -> TopicPartition {
        // A task's positions go with the task (one writer: its holder).
        if let Some(rest) = key.strip_prefix(GROUPS_PREFIX)
            && let Some((group, tp)) = parse_group_key(rest)
            && let Some((topic, n)) = self
                .task_groups
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&group)
            && tp.partition < *n
        {
            return TopicPartition::new(topic.clone(), tp.partition);
        }
        let routes = self
            .routes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (prefix, topic) in routes.iter() {
            if let Some(rest) = key.strip_prefix(prefix.as_slice())
                && let Some(p) = rest.get(..4)
                && let Ok(p) = <[u8; 4]>::try_from(p)
            {
                return TopicPartition::new(topic.clone(), u32::from_be_bytes(p));
            }
        }
        TopicPartition::new(METADATA_TOPIC, 0)
    }

    pub(super) fn partition_for(&self, topic: &str, n: u32, record: &ProducerRecord) -> u32 {
        match &record.key {
            Some(k) => kappa_log::partition_for_key(k, n),
            None => {
                let mut rr = lock(&self.round_robin);
                let next = rr.entry(topic.to_owned()).or_insert(0);
                let p = *next % n;
                *next = next.wrapping_add(1);
                p
            }
        }
    }

    /// Checks a commit and fixes every record's destination. Nothing is
    /// written when any part is invalid.
    pub(super) fn plan(&self, commit: Commit) -> Result<Planned, LogError> {
        let now = kappa_log::now_ms();
        let mut records = Vec::with_capacity(commit.record_count() + commit.metadata.len());
        for append in commit.appends {
            let n = self.partition_count(&append.topic)?;
            let config = self.topic_config(&append.topic)?;
            for mut record in append.records {
                let partition = match append.partition {
                    Some(p) => {
                        self.check_partition(&append.topic, p)?;
                        p
                    }
                    None => self.partition_for(&append.topic, n, &record),
                };
                let size = record.encoded_len();
                if size > config.max_record_bytes as usize {
                    return Err(LogError::RecordTooLarge {
                        topic: append.topic.to_string(),
                        size,
                        max: config.max_record_bytes,
                    });
                }
                if config.cleanup_policy == CleanupPolicy::Compact && record.key.is_none() {
                    return Err(LogError::MissingKey(append.topic.to_string()));
                }
                record.timestamp.get_or_insert(now);
                records.push(Outgoing {
                    topic: append.topic.clone(),
                    partition,
                    record,
                });
            }
        }
        let outputs = records.len();
        let mut changes = Vec::with_capacity(commit.metadata.len() + commit.group_positions.len());
        for gp in commit.group_positions {
            kappa_log::check_group_name(&gp.group)?;
            self.check_partition(&gp.partition.topic, gp.partition.partition)?;
            changes.push((
                Bytes::from(group_key(&gp.group, &gp.partition)),
                Some(Bytes::copy_from_slice(&gp.offset.to_be_bytes())),
            ));
        }
        for (k, v) in commit.metadata {
            if k.is_empty() || k.len() > METADATA_KEY_BYTES_MAX {
                return Err(LogError::InvalidConfig(format!(
                    "metadata keys are 1 to {METADATA_KEY_BYTES_MAX} bytes; got {}",
                    k.len()
                )));
            }
            changes.push((k, v));
        }
        for (k, v) in &changes {
            let tp = self.route(k);
            records.push(Outgoing {
                topic: tp.topic,
                partition: tp.partition,
                record: ProducerRecord {
                    key: Some(k.clone()),
                    value: v.clone(),
                    headers: Vec::new(),
                    timestamp: Some(now),
                },
            });
        }
        Ok(Planned {
            records,
            outputs,
            changes,
        })
    }

    /// A lower bound of the end of each partition in `records`.
    pub(super) fn bounds(
        &self,
        records: &[Outgoing],
    ) -> Result<Vec<(TopicPartition, u64)>, LogError> {
        let mut tps: Vec<TopicPartition> = records
            .iter()
            .map(|o| TopicPartition::new(o.topic.clone(), o.partition))
            .collect();
        tps.sort();
        tps.dedup();
        let mut out = Vec::with_capacity(tps.len());
        for tp in tps {
            let known = lock(&self.known_end).get(&tp).copied();
            let at = match known {
                Some(at) => at,
                None => {
                    let (_, high) = self.readers.with(&[], |r| r.watermarks(&tp))?;
                    lock(&self.known_end).insert(tp.clone(), high);
                    high
                }
            };
            out.push((tp, at));
        }
        Ok(out)
    }

    /// `entry`'s chunks, bound for `slot`'s partition of its commit topic.
    pub(super) fn chunk_records(&self, slot: &Slot, entry: &Entry) -> Vec<Outgoing> {
        entry
            .chunks()
            .into_iter()
            .map(|record| Outgoing {
                topic: slot.topic.clone(),
                partition: slot.partition,
                record,
            })
            .collect()
    }

    /// Writes each entry ahead on its slot, then produces them all (one
    /// produce round each); returns each entry's records' offsets.
    pub(super) fn write_ahead(
        &self,
        items: &mut [(Slot, Entry)],
    ) -> Result<Vec<Vec<Option<u64>>>, LogError> {
        let chunks: Vec<Vec<Outgoing>> = items
            .iter()
            .map(|(slot, entry)| self.chunk_records(slot, entry))
            .collect();
        let parts: Vec<&[Outgoing]> = chunks.iter().map(Vec::as_slice).collect();
        for (slot, entry) in items.iter_mut() {
            slot.next_seq = entry.seq + 1;
        }
        self.senders.with(|s| s.send_parts(&parts, &|_| None))?;
        // Where each entry's records start in the concatenation.
        let mut starts = Vec::with_capacity(items.len());
        let mut total = 0;
        for (_, entry) in items.iter() {
            starts.push(total);
            total += entry.records.len();
        }
        let parts: Vec<&[Outgoing]> = items.iter().map(|(_, e)| e.records.as_slice()).collect();
        let tags: Vec<Tags<'_>> = items
            .iter()
            .map(|(slot, entry)| Tags::new(&slot.writer, slot.partition, entry))
            .collect();
        let offsets = self.senders.with(|s| {
            s.send_parts(&parts, &|i| {
                let n = starts.partition_point(|start| *start <= i) - 1;
                Some(tags[n].of(i - starts[n]))
            })
        })?;
        let mut out = Vec::with_capacity(items.len());
        let mut rest = &offsets[..];
        for (_, entry) in items.iter() {
            let (mine, after) = rest.split_at(entry.records.len().min(rest.len()));
            out.push(mine.iter().copied().map(Some).collect());
            rest = after;
        }
        Ok(out)
    }

    /// Commits each task's records in a transaction of its producer, the
    /// tasks side by side; returns each entry's records' offsets where the
    /// broker reported them.
    pub(super) fn write_transactions(
        items: &mut [((u32, Sender), Entry)],
    ) -> Result<Vec<Vec<Option<u64>>>, LogError> {
        let transact =
            |((_, sender), entry): &((u32, Sender), Entry)| sender.transact(&entry.records);
        if let [one] = items {
            return Ok(vec![transact(one)?]);
        }
        std::thread::scope(|scope| {
            let running: Vec<_> = items
                .iter()
                .map(|item| scope.spawn(move || transact(item)))
                .collect();
            running
                .into_iter()
                .map(|t| {
                    t.join().unwrap_or_else(|_| {
                        Err(LogError::Broker(
                            "a transaction's thread panicked".to_owned(),
                        ))
                    })
                })
                .collect()
        })
    }

    /// Commits checked commits, each with its writer: `write` makes them
    /// durable (returning each record's offset where known), then their
    /// metadata is applied to the cache. Gives each writer back to
    /// `put_back` (`false`: its commit's fate is unknown, so the writer
    /// must not be used again until its task or slot is recovered).
    pub(super) fn commit_planned<W>(
        &self,
        batch: Vec<(Planned, W)>,
        seq_of: impl Fn(&W) -> u64,
        write: impl FnOnce(&mut [(W, Entry)]) -> Result<Vec<Vec<Option<u64>>>, LogError>,
        put_back: impl Fn(W, bool),
    ) -> Result<Vec<CommitReceipt>, LogError> {
        let flight = self.next_flight.fetch_add(1, Ordering::Relaxed);
        let mut items = Vec::with_capacity(batch.len());
        let mut metas = Vec::with_capacity(batch.len());
        let mut changelog_bounds: Vec<(TopicPartition, u64)> = Vec::new();
        let mut failed = None;
        for (planned, slot) in batch {
            let bounds = match self.bounds(&planned.records) {
                Ok(b) => b,
                Err(e) => {
                    failed = Some(e);
                    put_back(slot, true);
                    continue;
                }
            };
            // Shared metadata is never checkpointed by writing: other
            // instances write it too (it is caught up by reading).
            changelog_bounds.extend(
                bounds
                    .iter()
                    .filter(|(tp, _)| {
                        *tp.topic != *METADATA_TOPIC
                            && planned.records[planned.outputs..]
                                .iter()
                                .any(|o| o.topic == tp.topic && o.partition == tp.partition)
                    })
                    .cloned(),
            );
            let entry = Entry {
                seq: seq_of(&slot),
                records: planned.records,
                bounds,
            };
            metas.push((planned.outputs, planned.changes));
            items.push((slot, entry));
        }
        if let Some(e) = failed {
            for (slot, _) in items {
                put_back(slot, true);
            }
            return Err(e);
        }
        lock(&self.in_flight).insert(flight, changelog_bounds.clone());
        let offsets = match write(&mut items) {
            Ok(o) => o,
            Err(e) => {
                // The commits may yet happen (when their slots are
                // recovered): their changelog records must stay above
                // every checkpoint, so the flight stays registered.
                for (slot, _) in items {
                    put_back(slot, false);
                }
                return Err(e);
            }
        };
        // Remember ends, and never checkpoint past a commit still producing.
        let mut ends: HashMap<TopicPartition, u64> = HashMap::new();
        let mut all_changes = Vec::new();
        let mut receipts = Vec::with_capacity(items.len());
        {
            let mut own = lock(&self.own_metadata);
            for (((_, entry), at), (outputs, changes)) in items.iter().zip(&offsets).zip(metas) {
                for (o, at) in entry.records.iter().zip(at) {
                    let Some(at) = at else { continue };
                    let e = ends
                        .entry(TopicPartition::new(o.topic.clone(), o.partition))
                        .or_insert(0);
                    *e = (*e).max(at + 1);
                }
                for ((k, _), (o, at)) in changes
                    .iter()
                    .zip(entry.records[outputs..].iter().zip(&at[outputs..]))
                {
                    if *o.topic == *METADATA_TOPIC
                        && let Some(at) = at
                    {
                        own.insert(k.clone(), *at);
                    }
                }
                all_changes.extend(changes);
                receipts.push(CommitReceipt {
                    positions: entry.records[..outputs]
                        .iter()
                        .zip(at)
                        .filter_map(|(o, at)| {
                            Some(Position {
                                topic: o.topic.clone(),
                                partition: o.partition,
                                offset: (*at)?,
                            })
                        })
                        .collect(),
                });
            }
        }
        for (slot, _) in items {
            put_back(slot, true);
        }
        {
            let mut known = lock(&self.known_end);
            for (tp, end) in &ends {
                let k = known.entry(tp.clone()).or_insert(0);
                *k = (*k).max(*end);
            }
        }
        let checkpoints: Vec<(TopicPartition, u64)> = {
            let flights = lock(&self.in_flight);
            let mut tps: Vec<&TopicPartition> = changelog_bounds.iter().map(|(tp, _)| tp).collect();
            tps.sort();
            tps.dedup();
            // A partition whose offsets the broker did not report keeps its
            // checkpoint: the next restore reads those records again.
            tps.into_iter()
                .filter_map(|tp| {
                    let other = flights
                        .iter()
                        .filter(|(id, _)| **id != flight)
                        .flat_map(|(_, b)| b.iter())
                        .filter(|(t, _)| t == tp)
                        .map(|(_, b)| *b)
                        .min();
                    let mine = ends.get(tp).copied()?;
                    Some((tp.clone(), other.map_or(mine, |o| o.min(mine))))
                })
                .collect()
        };
        // Still registered until its changes are in the cache: a commit
        // finishing meanwhile must not checkpoint past this one's records.
        // (If applying fails it stays registered, which is safe.)
        self.cache.apply(&all_changes, &checkpoints)?;
        lock(&self.in_flight).remove(&flight);
        self.offsets.mirror(all_changes.iter().filter_map(|(k, v)| {
            let (group, tp) = parse_group_key(k.strip_prefix(GROUPS_PREFIX)?)?;
            let offset = u64::from_be_bytes(<[u8; 8]>::try_from(v.as_deref()?).ok()?);
            Some((group, tp, offset))
        }));
        Ok(receipts)
    }
}
