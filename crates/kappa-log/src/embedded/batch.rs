//! The stored record batch: many records of one partition in one value,
//! checksummed as a whole (see `docs/log-format.md`).
//!
//! Layout, all integers little-endian and fixed-width:
//!
//! ```text
//! u8  format (1)          u32 crc32c of every byte after this field
//! u64 base_offset         u32 record_count    u32 last_offset_delta
//! i64 max_timestamp       i64 append_time (wall clock when first written)
//! record_count x {
//!   u32 offset_delta  i64 timestamp
//!   i32 key_len (-1 = none)    key bytes
//!   i32 value_len (-1 = none)  value bytes
//!   u16 header_count x { u16 name_len name  u32 value_len value }
//! }
//! ```

use std::sync::Arc;

use bytes::Bytes;

use crate::record::{Header, ProducerRecord, Record};

/// The batch format this build writes and reads.
pub(crate) const BATCH_FORMAT: u8 = 1;
/// Bytes before the first record.
pub(crate) const BATCH_HEADER_LEN: usize = 1 + 4 + 8 + 4 + 4 + 8 + 8;
/// Fixed bytes of one record besides key, value and headers.
const RECORD_FIXED_LEN: usize = 4 + 8 + 4 + 4 + 2;
/// A batch is closed once it holds this many bytes, so one partition's
/// share of a huge commit becomes several moderate storage values.
pub(crate) const BATCH_BYTES_TARGET: usize = 1024 * 1024;

/// Encoded size of one record inside a batch.
pub(crate) fn record_encoded_len(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[Header],
) -> usize {
    RECORD_FIXED_LEN
        + key.map_or(0, <[u8]>::len)
        + value.map_or(0, <[u8]>::len)
        + headers
            .iter()
            .map(|h| 2 + h.name.len() + 4 + h.value.len())
            .sum::<usize>()
}

/// Summary of a batch kept in the batch index (no need to read the batch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BatchSummary {
    pub(crate) max_timestamp: i64,
    pub(crate) last_offset_delta: u32,
    pub(crate) size_bytes: u32,
}

impl BatchSummary {
    pub(crate) const ENCODED_LEN: usize = 16;

    pub(crate) fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        out[0..8].copy_from_slice(&self.max_timestamp.to_le_bytes());
        out[8..12].copy_from_slice(&self.last_offset_delta.to_le_bytes());
        out[12..16].copy_from_slice(&self.size_bytes.to_le_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::ENCODED_LEN {
            return None;
        }
        Some(Self {
            max_timestamp: i64::from_le_bytes(bytes[0..8].try_into().ok()?),
            last_offset_delta: u32::from_le_bytes(bytes[8..12].try_into().ok()?),
            size_bytes: u32::from_le_bytes(bytes[12..16].try_into().ok()?),
        })
    }
}

/// Builds one batch. Records are added with their offsets (which must increase).
pub(crate) struct BatchBuilder {
    buf: Vec<u8>,
    base_offset: u64,
    append_time: i64,
    count: u32,
    last_offset_delta: u32,
    max_timestamp: i64,
}

impl BatchBuilder {
    /// A batch starting at `base_offset`, first written at `append_time`
    /// (kept when compaction rewrites it; tombstones expire by it).
    pub(crate) fn new(base_offset: u64, capacity: usize, append_time: i64) -> Self {
        let mut buf = Vec::with_capacity(BATCH_HEADER_LEN + capacity);
        buf.resize(BATCH_HEADER_LEN, 0);
        Self {
            buf,
            base_offset,
            append_time,
            count: 0,
            last_offset_delta: 0,
            max_timestamp: i64::MIN,
        }
    }

    pub(crate) fn encoded_len(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub(crate) fn base_offset(&self) -> u64 {
        self.base_offset
    }

    /// Adds a record at `offset` (≥ base, increasing).
    pub(crate) fn push(
        &mut self,
        offset: u64,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) {
        // Callers split batches long before 2^32 offsets.
        let delta = (offset - self.base_offset) as u32;
        let buf = &mut self.buf;
        buf.extend_from_slice(&delta.to_le_bytes());
        buf.extend_from_slice(&timestamp.to_le_bytes());
        put_optional(buf, key);
        put_optional(buf, value);
        // Header count and lengths were bounded by validation before encoding.
        buf.extend_from_slice(&(headers.len() as u16).to_le_bytes());
        for h in headers {
            buf.extend_from_slice(&(h.name.len() as u16).to_le_bytes());
            buf.extend_from_slice(&h.name);
            buf.extend_from_slice(&(h.value.len() as u32).to_le_bytes());
            buf.extend_from_slice(&h.value);
        }
        self.count += 1;
        self.last_offset_delta = delta;
        self.max_timestamp = self.max_timestamp.max(timestamp);
    }

    pub(crate) fn push_producer_record(&mut self, offset: u64, timestamp: i64, r: &ProducerRecord) {
        self.push(
            offset,
            timestamp,
            r.key.as_deref(),
            r.value.as_deref(),
            &r.headers,
        );
    }

    /// Seals the batch: fills in the header and checksum.
    pub(crate) fn finish(mut self) -> (Vec<u8>, BatchSummary) {
        let b = &mut self.buf;
        b[0] = BATCH_FORMAT;
        b[5..13].copy_from_slice(&self.base_offset.to_le_bytes());
        b[13..17].copy_from_slice(&self.count.to_le_bytes());
        b[17..21].copy_from_slice(&self.last_offset_delta.to_le_bytes());
        b[21..29].copy_from_slice(&self.max_timestamp.to_le_bytes());
        b[29..37].copy_from_slice(&self.append_time.to_le_bytes());
        let crc = crc32c::crc32c(&b[5..]);
        b[1..5].copy_from_slice(&crc.to_le_bytes());
        let summary = BatchSummary {
            max_timestamp: self.max_timestamp,
            last_offset_delta: self.last_offset_delta,
            size_bytes: u32::try_from(b.len()).unwrap_or(u32::MAX),
        };
        (self.buf, summary)
    }
}

fn put_optional(buf: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        // Record size is bounded far below 2^31 by topic validation.
        Some(b) => {
            buf.extend_from_slice(&(b.len() as i32).to_le_bytes());
            buf.extend_from_slice(b);
        }
        None => buf.extend_from_slice(&(-1i32).to_le_bytes()),
    }
}

/// Why a stored batch was rejected.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct DecodeError(pub(crate) String);

/// A validated batch whose records can be iterated without copying.
pub(crate) struct BatchView {
    data: Bytes,
    pub(crate) base_offset: u64,
    pub(crate) count: u32,
    pub(crate) append_time: i64,
}

impl BatchView {
    /// Checks the format byte, checksum and that the header agrees with the
    /// key it was stored under.
    pub(crate) fn parse(data: Bytes, expected_base: u64) -> Result<Self, DecodeError> {
        if data.len() < BATCH_HEADER_LEN {
            return Err(DecodeError(format!(
                "batch is {} bytes, shorter than its {BATCH_HEADER_LEN}-byte header",
                data.len()
            )));
        }
        if data[0] != BATCH_FORMAT {
            return Err(DecodeError(format!("unknown batch format {}", data[0])));
        }
        let stored = u32::from_le_bytes([data[1], data[2], data[3], data[4]]);
        let actual = crc32c::crc32c(&data[5..]);
        if stored != actual {
            return Err(DecodeError(format!(
                "checksum mismatch (stored {stored:#010x}, computed {actual:#010x})"
            )));
        }
        let base_offset = read_u64(&data, 5);
        if base_offset != expected_base {
            return Err(DecodeError(format!(
                "batch says base offset {base_offset} but is stored under {expected_base}"
            )));
        }
        Ok(Self {
            base_offset,
            count: read_u32(&data, 13),
            append_time: read_i64(&data, 29),
            data,
        })
    }

    /// Decodes the records at or after `from`, calling `sink` for each until
    /// it returns false.
    pub(crate) fn for_each_record(
        &self,
        topic: &Arc<str>,
        partition: u32,
        from: u64,
        mut sink: impl FnMut(Record) -> bool,
    ) -> Result<(), DecodeError> {
        let d = &self.data;
        let mut at = BATCH_HEADER_LEN;
        for _ in 0..self.count {
            let need = |at: usize, n: usize| -> Result<(), DecodeError> {
                if at + n > d.len() {
                    Err(DecodeError(format!(
                        "record runs past the batch end at byte {at}"
                    )))
                } else {
                    Ok(())
                }
            };
            need(at, 12)?;
            let offset = self.base_offset + u64::from(read_u32(d, at));
            let timestamp = read_i64(d, at + 4);
            at += 12;
            let key = read_optional(d, &mut at)?;
            let value = read_optional(d, &mut at)?;
            need(at, 2)?;
            let header_count = usize::from(u16::from_le_bytes([d[at], d[at + 1]]));
            at += 2;
            let mut headers = Vec::with_capacity(header_count);
            for _ in 0..header_count {
                need(at, 2)?;
                let name_len = usize::from(u16::from_le_bytes([d[at], d[at + 1]]));
                at += 2;
                need(at, name_len + 4)?;
                let name = d.slice(at..at + name_len);
                at += name_len;
                let value_len = read_u32(d, at) as usize;
                at += 4;
                need(at, value_len)?;
                headers.push(Header {
                    name,
                    value: d.slice(at..at + value_len),
                });
                at += value_len;
            }
            if offset >= from {
                let record = Record {
                    topic: topic.clone(),
                    partition,
                    offset,
                    timestamp,
                    key,
                    value,
                    headers,
                };
                if !sink(record) {
                    return Ok(());
                }
            }
        }
        if at != d.len() {
            return Err(DecodeError(format!(
                "{} trailing bytes after the last record",
                d.len() - at
            )));
        }
        Ok(())
    }
}

fn read_optional(d: &Bytes, at: &mut usize) -> Result<Option<Bytes>, DecodeError> {
    if *at + 4 > d.len() {
        return Err(DecodeError(
            "length field runs past the batch end".to_owned(),
        ));
    }
    let len = i32::from_le_bytes([d[*at], d[*at + 1], d[*at + 2], d[*at + 3]]);
    *at += 4;
    if len == -1 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| DecodeError(format!("negative length {len}")))?;
    if *at + len > d.len() {
        return Err(DecodeError(format!(
            "field of {len} bytes runs past the batch end"
        )));
    }
    let out = d.slice(*at..*at + len);
    *at += len;
    Ok(Some(out))
}

fn read_u32(d: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

fn read_u64(d: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[at..at + 8]);
    u64::from_le_bytes(b)
}

fn read_i64(d: &[u8], at: usize) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[at..at + 8]);
    i64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Vec<u8>, BatchSummary) {
        let mut b = BatchBuilder::new(10, 64, 99);
        b.push(10, 5, Some(b"k"), Some(b"v1"), &[]);
        b.push(12, 3, None, None, &[Header::new("h", "x")]);
        b.finish()
    }

    fn decode_all(bytes: Vec<u8>, base: u64) -> Result<Vec<Record>, DecodeError> {
        let view = BatchView::parse(Bytes::from(bytes), base)?;
        let mut out = Vec::new();
        view.for_each_record(&Arc::from("t"), 0, 0, |r| {
            out.push(r);
            true
        })?;
        Ok(out)
    }

    #[test]
    fn round_trips_records_and_summary() {
        let (bytes, summary) = sample();
        assert_eq!(summary.max_timestamp, 5);
        assert_eq!(
            BatchView::parse(Bytes::from(bytes.clone()), 10)
                .unwrap()
                .append_time,
            99
        );
        assert_eq!(summary.last_offset_delta, 2);
        assert_eq!(summary.size_bytes as usize, bytes.len());
        let records = decode_all(bytes, 10).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].offset, 10);
        assert_eq!(records[0].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(records[1].offset, 12);
        assert_eq!(records[1].value, None);
        assert_eq!(records[1].header("h").map(|v| &v[..]), Some(&b"x"[..]));
        assert_eq!(BatchSummary::decode(&summary.encode()), Some(summary));
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let (bytes, _) = sample();
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x40;
            assert!(
                decode_all(damaged, 10).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
    }

    #[test]
    fn batch_under_the_wrong_key_is_rejected() {
        let (bytes, _) = sample();
        assert!(decode_all(bytes, 11).is_err());
    }
}
