//! Serdes: how keys and values become bytes on the log and back.

use std::marker::PhantomData;

use bytes::Bytes;

/// A value that failed to serialize or deserialize.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SerdeError(pub String);

/// Turns `T` into bytes and back. Implementations are stateless and shared
/// by every task, so they are `Send + Sync`.
///
/// ```
/// use kappa_streams::{Serde, Json};
/// let serde = Json::<Vec<u32>>::new();
/// let mut buf = Vec::new();
/// serde.serialize(&vec![1, 2], &mut buf).unwrap();
/// assert_eq!(buf, b"[1,2]");
/// assert_eq!(serde.deserialize(&buf).unwrap(), vec![1, 2]);
/// ```
pub trait Serde<T>: Send + Sync + 'static {
    /// Appends the encoding of `value` to `out`.
    ///
    /// # Errors
    ///
    /// The value cannot be encoded.
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SerdeError>;

    /// Decodes a value.
    ///
    /// # Errors
    ///
    /// The bytes are not a valid encoding.
    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError>;
}

/// JSON via serde, the default for application types.
pub struct Json<T>(PhantomData<fn() -> T>);

impl<T> Json<T> {
    /// The JSON serde for `T`.
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> Clone for Json<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Json<T> {}

impl<T> Default for Json<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Serde<T> for Json<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        serde_json::to_writer(out, value)
            .map_err(|e| SerdeError(format!("JSON encoding failed: {e}")))
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError> {
        serde_json::from_slice(bytes).map_err(|e| SerdeError(format!("invalid JSON: {e}")))
    }
}

/// UTF-8 strings, as Kafka's `StringSerde`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Utf8;

impl Serde<String> for Utf8 {
    fn serialize(&self, value: &String, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        out.extend_from_slice(value.as_bytes());
        Ok(())
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<String, SerdeError> {
        String::from_utf8(bytes.to_vec()).map_err(|_| SerdeError("not UTF-8".to_owned()))
    }
}

/// Raw bytes, unchanged.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawBytes;

impl Serde<Bytes> for RawBytes {
    fn serialize(&self, value: &Bytes, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        out.extend_from_slice(value);
        Ok(())
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<Bytes, SerdeError> {
        Ok(Bytes::copy_from_slice(bytes))
    }
}

/// 64-bit signed integers as 8 big-endian bytes, as Kafka's `LongSerde`
/// (what `count()` stores and emits).
#[derive(Clone, Copy, Debug, Default)]
pub struct I64;

impl Serde<i64> for I64 {
    fn serialize(&self, value: &i64, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        out.extend_from_slice(&value.to_be_bytes());
        Ok(())
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<i64, SerdeError> {
        let b: [u8; 8] = bytes
            .try_into()
            .map_err(|_| SerdeError(format!("expected 8 bytes for an i64, got {}", bytes.len())))?;
        Ok(i64::from_be_bytes(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i64_matches_kafka_long_serde() {
        let mut out = Vec::new();
        I64.serialize(&258, &mut out).unwrap();
        assert_eq!(out, [0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(I64.deserialize(&out).unwrap(), 258);
        assert!(I64.deserialize(b"123").is_err());
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(Utf8.deserialize(&[0xff]).is_err());
        assert!(Json::<u32>::new().deserialize(b"{").is_err());
    }
}
