//! Interactive queries: an application's stores served over HTTP.

use std::sync::Arc;

use bytes::Bytes;
use kappa_streams::{ReadOnlyStore, Streams};
use serde_json::Value;

/// How a store's keys are serialized (how a key in a URL becomes store bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFormat {
    /// UTF-8 text, as [`kappa_streams::Utf8`] writes it.
    Utf8,
    /// A JSON string, as [`kappa_streams::Json<String>`] writes it.
    JsonString,
    /// An i64, big-endian, as [`kappa_streams::I64`] writes it.
    I64,
}

/// How a store's values are serialized (how they become JSON in answers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueFormat {
    /// JSON, as [`kappa_streams::Json`] writes it.
    Json,
    /// UTF-8 text, served as a JSON string.
    Utf8,
    /// An i64, big-endian, served as a JSON number.
    I64,
}

/// What kind of store a view is, which decides the lookups it offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewKind {
    /// Key-value: get, prefix and range scans.
    KeyValue,
    /// Versioned key-value: also `?as_of=` lookups.
    Versioned,
    /// Windowed: `/windows?from=&to=` fetches per key.
    Windowed,
}

impl ViewKind {
    /// The kind as `/views` names it: `keyvalue`, `versioned`, `windowed`.
    pub fn name(self) -> &'static str {
        match self {
            Self::KeyValue => "keyvalue",
            Self::Versioned => "versioned",
            Self::Windowed => "windowed",
        }
    }
}

/// A store registered with the gateway.
///
/// ```no_run
/// # fn demo(streams: std::sync::Arc<kappa_streams::Streams>) {
/// use kappa_gateway::{KeyFormat, ValueFormat, View};
/// let view = View::new("balances", &streams, "balances")
///     .keys(KeyFormat::Utf8)
///     .values(ValueFormat::Json);
/// # }
/// ```
#[derive(Clone)]
pub struct View {
    name: String,
    pub(crate) streams: Arc<Streams>,
    pub(crate) store: ReadOnlyStore,
    pub(crate) keys: KeyFormat,
    pub(crate) values: ValueFormat,
    pub(crate) kind: ViewKind,
}

impl View {
    /// Serves store `store` of the running topology `streams` as `/views/{name}`
    /// (UTF-8 keys, JSON values, key-value lookups unless changed).
    pub fn new(name: &str, streams: &Arc<Streams>, store: &str) -> Self {
        Self {
            name: name.to_owned(),
            streams: streams.clone(),
            store: streams.store(store),
            keys: KeyFormat::Utf8,
            values: ValueFormat::Json,
            kind: ViewKind::KeyValue,
        }
    }

    /// Sets the key format.
    #[must_use]
    pub fn keys(mut self, keys: KeyFormat) -> Self {
        self.keys = keys;
        self
    }

    /// Sets the value format.
    #[must_use]
    pub fn values(mut self, values: ValueFormat) -> Self {
        self.values = values;
        self
    }

    /// Sets the kind of store.
    #[must_use]
    pub fn kind(mut self, kind: ViewKind) -> Self {
        self.kind = kind;
        self
    }

    /// The view's name in URLs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Serializes a key from its URL form.
    ///
    /// # Errors
    ///
    /// The text is not a key of this format.
    pub fn encode_key(&self, text: &str) -> Result<Vec<u8>, String> {
        match self.keys {
            KeyFormat::Utf8 => Ok(text.as_bytes().to_vec()),
            KeyFormat::JsonString => serde_json::to_vec(text).map_err(|e| e.to_string()),
            KeyFormat::I64 => text
                .parse::<i64>()
                .map(|n| n.to_be_bytes().to_vec())
                .map_err(|_| format!("{text:?} is not an integer key")),
        }
    }

    /// A stored key as JSON.
    pub fn decode_key(&self, bytes: &[u8]) -> Value {
        match self.keys {
            KeyFormat::Utf8 => Value::String(String::from_utf8_lossy(bytes).into_owned()),
            KeyFormat::JsonString => serde_json::from_slice(bytes).unwrap_or_else(|_| lossy(bytes)),
            KeyFormat::I64 => bytes
                .try_into()
                .map(|b| Value::from(i64::from_be_bytes(b)))
                .unwrap_or_else(|_| lossy(bytes)),
        }
    }

    /// A stored value as JSON.
    pub fn decode_value(&self, bytes: &Bytes) -> Value {
        match self.values {
            ValueFormat::Json => serde_json::from_slice(bytes).unwrap_or_else(|_| lossy(bytes)),
            ValueFormat::Utf8 => lossy(bytes),
            ValueFormat::I64 => bytes[..]
                .try_into()
                .map(|b| Value::from(i64::from_be_bytes(b)))
                .unwrap_or_else(|_| lossy(bytes)),
        }
    }
}

fn lossy(bytes: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(bytes).into_owned())
}
