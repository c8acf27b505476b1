//! The Kafka backend of Kappa's [`kappa_log::Log`] trait, on librdkafka
//! (built statically by the `rdkafka` crate; no system library needed).
//!
//! Application code does not change: open a [`KafkaLog`] instead of an
//! embedded log and hand it to the same topologies, gateway and effect
//! runners. See `docs/kafka.md` for how commits stay exactly-once and where
//! state lives.

mod admin;
mod cache;
mod client;
mod config;
mod log;
mod produce;
mod read;
pub mod testing;
mod writeahead;

pub use admin::TopicAdmin;
pub use config::KafkaConfig;
pub use log::{COMMIT_SLOTS, KafkaLog, METADATA_TOPIC, RestoreStats};
