//! `Idempotency-Key`: a retried request returns the first one's command.
//!
//! The index (a view of the log) remembers every key with its command, so
//! keys survive restarts. It lags the write by a commit interval, so this
//! module holds the keys in flight and those written but not yet indexed;
//! they are dropped once the index has caught up with them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use kappa_log::TopicPartition;

use crate::index::Stored;

enum Slot {
    /// A request with this key is being handled.
    Pending,
    /// Written at this position, maybe not indexed yet.
    Written { stored: Stored, at_ms: i64 },
}

/// What a request with an idempotency key should do.
pub(crate) enum Claim {
    /// Go ahead (after checking the index); finish or drop the guard.
    Mine(ClaimGuard),
    /// The key was used, for this command.
    Written(Stored),
    /// Another request with the key is still being handled.
    InFlight,
}

/// Keys in flight or not yet indexed.
#[derive(Clone, Default)]
pub(crate) struct Idempotency {
    slots: Arc<Mutex<HashMap<String, Slot>>>,
}

/// Held while a request owns its key; dropping it without `finish` frees the key.
pub(crate) struct ClaimGuard {
    key: Option<String>,
    slots: Arc<Mutex<HashMap<String, Slot>>>,
}

fn lock(m: &Mutex<HashMap<String, Slot>>) -> MutexGuard<'_, HashMap<String, Slot>> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sweep the written-and-indexed keys once the table holds this many.
const SWEEP_AT: usize = 4096;

impl Idempotency {
    /// Claims `key`, unless it is in flight or was written within `window_ms`.
    pub(crate) fn claim(&self, key: &str, now_ms: i64, window_ms: i64) -> Claim {
        let mut slots = lock(&self.slots);
        match slots.get(key) {
            Some(Slot::Pending) => return Claim::InFlight,
            Some(Slot::Written { stored, at_ms }) if *at_ms >= now_ms - window_ms => {
                return Claim::Written(stored.clone());
            }
            _ => {}
        }
        slots.insert(key.to_owned(), Slot::Pending);
        Claim::Mine(ClaimGuard {
            key: Some(key.to_owned()),
            slots: self.slots.clone(),
        })
    }

    /// Forgets written keys the index has processed (it answers for them now).
    pub(crate) fn sweep(&self, indexed: &[(TopicPartition, u64)]) {
        let mut slots = lock(&self.slots);
        if slots.len() < SWEEP_AT {
            return;
        }
        slots.retain(|_, slot| match slot {
            Slot::Pending => true,
            Slot::Written { stored, .. } => !indexed.iter().any(|(tp, next)| {
                *tp.topic == *stored.position.topic
                    && tp.partition == stored.position.partition
                    && *next > stored.position.offset
            }),
        });
    }
}

impl ClaimGuard {
    /// Records that the key's command is `stored`.
    pub(crate) fn finish(mut self, stored: Stored, at_ms: i64) {
        if let Some(key) = self.key.take() {
            lock(&self.slots).insert(key, Slot::Written { stored, at_ms });
        }
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            lock(&self.slots).remove(&key);
        }
    }
}
