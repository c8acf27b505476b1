//! Provenance headers: every record a topology emits names what caused it.

/// The input record that caused this one: `topic/partition/offset`.
pub const SOURCE_HEADER: &str = "kappa-source";
/// The record that directly caused this one (its position); equal to
/// `kappa-source` for records emitted by a topology.
pub const CAUSATION_HEADER: &str = "kappa-causation";
/// The originating record (a command) of the whole chain: copied from the
/// input's own `kappa-correlation`, or the input's position when it has none.
pub const CORRELATION_HEADER: &str = "kappa-correlation";
