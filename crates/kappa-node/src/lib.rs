//! A Kappa node: the Kafka wire protocol served from a Kappa log.
//!
//! The embedded log belongs to one process. A node lets every other
//! process share it: another Kappa service with `--log kafka://HOST:PORT`,
//! a Python or Node program with a stock Kafka client, `kcat`. The node
//! stays the log's only owner; the others are clients.
//!
//! Kafka's requests map onto the [`Log`](kappa_log::Log) trait:
//!
//! * a produce request is a commit, group-committed with the produce
//!   requests that arrive beside it (one fsync for many requests);
//! * a fetch is a tail read that waits for a commit, not for a timer;
//! * a consumer group's committed offsets are the log's group positions
//!   (one namespace: `kappa consume --group G` and a Kafka consumer in
//!   group `G` see the same positions);
//! * an idempotent producer's sequence numbers are kept in the log's
//!   metadata, in the same commit as the records they admit, so a retried
//!   batch is acknowledged without being appended twice, across restarts.
//!
//! `docs/node.md` lists what is implemented of the protocol, API by API.
//!
//! ```no_run
//! use std::sync::Arc;
//! use kappa_log::EmbeddedLog;
//! use kappa_node::{Node, NodeConfig};
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let log = Arc::new(EmbeddedLog::open("./kappa-data")?);
//! let node = Node::bind(log, NodeConfig::new("127.0.0.1:9092".parse()?)).await?;
//! println!("serving the log at {}", node.local_addr());
//! node.serve(std::future::pending()).await;
//! # Ok(()) }
//! ```

mod apis;
mod codes;
mod committer;
mod compression;
mod config;
mod decode;
mod error;
mod frame;
mod groups;
mod logins;
mod producers;
mod records;
mod security;
mod server;
mod stats;
pub mod testing;
mod ticker;
mod transactions;
mod versions;

#[doc(hidden)]
pub mod fuzzing {
    //! Entry points for the fuzz targets in `crates/kappa-node/fuzz`.

    use bytes::Bytes;
    use kafka_protocol::messages::RequestKind;

    /// Decodes a request frame and, for a produce request, every
    /// partition's record batches; a batch that decodes is written back
    /// and must decode to the same records. Panics only on a bug.
    pub fn request(frame: &[u8]) {
        let Ok(r) = crate::decode::request(Bytes::copy_from_slice(frame)) else {
            return;
        };
        if let RequestKind::Produce(p) = r.body {
            for t in p.topic_data {
                for d in t.partition_data {
                    batches(d.records.unwrap_or_default());
                }
            }
        }
    }

    /// Decodes record batches; what decodes must survive a round trip.
    pub fn batches(data: Bytes) {
        let Ok(decoded) = crate::records::decode_batches(data) else {
            return;
        };
        let records: Vec<kappa_log::Record> = decoded
            .iter()
            .flat_map(|b| &b.records)
            .enumerate()
            .map(|(i, r)| kappa_log::Record {
                topic: "t".into(),
                partition: 0,
                offset: i as u64,
                timestamp: r.timestamp.unwrap_or(0),
                key: r.key.clone(),
                value: r.value.clone(),
                headers: r.headers.clone(),
            })
            .collect();
        let mut out = bytes::BytesMut::new();
        crate::records::encode_records(&records, &mut out);
        let again = crate::records::decode_batches(out.freeze())
            .unwrap_or_else(|e| panic!("re-encoded batch: {e}"));
        let again: Vec<_> = again.into_iter().flat_map(|b| b.records).collect();
        assert_eq!(again.len(), records.len());
        for (a, r) in again.iter().zip(&records) {
            assert_eq!(
                (&a.key, &a.value, &a.headers),
                (&r.key, &r.value, &r.headers)
            );
            assert_eq!(a.timestamp, Some(r.timestamp));
        }
    }
}

pub use config::{FRAME_BYTES_MAX_DEFAULT, NodeConfig};
pub use error::NodeError;
pub use security::NodeSecurity;
pub use server::Node;
pub use stats::NodeStats;
pub use versions::{SUPPORTED_APIS, SupportedApi};
