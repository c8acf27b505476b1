//! Key-first window stores for the Processor API: values per (key, window
//! start), fetched for one key over a time range without reading other
//! keys or older windows — what a processor needs to keep hopping-window
//! sums as panes (one entry per key and pane) and add up the panes a
//! window covers.
//!
//! Layout per entry: `len u32 | key | window start (sign-flipped
//! big-endian)` → value, so one key's windows are contiguous and in time
//! order. Windows that start more than the retention before stream time are
//! dropped when their key is written.

use std::time::Duration;

use bytes::Bytes;
use kappa_log::LogError;

use crate::error::StreamsError;
use crate::processor::{ProcessorContext, StoreHandle};
use crate::serde::Serde;
use crate::store::ReadOnlyStore;
use crate::topology::{Materialized, StreamsBuilder};
use crate::versioned::{key_prefix, valid_from_of, version_key};
use crate::windowing::ms;

/// A typed handle on a window store declared with [`StreamsBuilder::add_window_store`].
pub struct WindowStoreHandle<K, V> {
    /// The key-value store underneath, one entry per window.
    base: StoreHandle<K, V>,
    retention_ms: i64,
}

impl<K, V> Clone for WindowStoreHandle<K, V> {
    fn clone(&self) -> Self {
        Self {
            base: self.base.clone(),
            retention_ms: self.retention_ms,
        }
    }
}

impl<K, V> WindowStoreHandle<K, V> {
    /// The store's name.
    pub fn name(&self) -> &str {
        self.base.name()
    }
}

impl StreamsBuilder {
    /// Declares a window store keeping windows that start within
    /// `retention` of stream time.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kappa_streams::{I64, Materialized, StreamsBuilder, Utf8};
    /// let b = StreamsBuilder::new();
    /// let daily = b.add_window_store(Materialized::persistent("daily"), Utf8, I64, Duration::from_secs(90 * 86_400));
    /// assert_eq!(daily.name(), "daily");
    /// ```
    pub fn add_window_store<K: 'static, V: 'static>(
        &self,
        store: Materialized,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
        retention: Duration,
    ) -> WindowStoreHandle<K, V> {
        WindowStoreHandle {
            base: self.add_state_store(store, key_serde, value_serde),
            retention_ms: ms(retention),
        }
    }
}

/// The bounds of a key's windows starting in `from..=to`, for `TaskStore::range`.
fn bounds(key: &[u8], from: i64, to: i64) -> (Vec<u8>, Option<Bytes>, Bytes) {
    let prefix = key_prefix(key);
    // Entry keys are exactly prefix + 8 bytes, so "after from - 1" starts at `from`.
    let after = (from > i64::MIN).then(|| version_key(key, from - 1));
    (prefix, after, version_key(key, to))
}

impl<KOut: crate::node::Data, VOut: crate::node::Data> ProcessorContext<'_, KOut, VOut> {
    /// Writes (or with `None` deletes) the value of `key`'s window starting
    /// at `start`; it commits with the task's outputs and positions.
    ///
    /// # Errors
    ///
    /// The store is not connected, or the key or value does not encode.
    pub fn window_put<K: 'static, V: 'static>(
        &mut self,
        store: &WindowStoreHandle<K, V>,
        key: &K,
        start: i64,
        value: Option<&V>,
    ) -> Result<(), StreamsError> {
        let (i, k) = self.entry(&store.base, key)?;
        let v = match value {
            Some(v) => Some(
                self.task()
                    .encode(&*store.base.value_serde, v, "store value")?,
            ),
            None => None,
        };
        self.task().store_put(i, version_key(&k, start), v);
        // Drop this key's windows that fell out of the retention.
        let edge = self.stream_time().saturating_sub(store.retention_ms);
        if edge > i64::MIN {
            let (prefix, _, last) = bounds(&k, i64::MIN, edge - 1);
            for (e, _) in self.task().store_range(i, &prefix, None, &last)? {
                self.task().store_put(i, e, None);
            }
        }
        Ok(())
    }

    /// The value of `key`'s window starting at `start` (this task's
    /// uncommitted writes first).
    ///
    /// # Errors
    ///
    /// The store is not connected, or a stored value does not decode.
    pub fn window_get<K: 'static, V: 'static>(
        &mut self,
        store: &WindowStoreHandle<K, V>,
        key: &K,
        start: i64,
    ) -> Result<Option<V>, StreamsError> {
        let (i, k) = self.entry(&store.base, key)?;
        self.task()
            .store_get_decoded(i, &version_key(&k, start), &*store.base.value_serde)
    }

    /// `key`'s windows starting in `from..=to`, oldest first, as (start, value).
    ///
    /// # Errors
    ///
    /// The store is not connected, or a stored value does not decode.
    pub fn window_fetch<K: 'static, V: 'static>(
        &mut self,
        store: &WindowStoreHandle<K, V>,
        key: &K,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, V)>, StreamsError> {
        if from > to {
            return Ok(Vec::new());
        }
        let (i, k) = self.entry(&store.base, key)?;
        let (prefix, after, last) = bounds(&k, from, to);
        let entries = self
            .task()
            .store_range(i, &prefix, after.as_deref(), &last)?;
        let mut out = Vec::with_capacity(entries.len());
        for (e, v) in entries {
            if let Some(start) = valid_from_of(&e) {
                out.push((
                    start,
                    self.task().decode_stored(i, &*store.base.value_serde, &v)?,
                ));
            }
        }
        Ok(out)
    }
}

impl ReadOnlyStore {
    /// For a window store of the Processor API: the committed windows of a
    /// serialized key starting in `from..=to`, oldest first, as (start, value).
    ///
    /// # Errors
    ///
    /// Storage failures.
    pub fn fetch_key_windows(
        &self,
        key: &[u8],
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, Bytes)>, LogError> {
        if from > to {
            return Ok(Vec::new());
        }
        let (prefix, after, last) = bounds(key, from, to);
        Ok(self
            .range_in_key_partition(key, &prefix, after.as_deref(), &last)?
            .into_iter()
            .filter_map(|(e, v)| Some((valid_from_of(&e)?, v)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_cover_exactly_the_windows_asked_for() {
        let (prefix, after, last) = bounds(b"k", 10, 20);
        for (start, inside) in [(9, false), (10, true), (15, true), (20, true), (21, false)] {
            let e = version_key(b"k", start);
            let ok = e.starts_with(&prefix) && after.as_ref().is_none_or(|a| e > *a) && e <= last;
            assert_eq!(ok, inside, "{start}");
        }
        // A longer key with the same first bytes is another key.
        assert!(!version_key(b"kk", 15).starts_with(&prefix));
        let (_, after, _) = bounds(b"k", i64::MIN, 0);
        assert!(after.is_none());
    }
}
