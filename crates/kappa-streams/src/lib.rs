//! Kappa's functional core: typed dataflow topologies over the [`kappa_log::Log`]
//! trait, in Kafka Streams' vocabulary.
//!
//! Build a [`Topology`] with a [`StreamsBuilder`]; run it with [`Streams`]
//! on any log (embedded, in memory, later Kafka) or test it with the
//! [`TopologyTestDriver`]. Each commit writes a task's outputs, store
//! changes and input positions atomically, so every input affects the
//! outputs and stores exactly once, whatever crashes in between.
//!
//! Records a topology emits carry provenance headers (see [`provenance`]).

mod context;
mod driver;
mod error;
mod global;
mod grouped_table;
mod joins;
mod kstream;
mod ktable;
mod node;
mod ops;
mod processor;
pub mod provenance;
mod registry;
mod reset;
mod runtime;
mod serde;
mod store;
mod store_cache;
mod stream_join;
mod tasks;
mod topology;
mod versioned;
mod window_store;
mod windowing;

pub use context::TaskContext;
pub use driver::TopologyTestDriver;
pub use error::StreamsError;
pub use global::GlobalKTable;
pub use grouped_table::{Change, KGroupedTable};
pub use kstream::{KStream, Predicate};
pub use ktable::{KGroupedStream, KTable};
pub use node::Data;
pub use ops::{ERROR_HEADER, TimestampExtractor};
pub use processor::{Processor, ProcessorContext, Punctuation, StoreHandle};
pub use registry::TaskOwner;
pub use reset::{ResetReport, rebuild_application, reset_application};
pub use runtime::{Assignment, STORE_CACHE_BYTES_DEFAULT, Streams, StreamsConfig, StreamsMetrics};
pub use serde::{I64, Json, RawBytes, Serde, SerdeError, Utf8};
pub use store::{ReadOnlyStore, StoreKind, StoreSpec};
pub use stream_join::{JoinSerdes, JoinWindows};
pub use tasks::TaskState;
pub use topology::{Materialized, NodeDescription, StreamsBuilder, Topology};
pub use versioned::VersionedStoreHandle;
pub use window_store::WindowStoreHandle;
pub use windowing::{
    Emit, SessionWindowedKStream, SessionWindowedSerde, SessionWindows, SlidingWindowedKStream,
    SlidingWindows, TimeWindowedKStream, TimeWindows, Window, Windowed, WindowedKStream,
    WindowedSerde,
};
