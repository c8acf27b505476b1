//! Restoring the metadata copy: changelog partitions read to their ends.

use super::*;

impl KafkaLog {
    /// Reads partitions from the given offsets to their ends: at least to
    /// the end the leader reports now, and on until a read finds nothing
    /// more (some brokers under-report the end). `rewind` as in
    /// [`crate::read::Reader::read`].
    pub(super) fn read_to_end(
        &self,
        tps: &[(TopicPartition, u64)],
        rewind: bool,
        mut each: impl FnMut(&[Record], &[u64]) -> Result<(), LogError>,
    ) -> Result<(), LogError> {
        let mut from = tps.to_vec();
        if from.is_empty() {
            return Ok(());
        }
        let mut ends = Vec::with_capacity(from.len());
        for (tp, _) in &from {
            ends.push(self.readers.with(&[], |r| r.watermarks(tp))?.1);
        }
        let mut out = Vec::new();
        let mut empty_waits = 0;
        loop {
            let reached = from.iter().zip(&ends).all(|((_, at), end)| at >= end);
            // Below the reported ends records exist: wait for them (a
            // reused reader's end reports can be older than they are).
            let limits = FetchLimits {
                records_max: RESTORE_BATCH,
                wait_max: if reached { Duration::ZERO } else { END_WAIT },
                ..FetchLimits::default()
            };
            out.clear();
            let outcome = self
                .readers
                .with(&from, |r| r.read(&from, limits, &mut out, true, rewind))?;
            each(&out, &outcome.next_offsets)?;
            for ((_, at), next) in from.iter_mut().zip(&outcome.next_offsets) {
                *at = *next;
            }
            if outcome.records > 0 {
                empty_waits = 0;
                continue;
            }
            if reached {
                return Ok(());
            }
            // Offsets below the reported end that hold nothing readable
            // (another producer's transaction markers) end the read too.
            empty_waits += 1;
            if empty_waits >= END_WAITS_MAX {
                return Ok(());
            }
        }
    }

    /// Copies changelog partitions into the cache from their checkpoints.
    pub(super) fn restore(&self, tps: &[TopicPartition]) -> Result<u64, LogError> {
        let _restoring = lock(&self.restoring);
        let mut from = Vec::with_capacity(tps.len());
        for tp in tps {
            let (low, _) = self.readers.with(&[], |r| r.watermarks(tp))?;
            from.push((tp.clone(), self.cache.checkpoint(tp)?.max(low)));
        }
        let mut applied = 0u64;
        let mut changes = Vec::new();
        self.read_to_end(&from, true, |records, next| {
            changes.clear();
            let own = lock(&self.own_metadata);
            for r in records {
                if let Some(k) = &r.key {
                    // This instance wrote the key later: that value stands.
                    if *r.topic == *METADATA_TOPIC && own.get(k).is_some_and(|at| *at > r.offset) {
                        continue;
                    }
                    changes.push((k.clone(), r.value.clone()));
                }
            }
            drop(own);
            applied += records.len() as u64;
            let checkpoints: Vec<(TopicPartition, u64)> = from
                .iter()
                .zip(next)
                .map(|((tp, _), n)| (tp.clone(), *n))
                .collect();
            self.cache.apply(&changes, &checkpoints)
        })?;
        Ok(applied)
    }
}
