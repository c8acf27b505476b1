//! Write-ahead slots: recovering a slot's last entry, and the pool of
//! slots commits take and give back.

use super::*;

impl KafkaLog {
    /// Reads the end of a write-ahead slot: finishes its last entry if it
    /// is complete, and returns the slot positioned after it.
    pub(super) fn recover_slot(
        &self,
        topic: Arc<str>,
        writer: Arc<str>,
        partition: u32,
    ) -> Result<Slot, LogError> {
        let tp = TopicPartition::new(topic.clone(), partition);
        let (low, high) = self.readers.with(&[], |r| r.watermarks(&tp))?;
        let mut slot = Slot {
            topic,
            writer,
            partition,
            next_seq: 0,
        };
        if high <= low {
            return Ok(slot);
        }
        let mut last: Option<Record> = None;
        // Where tansu puts the end: the first record of the last batch.
        self.read_to_end(&[(tp.clone(), high - 1)], false, |records, _| {
            if let Some(r) = records.last() {
                last = Some(r.clone());
            }
            Ok(())
        })?;
        let Some(last) = last else {
            return Ok(slot);
        };
        let header = last
            .value
            .as_deref()
            .and_then(ChunkHeader::parse)
            .ok_or_else(|| {
                LogError::CorruptMetadata(format!(
                    "{} holds a record that is not a write-ahead chunk",
                    last.position()
                ))
            })?;
        slot.next_seq = header.seq + 1;
        if !header.is_last() {
            // Cut short while being written: that commit never happened.
            return Ok(slot);
        }
        let first = last.offset - u64::from(header.part);
        let mut chunks = Vec::new();
        // An entry's chunks are produced alone, after the previous entry's
        // were acknowledged: the first starts a batch.
        self.read_to_end(&[(tp, first)], false, |records, _| {
            for r in records {
                if chunks.len() < header.parts as usize {
                    chunks.push(r.value.clone().unwrap_or_default());
                }
            }
            Ok(())
        })?;
        if let Some(entry) = Entry::decode(&chunks)? {
            self.finish(&entry, &slot.writer, partition)?;
        }
        Ok(slot)
    }

    /// Produces what of `entry` is not yet in its destinations.
    pub(super) fn finish(&self, entry: &Entry, writer: &str, slot: u32) -> Result<(), LogError> {
        let instance = writer;
        let mut found: HashSet<usize> = HashSet::new();
        let from: Vec<(TopicPartition, u64)> = entry.bounds.clone();
        self.read_to_end(&from, true, |records, _| {
            for r in records {
                if let Some(v) = r.header(COMMIT_HEADER)
                    && let Some((s, seq, index)) = writeahead::parse_commit_id(instance, v)
                    && s == slot
                    && seq == entry.seq
                {
                    found.insert(index);
                }
            }
            Ok(())
        })?;
        let (missing, indexes): (Vec<Outgoing>, Vec<usize>) = entry
            .records
            .iter()
            .enumerate()
            .filter(|(i, _)| !found.contains(i))
            .map(|(i, o)| (o.clone(), i))
            .unzip();
        if !missing.is_empty() {
            let tags = writeahead::Tags::new(instance, slot, entry);
            self.senders
                .with(|s| s.send_all(&missing, &|i| Some(tags.of(indexes[i]))))?;
        }
        let mut stats = lock(&self.restore);
        stats.redone_entries += 1;
        stats.redone_records += missing.len() as u64;
        tracing::info!(
            writer,
            slot,
            seq = entry.seq,
            missing = missing.len(),
            "finished a write-ahead entry"
        );
        Ok(())
    }

    pub(super) fn put_back_slot(&self, slot: Slot, ok: bool) {
        if ok {
            self.put_slot(slot);
        } else {
            self.retire_slot(slot);
        }
    }

    pub(super) fn take_slot(&self) -> Result<Slot, LogError> {
        let mut slots = lock(&self.slots);
        loop {
            if let Some(s) = slots.idle.pop() {
                return Ok(s);
            }
            if slots.retired == COMMIT_SLOTS {
                return Err(LogError::Broker(
                    "every write-ahead slot had a commit fail; reopen the log to finish them"
                        .to_owned(),
                ));
            }
            slots = self
                .slot_free
                .wait(slots)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    pub(super) fn put_slot(&self, slot: Slot) {
        lock(&self.slots).idle.push(slot);
        self.slot_free.notify_one();
    }

    /// Takes a slot out of use after a commit on it failed: whether its
    /// entry was stored is unknown, so only the next start may decide
    /// (by reading the slot's end) and finish it.
    pub(super) fn retire_slot(&self, slot: Slot) {
        tracing::error!(
            slot = slot.partition,
            seq = slot.next_seq,
            "a commit failed; its write-ahead slot is retired until the log is reopened"
        );
        lock(&self.slots).retired += 1;
        self.slot_free.notify_all();
    }
}
