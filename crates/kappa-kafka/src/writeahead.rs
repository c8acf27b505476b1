//! Write-ahead entries: a whole commit written as one entry (one or a few
//! records) to this instance's commit topic before any of it is produced
//! to its destinations.
//!
//! An entry is the commit point. Once its last chunk is stored, the
//! commit happens even if the process dies while producing it: the next
//! start finds the entry at the end of its slot and produces whatever is
//! missing (recognised by the `kappa-commit` header). Without the last
//! chunk the commit never happened and nothing of it was produced.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use kappa_log::{Header, LogError, ProducerRecord, TopicPartition};

use crate::produce::Outgoing;

const MAGIC: &[u8; 4] = b"KWA1";
const CHUNK_HEADER: usize = 4 + 8 + 4 + 4;
/// Largest chunk payload: well under Kafka's default 1 MB record limit.
pub(crate) const CHUNK_BYTES: usize = 512 * 1024;

/// One commit, as written ahead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The slot's sequence number of this entry.
    pub(crate) seq: u64,
    /// Every record the commit produces, destinations fixed.
    pub(crate) records: Vec<Outgoing>,
    /// For each destination partition, an offset at or below where the
    /// commit's first record there lands: where to look for what was written.
    pub(crate) bounds: Vec<(TopicPartition, u64)>,
}

/// The header value identifying record `index` of entry `seq` in `slot`.
pub(crate) fn commit_id(instance: &str, slot: u32, seq: u64, index: usize) -> String {
    format!("{instance}/{slot}/{seq}/{index}")
}

/// The headers a record of a write-ahead entry is produced with.
pub(crate) struct Tag {
    /// [`commit_id`]: the `kappa-commit` header.
    pub(crate) id: String,
    /// `(k, n)` (the `kappa-commit-part` header, see [`write_part`]) when
    /// the entry has `n` > 1 records for the record's partition.
    pub(crate) part: Option<(u32, u32)>,
}

/// Tags the records of one entry.
pub(crate) struct Tags<'a> {
    writer: &'a str,
    slot: u32,
    seq: u64,
    /// For each record: its place among the entry's records bound for the
    /// same partition, and their number.
    parts: Vec<(u32, u32)>,
}

impl<'a> Tags<'a> {
    pub(crate) fn new(writer: &'a str, slot: u32, entry: &Entry) -> Self {
        let mut counts: HashMap<(&str, u32), u32> = HashMap::new();
        let places: Vec<u32> = entry
            .records
            .iter()
            .map(|o| {
                let n = counts.entry((&o.topic, o.partition)).or_default();
                *n += 1;
                *n - 1
            })
            .collect();
        let parts = entry
            .records
            .iter()
            .zip(places)
            .map(|(o, k)| (k, counts[&(&*o.topic, o.partition)]))
            .collect();
        Self {
            writer,
            slot,
            seq: entry.seq,
            parts,
        }
    }

    /// The tag of the entry's record `index`.
    pub(crate) fn of(&self, index: usize) -> Tag {
        let part = self.parts.get(index).copied().filter(|(_, n)| *n > 1);
        Tag {
            id: commit_id(self.writer, self.slot, self.seq, index),
            part,
        }
    }
}

/// Longest `kappa-commit-part` value: two `u32`s and a slash.
pub(crate) const PART_BYTES_MAX: usize = 21;

/// Writes the `kappa-commit-part` value `<k>/<n>` into `buf` (no
/// allocation per record); returns its length.
pub(crate) fn write_part(buf: &mut [u8; PART_BYTES_MAX], (k, n): (u32, u32)) -> usize {
    use std::io::Write;
    let mut w = std::io::Cursor::new(&mut buf[..]);
    // Two u32s and a slash always fit.
    let _ = write!(w, "{k}/{n}");
    usize::try_from(w.position()).unwrap_or(0)
}

/// Parses a `kappa-commit-part` header: `(k, n)` with `k < n`.
pub(crate) fn parse_part(value: &[u8]) -> Option<(u32, u32)> {
    let s = std::str::from_utf8(value).ok()?;
    let (k, n) = s.split_once('/')?;
    let (k, n): (u32, u32) = (k.parse().ok()?, n.parse().ok()?);
    (k < n).then_some((k, n))
}

/// Parses [`commit_id`] back into `(slot, seq, index)` when it names `instance`.
pub(crate) fn parse_commit_id(instance: &str, value: &[u8]) -> Option<(u32, u64, usize)> {
    let s = std::str::from_utf8(value).ok()?;
    let rest = s.strip_prefix(instance)?.strip_prefix('/')?;
    let mut parts = rest.split('/');
    let slot = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let index = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((slot, seq, index))
}

impl Entry {
    /// The entry as chunk records for the commit topic.
    pub(crate) fn chunks(&self) -> Vec<ProducerRecord> {
        let payload = self.encode();
        let pieces: Vec<&[u8]> = if payload.is_empty() {
            vec![&[][..]]
        } else {
            payload.chunks(CHUNK_BYTES).collect()
        };
        let parts = u32::try_from(pieces.len()).unwrap_or(u32::MAX);
        pieces
            .into_iter()
            .enumerate()
            .map(|(i, piece)| {
                let mut v = Vec::with_capacity(CHUNK_HEADER + piece.len());
                v.extend_from_slice(MAGIC);
                v.extend_from_slice(&self.seq.to_be_bytes());
                v.extend_from_slice(&u32::try_from(i).unwrap_or(u32::MAX).to_be_bytes());
                v.extend_from_slice(&parts.to_be_bytes());
                v.extend_from_slice(piece);
                ProducerRecord::value(v)
            })
            .collect()
    }

    fn encode(&self) -> Vec<u8> {
        let mut w = Vec::new();
        put_u32(&mut w, self.bounds.len());
        for (tp, at) in &self.bounds {
            put_bytes(&mut w, tp.topic.as_bytes());
            w.extend_from_slice(&tp.partition.to_be_bytes());
            w.extend_from_slice(&at.to_be_bytes());
        }
        put_u32(&mut w, self.records.len());
        for o in &self.records {
            put_bytes(&mut w, o.topic.as_bytes());
            w.extend_from_slice(&o.partition.to_be_bytes());
            put_opt(&mut w, o.record.key.as_deref());
            put_opt(&mut w, o.record.value.as_deref());
            match o.record.timestamp {
                Some(t) => {
                    w.push(1);
                    w.extend_from_slice(&t.to_be_bytes());
                }
                None => w.push(0),
            }
            put_u32(&mut w, o.record.headers.len());
            for h in &o.record.headers {
                put_bytes(&mut w, &h.name);
                put_bytes(&mut w, &h.value);
            }
        }
        w
    }

    /// Reassembles an entry from its chunk values, in order. `None` when
    /// the chunks do not make one complete entry.
    pub(crate) fn decode(chunks: &[Bytes]) -> Result<Option<Self>, LogError> {
        let mut payload = Vec::new();
        let mut seq = None;
        for (i, c) in chunks.iter().enumerate() {
            let Some(h) = ChunkHeader::parse(c) else {
                return Err(corrupt("a chunk has no valid header"));
            };
            if h.part as usize != i || seq.is_some_and(|s| s != h.seq) {
                return Ok(None);
            }
            if i + 1 == chunks.len() && h.part + 1 != h.parts {
                return Ok(None);
            }
            seq = Some(h.seq);
            payload.extend_from_slice(&c[CHUNK_HEADER..]);
        }
        let Some(seq) = seq else {
            return Ok(None);
        };
        let mut r = Cursor(&payload);
        let n = r.u32()?;
        let mut bounds = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            let topic = r.string()?;
            let partition = r.u32_raw()?;
            let at = r.u64()?;
            bounds.push((TopicPartition::new(topic, partition), at));
        }
        let n = r.u32()?;
        let mut records = Vec::with_capacity(n.min(1 << 20));
        for _ in 0..n {
            let topic: Arc<str> = r.string()?.into();
            let partition = r.u32_raw()?;
            let key = r.opt()?;
            let value = r.opt()?;
            let timestamp = match r.byte()? {
                1 => Some(i64::from_be_bytes(
                    r.take(8)?.try_into().map_err(|_| corrupt("timestamp"))?,
                )),
                _ => None,
            };
            let nh = r.u32()?;
            let mut headers = Vec::with_capacity(nh.min(1 << 10));
            for _ in 0..nh {
                let name = Bytes::copy_from_slice(r.bytes()?);
                let value = Bytes::copy_from_slice(r.bytes()?);
                headers.push(Header::new(name, value));
            }
            records.push(Outgoing {
                topic,
                partition,
                record: ProducerRecord {
                    key,
                    value,
                    headers,
                    timestamp,
                },
            });
        }
        Ok(Some(Self {
            seq,
            records,
            bounds,
        }))
    }
}

/// The fixed part at the start of every chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkHeader {
    pub(crate) seq: u64,
    pub(crate) part: u32,
    pub(crate) parts: u32,
}

impl ChunkHeader {
    pub(crate) fn parse(v: &[u8]) -> Option<Self> {
        if v.len() < CHUNK_HEADER || &v[..4] != MAGIC {
            return None;
        }
        let seq = u64::from_be_bytes(v[4..12].try_into().ok()?);
        let part = u32::from_be_bytes(v[12..16].try_into().ok()?);
        let parts = u32::from_be_bytes(v[16..20].try_into().ok()?);
        (part < parts).then_some(Self { seq, part, parts })
    }

    /// Whether this is the chunk that completes its entry.
    pub(crate) fn is_last(&self) -> bool {
        self.part + 1 == self.parts
    }
}

fn corrupt(what: &str) -> LogError {
    LogError::CorruptMetadata(format!("write-ahead entry: {what}"))
}

fn put_u32(w: &mut Vec<u8>, n: usize) {
    w.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
}

fn put_bytes(w: &mut Vec<u8>, b: &[u8]) {
    put_u32(w, b.len());
    w.extend_from_slice(b);
}

fn put_opt(w: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            w.push(1);
            put_bytes(w, b);
        }
        None => w.push(0),
    }
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], LogError> {
        if self.0.len() < n {
            return Err(corrupt("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn byte(&mut self) -> Result<u8, LogError> {
        Ok(self.take(1)?[0])
    }
    fn u32_raw(&mut self) -> Result<u32, LogError> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().map_err(|_| corrupt("u32"))?,
        ))
    }
    fn u32(&mut self) -> Result<usize, LogError> {
        Ok(self.u32_raw()? as usize)
    }
    fn u64(&mut self) -> Result<u64, LogError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().map_err(|_| corrupt("u64"))?,
        ))
    }
    fn bytes(&mut self) -> Result<&'a [u8], LogError> {
        let n = self.u32()?;
        self.take(n)
    }
    fn string(&mut self) -> Result<String, LogError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| corrupt("a topic name is not UTF-8"))
    }
    fn opt(&mut self) -> Result<Option<Bytes>, LogError> {
        match self.byte()? {
            1 => Ok(Some(Bytes::copy_from_slice(self.bytes()?))),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(values: usize, size: usize) -> Entry {
        Entry {
            seq: 7,
            records: (0..values)
                .map(|i| Outgoing {
                    topic: Arc::from(if i % 2 == 0 { "a" } else { "b" }),
                    partition: (i % 3) as u32,
                    record: ProducerRecord::value(vec![b'x'; size])
                        .with_key(format!("k{i}"))
                        .with_timestamp(i as i64)
                        .with_header("h", "v"),
                })
                .collect(),
            bounds: vec![
                (TopicPartition::new("a", 0), 12),
                (TopicPartition::new("b", 2), 0),
            ],
        }
    }

    #[test]
    fn entries_round_trip_through_their_chunks() {
        for (n, size) in [(0, 0), (3, 10), (40, 100_000)] {
            let e = entry(n, size);
            let chunks: Vec<Bytes> = e.chunks().into_iter().filter_map(|c| c.value).collect();
            assert_eq!(chunks.len() > 1, n * size > CHUNK_BYTES, "{n} x {size}");
            assert_eq!(Entry::decode(&chunks).unwrap(), Some(e));
        }
    }

    #[test]
    fn an_entry_without_its_last_chunk_is_not_an_entry() {
        let chunks: Vec<Bytes> = entry(40, 100_000)
            .chunks()
            .into_iter()
            .filter_map(|c| c.value)
            .collect();
        assert_eq!(Entry::decode(&chunks[..chunks.len() - 1]).unwrap(), None);
        assert_eq!(Entry::decode(&chunks[1..]).unwrap(), None);
    }

    #[test]
    fn parts_round_trip_through_their_header() {
        let mut buf = [0u8; PART_BYTES_MAX];
        for part in [(0, 2), (7, 8), (u32::MAX - 1, u32::MAX)] {
            let len = write_part(&mut buf, part);
            assert_eq!(parse_part(&buf[..len]), Some(part));
        }
        for bad in [&b"2/2"[..], b"3/2", b"1", b"a/b", b"1/2/3", b""] {
            assert_eq!(parse_part(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn commit_ids_name_their_instance() {
        let id = commit_id("blue", 3, 99, 4);
        assert_eq!(parse_commit_id("blue", id.as_bytes()), Some((3, 99, 4)));
        assert_eq!(parse_commit_id("blu", id.as_bytes()), None);
        assert_eq!(parse_commit_id("blue", b"blue/3/99"), None);
    }
}
