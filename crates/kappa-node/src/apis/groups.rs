//! JoinGroup, SyncGroup, Heartbeat, LeaveGroup, ListGroups, DescribeGroups.

use std::time::Duration;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DescribeGroupsRequest, DescribeGroupsResponse, GroupId, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, ResponseKind, SyncGroupRequest, SyncGroupResponse,
};
use kappa_log::valid_group_name;

use super::{Pending, RequestContext, encode, text};
use crate::codes;
use crate::groups::{JoinOutcome, JoinRequest, SyncOutcome};

fn millis(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

pub(crate) fn join(ctx: RequestContext, req: JoinGroupRequest) -> Pending {
    let group = req.group_id.0.to_string();
    let outcome = if valid_group_name(&group) {
        ctx.shared.groups.join(JoinRequest {
            group,
            member_id: req.member_id.to_string(),
            client_id: ctx.client_id.clone(),
            client_host: format!("/{}", ctx.peer.ip()),
            session_timeout: millis(req.session_timeout_ms),
            // v0 has no rebalance timeout; Kafka uses the session timeout.
            rebalance_timeout: millis(if ctx.version >= 1 {
                req.rebalance_timeout_ms
            } else {
                req.session_timeout_ms
            }),
            protocol_type: req.protocol_type.to_string(),
            protocols: req
                .protocols
                .into_iter()
                .map(|p| (p.name.to_string(), p.metadata))
                .collect(),
            require_member_id: ctx.version >= 4,
        })
    } else {
        Err(Box::new(JoinOutcome::error(
            codes::INVALID_GROUP_ID,
            req.member_id.as_str(),
        )))
    };
    match outcome {
        Err(outcome) => Pending::now(&ctx, join_response(&ctx, *outcome)),
        Ok(waiting) => Pending::spawned(async move {
            let outcome = waiting
                .await
                .unwrap_or_else(|_| JoinOutcome::error(codes::UNKNOWN_MEMBER_ID, ""));
            encode(
                ctx.api_key,
                ctx.version,
                ctx.correlation_id,
                &join_response(&ctx, outcome),
            )
            .map(Some)
        }),
    }
}

fn join_response(ctx: &RequestContext, o: JoinOutcome) -> ResponseKind {
    let mut r = JoinGroupResponse::default();
    r.error_code = o.error_code;
    r.generation_id = o.generation;
    if ctx.version >= 7 {
        r.protocol_type = o.protocol_type.map(text);
    }
    r.protocol_name = o.protocol.map(text);
    if ctx.version < 7 && r.protocol_name.is_none() {
        // Not nullable before v7.
        r.protocol_name = Some(text(""));
    }
    r.leader = text(o.leader);
    r.member_id = text(o.member_id);
    r.members = o
        .members
        .into_iter()
        .map(|(id, metadata)| {
            JoinGroupResponseMember::default()
                .with_member_id(text(id))
                .with_metadata(metadata)
        })
        .collect();
    ResponseKind::JoinGroup(r)
}

pub(crate) fn sync(ctx: RequestContext, req: SyncGroupRequest) -> Pending {
    let assignments = req
        .assignments
        .into_iter()
        .map(|a| (a.member_id.to_string(), a.assignment))
        .collect();
    match ctx.shared.groups.sync(
        req.group_id.0.as_str(),
        req.generation_id,
        req.member_id.as_str(),
        assignments,
    ) {
        Err(outcome) => Pending::now(&ctx, sync_response(&ctx, outcome)),
        Ok(waiting) => Pending::spawned(async move {
            let outcome = waiting
                .await
                .unwrap_or_else(|_| SyncOutcome::error(codes::REBALANCE_IN_PROGRESS));
            encode(
                ctx.api_key,
                ctx.version,
                ctx.correlation_id,
                &sync_response(&ctx, outcome),
            )
            .map(Some)
        }),
    }
}

fn sync_response(ctx: &RequestContext, o: SyncOutcome) -> ResponseKind {
    let mut r = SyncGroupResponse::default();
    r.error_code = o.error_code;
    if ctx.version >= 5 {
        r.protocol_type = o.protocol_type.map(text);
        r.protocol_name = o.protocol.map(text);
    }
    r.assignment = o.assignment;
    ResponseKind::SyncGroup(r)
}

pub(crate) fn heartbeat(ctx: &RequestContext, req: HeartbeatRequest) -> ResponseKind {
    let mut r = HeartbeatResponse::default();
    r.error_code = ctx.shared.groups.heartbeat(
        req.group_id.0.as_str(),
        req.generation_id,
        req.member_id.as_str(),
    );
    ResponseKind::Heartbeat(r)
}

pub(crate) fn leave(ctx: &RequestContext, req: LeaveGroupRequest) -> ResponseKind {
    let group = req.group_id.0.as_str();
    let mut r = LeaveGroupResponse::default();
    if ctx.version >= 3 {
        let ids: Vec<String> = req
            .members
            .iter()
            .map(|m| m.member_id.to_string())
            .collect();
        let codes = ctx.shared.groups.leave(group, &ids);
        r.members = req
            .members
            .into_iter()
            .zip(codes)
            .map(|(m, code)| {
                MemberResponse::default()
                    .with_member_id(m.member_id)
                    .with_group_instance_id(m.group_instance_id)
                    .with_error_code(code)
            })
            .collect();
    } else {
        let codes = ctx.shared.groups.leave(group, &[req.member_id.to_string()]);
        r.error_code = codes.first().copied().unwrap_or(codes::UNKNOWN_MEMBER_ID);
    }
    ResponseKind::LeaveGroup(r)
}

pub(crate) fn list(ctx: &RequestContext, req: ListGroupsRequest) -> ResponseKind {
    let mut r = ListGroupsResponse::default();
    r.groups = ctx
        .shared
        .groups
        .list()
        .into_iter()
        .filter(|(_, _, state)| {
            req.states_filter.is_empty()
                || req
                    .states_filter
                    .iter()
                    .any(|s| s.as_str().eq_ignore_ascii_case(state.name()))
        })
        .map(|(name, protocol_type, state)| {
            let mut g = ListedGroup::default()
                .with_group_id(GroupId(text(name)))
                .with_protocol_type(text(protocol_type));
            if ctx.version >= 4 {
                g.group_state = text(state.name());
            }
            g
        })
        .collect();
    ResponseKind::ListGroups(r)
}

pub(crate) fn describe(ctx: &RequestContext, req: DescribeGroupsRequest) -> ResponseKind {
    let mut r = DescribeGroupsResponse::default();
    for id in req.groups {
        let mut g = DescribedGroup::default().with_group_id(id.clone());
        match ctx.shared.groups.describe(id.0.as_str()) {
            // Kafka describes a group it does not know as Dead, without error.
            None => g.group_state = text("Dead"),
            Some(d) => {
                g.group_state = text(d.state.name());
                g.protocol_type = text(d.protocol_type);
                g.protocol_data = text(d.protocol);
                g.members = d
                    .members
                    .into_iter()
                    .map(|(member, client, host, metadata, assignment)| {
                        DescribedGroupMember::default()
                            .with_member_id(text(member))
                            .with_client_id(text(client))
                            .with_client_host(text(host))
                            .with_member_metadata(metadata)
                            .with_member_assignment(assignment)
                    })
                    .collect();
            }
        }
        r.groups.push(g);
    }
    ResponseKind::DescribeGroups(r)
}
