//! Decompression of produced batches, bounded.
//!
//! A batch of a few kilobytes can expand to gigabytes (a zstd or gzip bomb),
//! so every codec reads through a limit and a batch that would pass it is
//! refused before it is held in memory. Snappy comes in two framings: raw
//! snappy from librdkafka (and so confluent-kafka and kcat), and the
//! snappy-java stream from Java clients; both are read here.

use std::io::Read;

use bytes::Bytes;
use kafka_protocol::records::Compression;

/// The most bytes one batch may decompress to.
///
/// Well above any batch a client builds (Kafka's default `message.max.bytes`
/// is 1 MiB compressed, and producers batch far less), far below what would
/// hurt a node holding a few requests in flight per connection.
pub(crate) const DECOMPRESSED_BATCH_BYTES_MAX: usize = 64 * 1024 * 1024;

/// The snappy-java stream header: magic, version, compatible version.
const XERIAL_HEADER: &[u8] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
/// The magic alone: what tells the two snappy framings apart.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";

/// Decompresses one batch's records, refusing more than `limit` bytes.
///
/// # Errors
///
/// What is wrong, when the data does not decode under its codec or would
/// exceed `limit`.
pub(crate) fn decompress(data: Bytes, codec: Compression, limit: usize) -> Result<Bytes, String> {
    match codec {
        Compression::None => Ok(data),
        Compression::Gzip => read_bounded(flate2::read::GzDecoder::new(&data[..]), limit),
        Compression::Lz4 => {
            let decoder = lz4::Decoder::new(&data[..]).map_err(|e| e.to_string())?;
            read_bounded(decoder, limit)
        }
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(&data[..]).map_err(|e| e.to_string())?;
            read_bounded(decoder, limit)
        }
        Compression::Snappy if data.starts_with(XERIAL_MAGIC) => xerial_snappy(&data, limit),
        Compression::Snappy => {
            let mut out = Vec::new();
            raw_snappy(&data, &mut out, limit)?;
            Ok(Bytes::from(out))
        }
    }
}

fn read_bounded(reader: impl Read, limit: usize) -> Result<Bytes, String> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    if out.len() > limit {
        return Err(too_large(limit));
    }
    Ok(Bytes::from(out))
}

/// Appends one raw snappy block to `out`, if it fits under `limit` in all.
fn raw_snappy(block: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), String> {
    let len = snap::raw::decompress_len(block).map_err(|e| e.to_string())?;
    let start = out.len();
    if len > limit.saturating_sub(start) {
        return Err(too_large(limit));
    }
    out.resize(start + len, 0);
    let n = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|e| e.to_string())?;
    out.truncate(start + n);
    Ok(())
}

/// The snappy-java stream: the header, then blocks of a 4-byte big-endian
/// length and that many bytes of raw snappy.
fn xerial_snappy(data: &[u8], limit: usize) -> Result<Bytes, String> {
    let mut rest = data
        .strip_prefix(XERIAL_HEADER)
        .ok_or("an unknown snappy-java stream version")?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or("a snappy-java block length is cut short")?;
        let len = u32::from_be_bytes(*len) as usize;
        if len > tail.len() {
            return Err(format!(
                "a snappy-java block of {len} bytes has {} left",
                tail.len()
            ));
        }
        let (block, tail) = tail.split_at(len);
        raw_snappy(block, &mut out, limit)?;
        rest = tail;
    }
    Ok(Bytes::from(out))
}

fn too_large(limit: usize) -> String {
    format!("the batch decompresses to more than {limit} bytes")
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn zeros(n: usize) -> Vec<u8> {
        vec![0; n]
    }

    #[test]
    fn every_codec_round_trips_and_is_refused_past_the_limit() {
        let plain = zeros(100_000);
        let gzip = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&plain).unwrap();
            e.finish().unwrap()
        };
        let zstd = zstd::encode_all(&plain[..], 3).unwrap();
        let lz4 = {
            let mut e = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
            e.write_all(&plain).unwrap();
            let (out, result) = e.finish();
            result.unwrap();
            out
        };
        let raw = snap::raw::Encoder::new().compress_vec(&plain).unwrap();
        let mut xerial = XERIAL_HEADER.to_vec();
        for chunk in plain.chunks(32 * 1024) {
            let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
            xerial.extend_from_slice(&(block.len() as u32).to_be_bytes());
            xerial.extend_from_slice(&block);
        }
        for (codec, data) in [
            (Compression::Gzip, gzip),
            (Compression::Zstd, zstd),
            (Compression::Lz4, lz4),
            (Compression::Snappy, raw),
            (Compression::Snappy, xerial),
        ] {
            let data = Bytes::from(data);
            assert!(data.len() < plain.len() / 10, "{codec:?} compresses zeros");
            let out = decompress(data.clone(), codec, plain.len()).unwrap();
            assert_eq!(&out[..], &plain[..], "{codec:?}");
            let err = decompress(data, codec, plain.len() - 1).unwrap_err();
            assert!(err.contains("more than"), "{codec:?}: {err}");
        }
    }

    #[test]
    fn a_cut_xerial_stream_is_refused() {
        let mut xerial = XERIAL_HEADER.to_vec();
        xerial.extend_from_slice(&1000u32.to_be_bytes());
        xerial.extend_from_slice(&[0; 10]);
        let err = decompress(Bytes::from(xerial), Compression::Snappy, 1 << 20).unwrap_err();
        assert!(err.contains("has 10 left"), "{err}");
    }
}
