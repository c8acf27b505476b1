//! The error codes a response carries, wherever its API puts them (the
//! whole response, each topic, each partition), so `/metrics` can count
//! requests by API and error.

use kafka_protocol::messages::ResponseKind;

/// Calls `f` with every error code in `body`, successes (0) included.
pub(crate) fn error_codes(body: &ResponseKind, mut f: impl FnMut(i16)) {
    // Each API has its own generated topic and partition types, alike in
    // shape only, so a function could not take them all.
    macro_rules! partition_codes {
        ($topics:expr, $partitions:ident) => {
            partition_codes!($topics, $partitions, error_code)
        };
        ($topics:expr, $partitions:ident, $code:ident) => {
            $topics
                .iter()
                .flat_map(|t| &t.$partitions)
                .for_each(|p| f(p.$code))
        };
    }
    match body {
        ResponseKind::Produce(r) => partition_codes!(r.responses, partition_responses),
        ResponseKind::Fetch(r) => {
            f(r.error_code);
            partition_codes!(r.responses, partitions);
        }
        ResponseKind::ListOffsets(r) => partition_codes!(r.topics, partitions),
        ResponseKind::Metadata(r) => r.topics.iter().for_each(|t| {
            f(t.error_code);
            t.partitions.iter().for_each(|p| f(p.error_code));
        }),
        ResponseKind::OffsetCommit(r) => partition_codes!(r.topics, partitions),
        ResponseKind::OffsetFetch(r) => {
            f(r.error_code);
            partition_codes!(r.topics, partitions);
            r.groups.iter().for_each(|g| {
                f(g.error_code);
                partition_codes!(g.topics, partitions);
            });
        }
        ResponseKind::FindCoordinator(r) => {
            f(r.error_code);
            r.coordinators.iter().for_each(|c| f(c.error_code));
        }
        ResponseKind::JoinGroup(r) => f(r.error_code),
        ResponseKind::SyncGroup(r) => f(r.error_code),
        ResponseKind::Heartbeat(r) => f(r.error_code),
        ResponseKind::LeaveGroup(r) => {
            f(r.error_code);
            r.members.iter().for_each(|m| f(m.error_code));
        }
        ResponseKind::ListGroups(r) => f(r.error_code),
        ResponseKind::DescribeGroups(r) => r.groups.iter().for_each(|g| f(g.error_code)),
        ResponseKind::DeleteGroups(r) => r.results.iter().for_each(|g| f(g.error_code)),
        ResponseKind::OffsetDelete(r) => {
            f(r.error_code);
            partition_codes!(r.topics, partitions);
        }
        ResponseKind::CreateTopics(r) => r.topics.iter().for_each(|t| f(t.error_code)),
        ResponseKind::DeleteTopics(r) => r.responses.iter().for_each(|t| f(t.error_code)),
        ResponseKind::CreatePartitions(r) => r.results.iter().for_each(|t| f(t.error_code)),
        ResponseKind::DescribeConfigs(r) => r.results.iter().for_each(|t| f(t.error_code)),
        ResponseKind::AlterConfigs(r) => r.responses.iter().for_each(|t| f(t.error_code)),
        ResponseKind::IncrementalAlterConfigs(r) => {
            r.responses.iter().for_each(|t| f(t.error_code));
        }
        ResponseKind::InitProducerId(r) => f(r.error_code),
        ResponseKind::AddPartitionsToTxn(r) => {
            f(r.error_code);
            partition_codes!(
                r.results_by_topic_v3_and_below,
                results_by_partition,
                partition_error_code
            );
        }
        ResponseKind::AddOffsetsToTxn(r) => f(r.error_code),
        ResponseKind::EndTxn(r) => f(r.error_code),
        ResponseKind::TxnOffsetCommit(r) => partition_codes!(r.topics, partitions),
        ResponseKind::DescribeCluster(r) => f(r.error_code),
        ResponseKind::ApiVersions(r) => f(r.error_code),
        _ => {}
    }
}
