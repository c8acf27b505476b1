//! A request frame to a typed request, without touching any state: what
//! the connection loop and the fuzz target share.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;

use crate::versions;

/// A decoded request.
#[derive(Debug)]
pub(crate) struct Request {
    pub api_key: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: RequestKind,
}

/// Why a frame is not a request the node serves.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// An `ApiVersions` newer than served: answered with the error and
    /// the served versions, in the oldest format (Kafka's rule).
    ApiVersionsTooNew { correlation_id: i32 },
    /// Anything else: the connection closes, as Kafka closes it.
    Close(String),
}

/// Decodes one frame (its size prefix already read).
pub(crate) fn request(mut frame: Bytes) -> Result<Request, Refusal> {
    let close = Refusal::Close;
    if frame.len() < 8 {
        return Err(close(format!(
            "a {}-byte frame is shorter than a request header",
            frame.len()
        )));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(key).map_err(|()| close(format!("unknown API key {key}")))?;
    let range =
        versions::supported(api_key).ok_or_else(|| close(format!("{api_key:?} is not served")))?;
    if version < range.min || version > range.max {
        if api_key == ApiKey::ApiVersions {
            return Err(Refusal::ApiVersionsTooNew { correlation_id });
        }
        return Err(close(format!(
            "{api_key:?} v{version} is not served (v{}..=v{})",
            range.min, range.max
        )));
    }
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version))
        .map_err(|e| close(format!("{api_key:?} v{version} header: {e:#}")))?;
    let body = RequestKind::decode(api_key, &mut frame, version)
        .map_err(|e| close(format!("{api_key:?} v{version} body: {e:#}")))?;
    Ok(Request {
        api_key,
        version,
        header,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames the fuzz target found: each declares an array of 2^31 or
    /// 2^32 elements in a few bytes, which once asked the allocator for
    /// 139 GB and aborted the process.
    #[test]
    fn a_length_prefix_past_the_frame_is_refused_not_allocated() {
        let metadata_v1 = b"\x00\x03\x00\x01\xff\xff\x00\x00\x00\x02\x00\x04seed\xff\xff\xff\xff";
        let metadata_v4 = b"\x00\x03\x00\x04\x02\x01\x00\x00\x00\x00seed\xff\xff\xff\xff";
        // A flexible version: a compact array whose varint length is 2^32 - 1.
        let mut metadata_v12 = b"\x00\x03\x00\x0c\x00\x00\x00\x01\x00\x04seed\x00".to_vec();
        metadata_v12.extend_from_slice(b"\xff\xff\xff\xff\x0f");
        for frame in [&metadata_v1[..], &metadata_v4[..], &metadata_v12[..]] {
            match request(Bytes::copy_from_slice(frame)) {
                Err(Refusal::Close(why)) => assert!(why.contains("bytes left"), "{why}"),
                other => panic!("{frame:?} gave {other:?}"),
            }
        }
    }
}
