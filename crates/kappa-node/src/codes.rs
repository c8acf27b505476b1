//! Kafka's error codes the node answers with (the protocol guide's table).

use kappa_log::LogError;

pub(crate) const NONE: i16 = 0;
pub(crate) const UNKNOWN_SERVER_ERROR: i16 = -1;
pub(crate) const OFFSET_OUT_OF_RANGE: i16 = 1;
pub(crate) const CORRUPT_MESSAGE: i16 = 2;
pub(crate) const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub(crate) const MESSAGE_TOO_LARGE: i16 = 10;
pub(crate) const RECORD_LIST_TOO_LARGE: i16 = 18;
pub(crate) const INVALID_TOPIC_EXCEPTION: i16 = 17;
pub(crate) const INVALID_REQUIRED_ACKS: i16 = 21;
pub(crate) const ILLEGAL_GENERATION: i16 = 22;
pub(crate) const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
pub(crate) const INVALID_GROUP_ID: i16 = 24;
pub(crate) const UNKNOWN_MEMBER_ID: i16 = 25;
pub(crate) const INVALID_SESSION_TIMEOUT: i16 = 26;
pub(crate) const REBALANCE_IN_PROGRESS: i16 = 27;
pub(crate) const UNSUPPORTED_VERSION: i16 = 35;
pub(crate) const TOPIC_ALREADY_EXISTS: i16 = 36;
pub(crate) const INVALID_PARTITIONS: i16 = 37;
pub(crate) const INVALID_REPLICATION_FACTOR: i16 = 38;
pub(crate) const INVALID_CONFIG: i16 = 40;
pub(crate) const INVALID_REQUEST: i16 = 42;
pub(crate) const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
pub(crate) const INVALID_TXN_STATE: i16 = 48;
pub(crate) const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
pub(crate) const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
pub(crate) const OPERATION_NOT_ATTEMPTED: i16 = 55;
pub(crate) const PRODUCER_FENCED: i16 = 90;
pub(crate) const INVALID_PRODUCER_EPOCH: i16 = 47;
pub(crate) const KAFKA_STORAGE_ERROR: i16 = 56;
pub(crate) const UNKNOWN_PRODUCER_ID: i16 = 59;
pub(crate) const UNSUPPORTED_COMPRESSION_TYPE: i16 = 76;
pub(crate) const MEMBER_ID_REQUIRED: i16 = 79;
pub(crate) const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
pub(crate) const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
pub(crate) const GROUP_AUTHORIZATION_FAILED: i16 = 30;
pub(crate) const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
pub(crate) const ILLEGAL_SASL_STATE: i16 = 34;
pub(crate) const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
pub(crate) const SASL_AUTHENTICATION_FAILED: i16 = 58;
pub(crate) const NON_EMPTY_GROUP: i16 = 68;
pub(crate) const GROUP_ID_NOT_FOUND: i16 = 69;
pub(crate) const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
pub(crate) const INVALID_RECORD: i16 = 87;

/// The Kafka error code a client understands for a log failure.
pub(crate) fn for_log_error(e: &LogError) -> i16 {
    match e {
        LogError::UnknownTopic(_) | LogError::PartitionOutOfRange { .. } => {
            UNKNOWN_TOPIC_OR_PARTITION
        }
        LogError::InvalidTopicName { .. } => INVALID_TOPIC_EXCEPTION,
        LogError::TopicExists(_) => TOPIC_ALREADY_EXISTS,
        LogError::OffsetOutOfRange { .. } => OFFSET_OUT_OF_RANGE,
        LogError::RecordTooLarge { .. } => MESSAGE_TOO_LARGE,
        LogError::MissingKey(_) => INVALID_RECORD,
        LogError::InvalidGroupName(_) => INVALID_GROUP_ID,
        LogError::InvalidConfig(_) => INVALID_CONFIG,
        LogError::Unsupported(_) => INVALID_REQUEST,
        _ => KAFKA_STORAGE_ERROR,
    }
}
