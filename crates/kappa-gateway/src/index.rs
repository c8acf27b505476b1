//! The command and event index: a view built from the log by a topology of
//! its own, so it survives restarts and is rebuilt by replaying (reset the
//! index application and it re-reads the topics from their start).
//!
//! One key-value store, partitioned like the topics it reads. Keys:
//!
//! | key | value |
//! |---|---|
//! | `c/<id>` | a command: its position, `\n`, its JSON |
//! | `e/<id>` | an event, the same way |
//! | `ea/<action>/<id>` | the partition holding `e/<id>` (u32, big-endian) |
//! | `o/<parent id>/<event id>` | `1` if the event rejects its parent, else `0` |
//! | `k/<idempotency key>` | time written (i64 BE) then the command id |
//! | `#c/`, `#e/`, `#a/<action>/` | per-partition counts (u64 BE) |
//!
//! Ids are UUIDv7 text, which sorts by creation time, so listing a prefix
//! lists records oldest first.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kappa_log::{Log, Position};
use kappa_streams::{
    Materialized, Processor, ProcessorContext, Punctuation, RawBytes, ReadOnlyStore, StoreHandle,
    Streams, StreamsBuilder, StreamsConfig, StreamsError,
};
use serde::Deserialize;
use uuid::Uuid;

/// Name of the index's store.
pub const STORE: &str = "index";

/// Which topic family a record belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The `commands` topic.
    Command,
    /// An event topic.
    Event,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Command => "c/",
            Kind::Event => "e/",
        }
    }

    fn count_key(self) -> &'static str {
        match self {
            Kind::Command => "#c/",
            Kind::Event => "#e/",
        }
    }
}

/// The fields of an envelope the index needs (`data` is skipped unparsed).
#[derive(Deserialize)]
struct Head {
    id: Uuid,
    action: String,
    #[serde(default)]
    parent: Option<Uuid>,
    #[serde(default)]
    error: bool,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    timestamp: i64,
}

struct IndexRecords {
    store: StoreHandle<Bytes, Bytes>,
    kind: Kind,
    idempotency_window_ms: i64,
}

fn key(parts: &[&str]) -> Bytes {
    Bytes::from(parts.concat())
}

fn increment(
    ctx: &mut ProcessorContext<'_, Bytes, Bytes>,
    store: &StoreHandle<Bytes, Bytes>,
    k: Bytes,
) -> Result<(), StreamsError> {
    let n = ctx.get(store, &k)?.map_or(0, |v| decode_u64(&v)) + 1;
    ctx.put(store, &k, &Bytes::copy_from_slice(&n.to_be_bytes()))
}

fn decode_u64(v: &[u8]) -> u64 {
    v.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

impl Processor<Bytes, Bytes, Bytes, Bytes> for IndexRecords {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, Bytes, Bytes>) -> Result<(), StreamsError> {
        if self.kind == Kind::Command {
            ctx.schedule(Duration::from_secs(60), Punctuation::WallClockTime);
        }
        Ok(())
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, Bytes, Bytes>,
        _key: Bytes,
        value: Bytes,
    ) -> Result<(), StreamsError> {
        let head: Head = match serde_json::from_slice(&value) {
            Ok(h) => h,
            Err(e) => {
                // Not written by the gateway or a Kappa processor: not indexed.
                tracing::warn!(position = %ctx.position(), error = %e, "record is not an envelope; not indexed");
                return Ok(());
            }
        };
        let id = head.id.to_string();
        let entry = key(&[self.kind.prefix(), &id]);
        if ctx.get(&self.store, &entry)?.is_some() {
            // A repeated delivery of the same record (at-least-once writers).
            return Ok(());
        }
        let position = ctx.position();
        let mut stored = BytesMut::with_capacity(value.len() + 48);
        stored.put_slice(position.to_string().as_bytes());
        stored.put_u8(b'\n');
        stored.put_slice(&value);
        ctx.put(&self.store, &entry, &stored.freeze())?;
        increment(
            ctx,
            &self.store,
            Bytes::from_static(self.kind.count_key().as_bytes()),
        )?;
        match self.kind {
            Kind::Command => {
                if let Some(k) = &head.idempotency_key {
                    let mut v = BytesMut::with_capacity(8 + id.len());
                    v.put_i64(head.timestamp);
                    v.put_slice(id.as_bytes());
                    ctx.put(&self.store, &key(&["k/", k]), &v.freeze())?;
                }
            }
            Kind::Event => {
                let partition = Bytes::copy_from_slice(&position.partition.to_be_bytes());
                ctx.put(
                    &self.store,
                    &key(&["ea/", &head.action, "/", &id]),
                    &partition,
                )?;
                increment(ctx, &self.store, key(&["#a/", &head.action, "/"]))?;
                if let Some(parent) = head.parent {
                    let flag = Bytes::from_static(if head.error { b"1" } else { b"0" });
                    ctx.put(
                        &self.store,
                        &key(&["o/", &parent.to_string(), "/", &id]),
                        &flag,
                    )?;
                }
            }
        }
        Ok(())
    }

    fn punctuate(
        &mut self,
        ctx: &mut ProcessorContext<'_, Bytes, Bytes>,
        _kind: Punctuation,
        now_ms: i64,
    ) -> Result<(), StreamsError> {
        // Idempotency keys older than the window no longer match: drop them.
        let cutoff = now_ms.saturating_sub(self.idempotency_window_ms);
        for (k, v) in ctx.prefix(&self.store, &Bytes::from_static(b"k/"))? {
            let written = v
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map_or(i64::MIN, i64::from_be_bytes);
            if written < cutoff {
                ctx.delete(&self.store, &k)?;
            }
        }
        Ok(())
    }
}

/// A stored record: where it is in the log and its JSON.
#[derive(Clone, Debug)]
pub struct Stored {
    /// The record's position.
    pub position: Position,
    /// The envelope as written.
    pub json: Bytes,
}

impl Stored {
    fn decode(v: &Bytes) -> Option<Self> {
        let nl = v.iter().position(|b| *b == b'\n')?;
        let position = std::str::from_utf8(&v[..nl]).ok()?.parse().ok()?;
        Some(Self {
            position,
            json: v.slice(nl + 1..),
        })
    }
}

/// One page of a listing.
pub struct Page {
    /// The records, oldest first.
    pub items: Vec<Stored>,
    /// How many records the listing has in all.
    pub total: u64,
    /// Pass as `after` to get the next page (absent on the last page).
    pub next_after: Option<String>,
}

/// The running index and its queries.
pub struct Index {
    streams: Arc<Streams>,
    store: ReadOnlyStore,
}

impl Index {
    /// Starts the index topology over `commands` and `events`.
    ///
    /// # Errors
    ///
    /// Missing topics, unequal partition counts, or log failures.
    pub fn start(
        log: Arc<dyn Log>,
        application_id: &str,
        commands: &str,
        events: &[String],
        idempotency_window: Duration,
    ) -> Result<Self, StreamsError> {
        let b = StreamsBuilder::new();
        let store = b.add_state_store(Materialized::persistent(STORE), RawBytes, RawBytes);
        let window_ms = i64::try_from(idempotency_window.as_millis()).unwrap_or(i64::MAX);
        let mut topics = vec![(commands.to_owned(), Kind::Command)];
        topics.extend(events.iter().map(|t| (t.clone(), Kind::Event)));
        for (topic, kind) in topics {
            let store = store.clone();
            b.stream(&topic, RawBytes, RawBytes)
                .process::<Bytes, Bytes, _>(
                    move || IndexRecords {
                        store: store.clone(),
                        kind,
                        idempotency_window_ms: window_ms,
                    },
                    &[STORE],
                );
        }
        let mut config = StreamsConfig::new(application_id);
        // The index feeds `GET /commands/{id}` right after a write: keep it fresh.
        config.commit_interval = Duration::from_millis(20);
        let streams = Arc::new(Streams::start(log, b.build()?, config)?);
        let store = streams.store(STORE);
        Ok(Self { streams, store })
    }

    /// The index's runtime (positions, lag, readiness).
    pub fn streams(&self) -> &Arc<Streams> {
        &self.streams
    }

    /// A command or event by id.
    ///
    /// # Errors
    ///
    /// Storage failures.
    pub fn get(&self, kind: Kind, id: &Uuid) -> Result<Option<Stored>, StreamsError> {
        let k = key(&[kind.prefix(), &id.to_string()]);
        Ok(self
            .store
            .prefix(&k)?
            .into_iter()
            .find(|(found, _)| *found == k)
            .and_then(|(_, v)| Stored::decode(&v)))
    }

    /// The ids of a command's outcome events, each with its `error` flag.
    ///
    /// # Errors
    ///
    /// Storage failures.
    pub fn outcomes(&self, command: &Uuid) -> Result<Vec<(String, bool)>, StreamsError> {
        let prefix = format!("o/{command}/");
        let mut out: Vec<(String, bool)> = self
            .store
            .prefix(prefix.as_bytes())?
            .into_iter()
            .filter_map(|(k, v)| {
                let id = std::str::from_utf8(&k[prefix.len()..]).ok()?.to_owned();
                Some((id, &v[..] == b"1"))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// The command an idempotency key was first used for, if within `window_ms` of `now_ms`.
    ///
    /// # Errors
    ///
    /// Storage failures.
    pub fn idempotent_command(
        &self,
        idempotency_key: &str,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<Option<Stored>, StreamsError> {
        let k = key(&["k/", idempotency_key]);
        for (found, v) in self.store.prefix(&k)? {
            if found != k || v.len() < 8 {
                continue;
            }
            let written = v[..8].try_into().map_or(i64::MIN, i64::from_be_bytes);
            if written < now_ms.saturating_sub(window_ms) {
                return Ok(None);
            }
            let Some(id) = std::str::from_utf8(&v[8..])
                .ok()
                .and_then(|s| s.parse().ok())
            else {
                return Ok(None);
            };
            return self.get(Kind::Command, &id);
        }
        Ok(None)
    }

    fn total(&self, count_key: &str) -> Result<u64, StreamsError> {
        let mut total = 0;
        for (k, v) in self.store.prefix(count_key.as_bytes())? {
            if k == count_key.as_bytes() {
                total += decode_u64(&v);
            }
        }
        Ok(total)
    }

    /// A page of commands or events (optionally one action's events), oldest
    /// first: skip `offset` records, or start after the id `after`.
    ///
    /// # Errors
    ///
    /// Storage failures.
    pub fn list(
        &self,
        kind: Kind,
        action: Option<&str>,
        offset: usize,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page, StreamsError> {
        let (prefix, count_key) = match action {
            Some(a) if kind == Kind::Event => (format!("ea/{a}/"), format!("#a/{a}/")),
            _ => (kind.prefix().to_owned(), kind.count_key().to_owned()),
        };
        let total = self.total(&count_key)?;
        let after_key = after.map(|a| format!("{prefix}{a}"));
        let want = offset.saturating_add(limit).saturating_add(1);
        let entries = self.store.page(
            prefix.as_bytes(),
            after_key.as_deref().map(str::as_bytes),
            want,
        )?;
        let more = entries.len() > offset.saturating_add(limit);
        let mut items = Vec::with_capacity(limit);
        for (k, v) in entries.into_iter().skip(offset).take(limit) {
            let stored = match action {
                Some(_) if kind == Kind::Event => {
                    let partition = v[..].try_into().map_or(0, u32::from_be_bytes);
                    let id = &k[prefix.len()..];
                    let mut full = b"e/".to_vec();
                    full.extend_from_slice(id);
                    self.store.get_in(partition, &full)?
                }
                _ => Some(v),
            };
            if let Some(s) = stored.as_ref().and_then(Stored::decode) {
                items.push(s);
            }
        }
        let next_after = if more {
            items
                .last()
                .and_then(|s| serde_json::from_slice::<Head>(&s.json).ok())
                .map(|h| h.id.to_string())
        } else {
            None
        };
        Ok(Page {
            items,
            total,
            next_after,
        })
    }
}
