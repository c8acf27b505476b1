//! Kafka record batches (format v2) to and from Kappa records.
//!
//! A produce request carries batches, any codec, each CRC-32C checked; the
//! log stores plain records, so a fetch encodes the records it read as one
//! new uncompressed batch. The batch format is read and written here
//! (kafka-protocol's record type keeps headers in a map, which loses a
//! header name given twice); decompression is bounded (see `compression`).
//! Kafka header values may be null; the log's may not, so a null header
//! value is stored as an empty one.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::records::Compression;
use kappa_log::{Header, ProducerRecord, Record};

use crate::compression::{DECOMPRESSED_BATCH_BYTES_MAX, decompress};

/// Bytes of a v2 batch header, up to and including the record count.
const BATCH_HEADER_BYTES: usize = 61;
/// Where the CRC-32C starts covering a batch (the attributes).
const CRC_FROM: usize = 21;
const ATTR_TIMESTAMP_LOG_APPEND: i16 = 1 << 3;
const ATTR_TRANSACTIONAL: i16 = 1 << 4;
const ATTR_CONTROL: i16 = 1 << 5;
/// The smallest encoded record: length, attributes, three deltas, key,
/// value and header count, one byte each.
const RECORD_BYTES_MIN: usize = 7;

/// One batch of a produce request, decoded.
#[derive(Debug)]
pub(crate) struct ProducedBatch {
    /// The idempotent producer's id, or -1.
    pub producer_id: i64,
    /// Its epoch.
    pub producer_epoch: i16,
    /// Sequence number of the first record.
    pub base_sequence: i32,
    /// Whether the batch belongs to a transaction.
    pub transactional: bool,
    /// The records, in order.
    pub records: Vec<ProducerRecord>,
}

impl ProducedBatch {
    /// Sequence number of the last record.
    pub fn last_sequence(&self) -> i32 {
        let count = i32::try_from(self.records.len()).unwrap_or(i32::MAX);
        self.base_sequence.wrapping_add(count.saturating_sub(1))
    }
}

/// Decodes the batches of one partition's produce data.
///
/// # Errors
///
/// What is wrong, when a batch is truncated, fails its CRC, uses an
/// unknown codec or an old message format, or its records do not parse.
pub(crate) fn decode_batches(mut data: Bytes) -> Result<Vec<ProducedBatch>, String> {
    let mut batches = Vec::new();
    while !data.is_empty() {
        if data.len() < BATCH_HEADER_BYTES {
            return Err(format!(
                "a batch of {} bytes is shorter than its header",
                data.len()
            ));
        }
        let length = i32::from_be_bytes(array(&data[8..12]));
        let total = usize::try_from(length)
            .ok()
            .and_then(|l| l.checked_add(12))
            .filter(|t| (BATCH_HEADER_BYTES..=data.len()).contains(t))
            .ok_or_else(|| {
                format!(
                    "batch length {length} does not fit the {} bytes sent",
                    data.len()
                )
            })?;
        let batch = data.split_to(total);
        batches.push(decode_batch(batch)?);
    }
    Ok(batches)
}

fn array<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[..N]);
    a
}

fn decode_batch(batch: Bytes) -> Result<ProducedBatch, String> {
    let magic = batch[16] as i8;
    if magic != 2 {
        return Err(format!(
            "message format v{magic} is not supported; clients send v2 since Kafka 0.11"
        ));
    }
    let crc = u32::from_be_bytes(array(&batch[17..21]));
    let actual = crc32c::crc32c(&batch[CRC_FROM..]);
    if crc != actual {
        return Err(format!(
            "CRC-32C mismatch: the batch says {crc:#010x}, its bytes give {actual:#010x}"
        ));
    }
    let attributes = i16::from_be_bytes(array(&batch[21..23]));
    if attributes & ATTR_CONTROL != 0 {
        return Err("a producer may not write control batches".into());
    }
    let first_timestamp = i64::from_be_bytes(array(&batch[27..35]));
    let producer_id = i64::from_be_bytes(array(&batch[43..51]));
    let producer_epoch = i16::from_be_bytes(array(&batch[51..53]));
    let base_sequence = i32::from_be_bytes(array(&batch[53..57]));
    let count = i32::from_be_bytes(array(&batch[57..61]));
    let codec = match attributes & 0x7 {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        other => return Err(format!("unknown compression codec {other}")),
    };
    let mut body = decompress(
        batch.slice(BATCH_HEADER_BYTES..),
        codec,
        DECOMPRESSED_BATCH_BYTES_MAX,
    )
    .map_err(|e| format!("{codec:?} compression: {e}"))?;
    let count = usize::try_from(count)
        .ok()
        .filter(|c| c.saturating_mul(RECORD_BYTES_MIN) <= body.len())
        .ok_or_else(|| format!("{count} records cannot fit in {} bytes", body.len()))?;
    // Log-append time means "the broker's clock": the log stamps it.
    let stamp = attributes & ATTR_TIMESTAMP_LOG_APPEND == 0;
    let mut records = Vec::with_capacity(count);
    for i in 0..count {
        let r = decode_record(&mut body, first_timestamp, stamp)
            .map_err(|why| format!("record {i}: {why}"))?;
        records.push(r);
    }
    all_read(&body, format_args!("after {count} records"))?;
    Ok(ProducedBatch {
        producer_id,
        producer_epoch,
        base_sequence,
        transactional: attributes & ATTR_TRANSACTIONAL != 0,
        records,
    })
}

fn decode_record(
    body: &mut Bytes,
    first_timestamp: i64,
    stamp: bool,
) -> Result<ProducerRecord, String> {
    let length = read_len(body)?.ok_or("negative record length")?;
    let mut r = take(body, length)?;
    let _attributes = take(&mut r, 1)?;
    let timestamp_delta = read_varlong(&mut r)?;
    let _offset_delta = read_varlong(&mut r)?;
    let key = read_bytes(&mut r)?;
    let value = read_bytes(&mut r)?;
    let headers_count = read_len(&mut r)?.ok_or("negative header count")?;
    if headers_count > r.len() {
        return Err(format!(
            "{headers_count} headers cannot fit in {} bytes",
            r.len()
        ));
    }
    let mut headers = Vec::with_capacity(headers_count);
    for _ in 0..headers_count {
        let name = read_bytes(&mut r)?.ok_or("a header without a name")?;
        if std::str::from_utf8(&name).is_err() {
            return Err("a header name is not UTF-8".into());
        }
        let value = read_bytes(&mut r)?.unwrap_or_default();
        headers.push(Header { name, value });
    }
    all_read(&r, format_args!("inside the record"))?;
    Ok(ProducerRecord {
        key,
        value,
        headers,
        timestamp: stamp.then(|| first_timestamp.wrapping_add(timestamp_delta)),
    })
}

/// Refuses bytes that a well-formed batch or record leaves over; `place`
/// says where, and is only formatted on a refusal.
fn all_read(rest: &Bytes, place: std::fmt::Arguments<'_>) -> Result<(), String> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(format!("{} bytes left {place}", rest.len()))
    }
}

fn take(b: &mut Bytes, n: usize) -> Result<Bytes, String> {
    if b.len() < n {
        return Err(format!("{n} bytes wanted, {} left", b.len()));
    }
    Ok(b.split_to(n))
}

fn read_varlong(b: &mut Bytes) -> Result<i64, String> {
    let mut n: u64 = 0;
    for shift in (0..70).step_by(7) {
        if b.is_empty() {
            return Err("truncated varint".into());
        }
        let byte = b.get_u8();
        n |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(((n >> 1) as i64) ^ -((n & 1) as i64));
        }
    }
    Err("varint longer than 10 bytes".into())
}

/// A length: `None` for -1 (null).
fn read_len(b: &mut Bytes) -> Result<Option<usize>, String> {
    match read_varlong(b)? {
        -1 => Ok(None),
        n => usize::try_from(n)
            .map(Some)
            .map_err(|_| format!("invalid length {n}")),
    }
}

fn read_bytes(b: &mut Bytes) -> Result<Option<Bytes>, String> {
    read_len(b)?.map(|n| take(b, n)).transpose()
}

fn put_varlong(out: &mut BytesMut, v: i64) {
    let mut n = ((v << 1) ^ (v >> 63)) as u64;
    while n >= 0x80 {
        out.put_u8((n as u8) | 0x80);
        n >>= 7;
    }
    out.put_u8(n as u8);
}

fn put_bytes(out: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        None => put_varlong(out, -1),
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.put_slice(b);
        }
    }
}

/// Encodes records read from one partition as one uncompressed v2 batch.
pub(crate) fn encode_records(records: &[Record], out: &mut BytesMut) {
    let (Some(first), Some(last)) = (records.first(), records.last()) else {
        return;
    };
    let base_offset = offset_i64(first.offset);
    let base_timestamp = first.timestamp;
    let max_timestamp = records
        .iter()
        .map(|r| r.timestamp)
        .max()
        .unwrap_or(base_timestamp);
    let start = out.len();
    out.put_i64(base_offset);
    out.put_i32(0); // length, set below
    out.put_i32(0); // partition leader epoch
    out.put_i8(2);
    out.put_u32(0); // CRC, set below
    out.put_i16(0); // attributes: uncompressed, create time
    out.put_i32(i32::try_from(offset_i64(last.offset) - base_offset).unwrap_or(i32::MAX));
    out.put_i64(base_timestamp);
    out.put_i64(max_timestamp);
    out.put_i64(-1); // producer id
    out.put_i16(-1); // producer epoch
    out.put_i32(-1); // base sequence
    out.put_i32(i32::try_from(records.len()).unwrap_or(i32::MAX));
    let mut record = BytesMut::new();
    for r in records {
        record.clear();
        record.put_i8(0);
        put_varlong(&mut record, r.timestamp.wrapping_sub(base_timestamp));
        put_varlong(&mut record, offset_i64(r.offset) - base_offset);
        put_bytes(&mut record, r.key.as_deref());
        put_bytes(&mut record, r.value.as_deref());
        put_varlong(&mut record, r.headers.len() as i64);
        for h in &r.headers {
            put_bytes(&mut record, Some(&h.name));
            put_bytes(&mut record, Some(&h.value));
        }
        put_varlong(out, record.len() as i64);
        out.put_slice(&record);
    }
    let length = i32::try_from(out.len() - start - 12).unwrap_or(i32::MAX);
    out[start + 8..start + 12].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&out[start + CRC_FROM..]);
    out[start + 17..start + 21].copy_from_slice(&crc.to_be_bytes());
}

/// A log offset as Kafka's signed offset.
pub(crate) fn offset_i64(offset: u64) -> i64 {
    i64::try_from(offset).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::{
        Record as KafkaRecord, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };

    fn record(offset: u64, key: &str, value: &str) -> Record {
        Record {
            topic: "t".into(),
            partition: 0,
            offset,
            timestamp: 1_700_000_000_000 + offset as i64,
            key: Some(Bytes::copy_from_slice(key.as_bytes())),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: vec![Header::new("h", "v")],
        }
    }

    #[test]
    fn batches_written_here_read_back_with_kafka_protocols_decoder() {
        let records = vec![
            record(5, "a", "one"),
            record(6, "b", "two"),
            record(9, "c", "x"),
        ];
        let mut buf = BytesMut::new();
        encode_records(&records, &mut buf);
        let mut bytes = buf.freeze();
        let sets = RecordBatchDecoder::decode_all(&mut bytes).unwrap();
        assert_eq!(sets.len(), 1, "one read is one batch");
        let decoded = &sets[0].records;
        assert_eq!(decoded.len(), 3);
        for (d, r) in decoded.iter().zip(&records) {
            assert_eq!(d.offset, r.offset as i64);
            assert_eq!(d.timestamp, r.timestamp);
            assert_eq!(d.key, r.key);
            assert_eq!(d.value, r.value);
            assert_eq!(
                d.headers.get(b"h".as_slice()).cloned().flatten(),
                Some(Bytes::from("v"))
            );
        }
    }

    #[test]
    fn a_header_name_given_twice_keeps_both_values_in_order() {
        let mut r = record(0, "k", "v");
        r.headers = vec![
            Header::new("dup", "a"),
            Header::new("dup", "b"),
            Header::new("x", ""),
        ];
        let mut buf = BytesMut::new();
        encode_records(std::slice::from_ref(&r), &mut buf);
        let batches = decode_batches(buf.freeze()).unwrap();
        assert_eq!(batches[0].records[0].headers, r.headers);
        assert_eq!(batches[0].records[0].timestamp, Some(r.timestamp));
    }

    #[test]
    fn batches_of_every_codec_from_kafka_protocols_encoder_decode() {
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let sent: Vec<KafkaRecord> = (0..50)
                .map(|i| KafkaRecord {
                    transactional: false,
                    control: false,
                    partition_leader_epoch: 0,
                    producer_id: 7,
                    producer_epoch: 1,
                    timestamp_type: TimestampType::Creation,
                    offset: i,
                    sequence: i as i32,
                    timestamp: 1_000 + i,
                    key: Some(Bytes::from(format!("k{i}"))),
                    value: Some(Bytes::from("v".repeat(i as usize))),
                    headers: Default::default(),
                })
                .collect();
            let mut buf = BytesMut::new();
            RecordBatchEncoder::encode(
                &mut buf,
                sent.iter(),
                &RecordEncodeOptions {
                    version: 2,
                    compression: codec,
                },
            )
            .unwrap();
            let batches = decode_batches(buf.freeze()).unwrap();
            let got: Vec<_> = batches.iter().flat_map(|b| &b.records).collect();
            assert_eq!(got.len(), 50, "{codec:?}");
            for (g, s) in got.iter().zip(&sent) {
                assert_eq!(
                    (&g.key, &g.value, g.timestamp),
                    (&s.key, &s.value, Some(s.timestamp)),
                    "{codec:?}"
                );
            }
            assert_eq!(
                (
                    batches[0].producer_id,
                    batches[0].producer_epoch,
                    batches[0].base_sequence
                ),
                (7, 1, 0)
            );
        }
    }

    #[test]
    fn a_flipped_bit_fails_the_crc() {
        let mut buf = BytesMut::new();
        encode_records(&[record(0, "k", "value")], &mut buf);
        let last = buf.len() - 1;
        buf[last] ^= 1;
        let err = decode_batches(buf.freeze()).unwrap_err();
        assert!(err.contains("CRC-32C mismatch"), "{err}");
    }

    #[test]
    fn truncated_and_lying_batches_are_refused() {
        let mut buf = BytesMut::new();
        encode_records(&[record(0, "k", "value")], &mut buf);
        let whole = buf.freeze();
        for cut in [1, 30, BATCH_HEADER_BYTES, whole.len() - 1] {
            assert!(decode_batches(whole.slice(..cut)).is_err(), "cut at {cut}");
        }
        // A record count far beyond what the bytes can hold allocates nothing.
        let mut lying = BytesMut::from(&whole[..]);
        lying[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        let crc = crc32c::crc32c(&lying[CRC_FROM..]);
        lying[17..21].copy_from_slice(&crc.to_be_bytes());
        let err = decode_batches(lying.freeze()).unwrap_err();
        assert!(err.contains("cannot fit"), "{err}");
    }
}
