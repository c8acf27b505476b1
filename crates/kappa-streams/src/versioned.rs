//! Versioned key-value stores: every value a key had, each valid from its
//! timestamp until the next one, so reads can ask "as of" a time.
//!
//! Layout per entry: `len u32 | key | valid-from (sign-flipped big-endian)`
//! → `0x01 value` or `0x00` (deleted from then on). Versions older than the
//! history retention are dropped, except the one still valid at its edge.

use std::time::Duration;

use bytes::Bytes;
use kappa_log::LogError;

use crate::error::StreamsError;
use crate::processor::{ProcessorContext, StoreHandle};
use crate::serde::Serde;
use crate::store::ReadOnlyStore;
use crate::topology::{Materialized, StreamsBuilder};
use crate::windowing::ms;

/// A typed handle on a versioned store declared with
/// [`StreamsBuilder::add_versioned_store`].
pub struct VersionedStoreHandle<K, V> {
    /// The key-value store underneath, one entry per version.
    base: StoreHandle<K, V>,
    history_ms: i64,
}

impl<K, V> Clone for VersionedStoreHandle<K, V> {
    fn clone(&self) -> Self {
        Self {
            base: self.base.clone(),
            history_ms: self.history_ms,
        }
    }
}

impl<K, V> VersionedStoreHandle<K, V> {
    /// The store's name.
    pub fn name(&self) -> &str {
        self.base.name()
    }
}

impl StreamsBuilder {
    /// Declares a versioned store keeping `history` of past values
    /// (measured against stream time).
    pub fn add_versioned_store<K: 'static, V: 'static>(
        &self,
        store: Materialized,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
        history: Duration,
    ) -> VersionedStoreHandle<K, V> {
        VersionedStoreHandle {
            base: self.add_state_store(store, key_serde, value_serde),
            history_ms: ms(history),
        }
    }
}

/// `len u32 | key`: the prefix of every entry of one key (shared with window stores).
pub(crate) fn key_prefix(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + key.len() + 8);
    k.extend_from_slice(&(key.len() as u32).to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// `len u32 | key | time (sign-flipped big-endian)`: byte order is time order within a key.
pub(crate) fn version_key(key: &[u8], valid_from: i64) -> Bytes {
    let mut k = key_prefix(key);
    k.extend_from_slice(&((valid_from as u64) ^ (1 << 63)).to_be_bytes());
    Bytes::from(k)
}

/// The time at the end of an entry key made by [`version_key`].
pub(crate) fn valid_from_of(entry: &[u8]) -> Option<i64> {
    let b: [u8; 8] = entry.get(entry.len().checked_sub(8)?..)?.try_into().ok()?;
    Some((u64::from_be_bytes(b) ^ (1 << 63)) as i64)
}

/// The version valid at `as_of` among a key's entries (sorted by valid-from):
/// `Some((valid_from, Some(value)))`, `Some((valid_from, None))` if deleted then.
fn pick(entries: &[(Bytes, Bytes)], as_of: i64) -> Option<(i64, Option<Bytes>)> {
    let (k, v) = entries
        .iter()
        .rev()
        .find(|(k, _)| valid_from_of(k).is_some_and(|t| t <= as_of))?;
    let valid_from = valid_from_of(k)?;
    match v.split_first() {
        Some((1, value)) => Some((valid_from, Some(v.slice(1..1 + value.len())))),
        _ => Some((valid_from, None)),
    }
}

impl<KOut: crate::node::Data, VOut: crate::node::Data> ProcessorContext<'_, KOut, VOut> {
    /// Records `value` (or a deletion) for `key`, valid from `valid_from`.
    ///
    /// # Errors
    ///
    /// The store is not connected, or the key or value does not encode.
    pub fn put_versioned<K: 'static, V: 'static>(
        &mut self,
        store: &VersionedStoreHandle<K, V>,
        key: &K,
        value: Option<&V>,
        valid_from: i64,
    ) -> Result<(), StreamsError> {
        let (i, k) = self.entry(&store.base, key)?;
        let encoded = match value {
            Some(v) => {
                let v = self
                    .task()
                    .encode(&*store.base.value_serde, v, "store value")?;
                let mut b = Vec::with_capacity(1 + v.len());
                b.push(1);
                b.extend_from_slice(&v);
                Bytes::from(b)
            }
            None => Bytes::from_static(&[0]),
        };
        self.task()
            .store_put(i, version_key(&k, valid_from), Some(encoded));
        // Drop versions that fell out of the history, keeping the one still
        // valid at the retention edge.
        let edge = self.stream_time().saturating_sub(store.history_ms);
        let entries = self.task().store_scan_prefix(i, &key_prefix(&k))?;
        let keep_from = entries
            .iter()
            .rposition(|(e, _)| valid_from_of(e).is_some_and(|t| t <= edge))
            .unwrap_or(0);
        for (e, _) in &entries[..keep_from] {
            self.task().store_put(i, e.clone(), None);
        }
        Ok(())
    }

    /// The value `key` had at `as_of`, with the time it became valid.
    ///
    /// # Errors
    ///
    /// The store is not connected, or a stored value does not decode.
    pub fn get_as_of<K: 'static, V: 'static>(
        &mut self,
        store: &VersionedStoreHandle<K, V>,
        key: &K,
        as_of: i64,
    ) -> Result<Option<(V, i64)>, StreamsError> {
        let (i, k) = self.entry(&store.base, key)?;
        let entries = self.task().store_scan_prefix(i, &key_prefix(&k))?;
        match pick(&entries, as_of) {
            Some((from, Some(bytes))) => {
                let v = store.base.value_serde.deserialize(&bytes).map_err(|e| {
                    StreamsError::Store {
                        store: store.name().to_owned(),
                        detail: e.0,
                    }
                })?;
                Ok(Some((v, from)))
            }
            _ => Ok(None),
        }
    }
}

impl ReadOnlyStore {
    /// For a versioned store: the committed value of a serialized key at
    /// `as_of`, with the time it became valid.
    ///
    /// # Errors
    ///
    /// Storage failures.
    pub fn get_as_of(&self, key: &[u8], as_of: i64) -> Result<Option<(Bytes, i64)>, LogError> {
        let entries = self.scan_key_prefix(key, &key_prefix(key))?;
        Ok(match pick(&entries, as_of) {
            Some((from, Some(v))) => Some((v, from)),
            _ => None,
        })
    }
}
