//! JoinGroup, SyncGroup, Heartbeat, LeaveGroup, ListGroups, DescribeGroups,
//! DeleteGroups.

use std::time::Duration;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, ResponseKind,
    SyncGroupRequest, SyncGroupResponse,
};
use kappa_log::valid_group_name;

use super::{Pending, RequestContext, text};
use crate::codes;
use crate::groups::{GroupState, JoinOutcome, JoinRequest, SyncOutcome};

fn millis(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

pub(crate) fn join(ctx: RequestContext, req: JoinGroupRequest) -> Pending {
    let group = req.group_id.0.to_string();
    let outcome = if !ctx.may_group(&group) {
        Err(Box::new(JoinOutcome::error(
            codes::GROUP_AUTHORIZATION_FAILED,
            req.member_id.as_str(),
        )))
    } else if valid_group_name(&group) {
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
            ctx.respond(&join_response(&ctx, outcome))
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
    if !ctx.may_group(req.group_id.0.as_str()) {
        return Pending::now(
            &ctx,
            sync_response(&ctx, SyncOutcome::error(codes::GROUP_AUTHORIZATION_FAILED)),
        );
    }
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
            ctx.respond(&sync_response(&ctx, outcome))
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
    if !ctx.may_group(req.group_id.0.as_str()) {
        r.error_code = codes::GROUP_AUTHORIZATION_FAILED;
        return ResponseKind::Heartbeat(r);
    }
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
    if !ctx.may_group(group) {
        r.error_code = codes::GROUP_AUTHORIZATION_FAILED;
        return ResponseKind::LeaveGroup(r);
    }
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
    let mut groups = ctx.shared.groups.list();
    // Groups known only by their committed offsets are listed too, Empty,
    // as Kafka lists them (Kappa applications' among them: one namespace).
    match ctx.shared.log.group_names() {
        Ok(names) => {
            for name in names {
                if !groups.iter().any(|(g, ..)| *g == name) {
                    groups.push((name, String::new(), GroupState::Empty));
                }
            }
            groups.sort_by(|a, b| a.0.cmp(&b.0));
        }
        Err(kappa_log::LogError::Unsupported(_)) => {}
        Err(e) => r.error_code = codes::for_log_error(&e),
    }
    r.groups = groups
        .into_iter()
        .filter(|(name, ..)| ctx.may_group(name))
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
        if !ctx.may_group(id.0.as_str()) {
            g.error_code = codes::GROUP_AUTHORIZATION_FAILED;
            r.groups.push(g);
            continue;
        }
        match ctx.shared.groups.describe(id.0.as_str()) {
            // A group known only by its committed offsets is Empty; one
            // Kafka does not know at all is Dead, without error.
            None => {
                let has_offsets = ctx
                    .shared
                    .log
                    .group_positions(id.0.as_str())
                    .is_ok_and(|p| !p.is_empty());
                g.group_state = text(if has_offsets { "Empty" } else { "Dead" });
            }
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

/// DeleteGroups: a group without members goes, with its committed offsets
/// (the log's group positions, which Kappa's own readers share).
pub(crate) fn delete(ctx: &RequestContext, req: DeleteGroupsRequest) -> ResponseKind {
    let mut r = DeleteGroupsResponse::default();
    for id in req.groups_names {
        let group = id.0.to_string();
        let code = delete_one(ctx, &group);
        if code == codes::NONE {
            tracing::info!(group, client = %ctx.client_id, "deleted a group");
        }
        r.results.push(
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(code),
        );
    }
    ResponseKind::DeleteGroups(r)
}

fn delete_one(ctx: &RequestContext, group: &str) -> i16 {
    if !valid_group_name(group) {
        return codes::INVALID_GROUP_ID;
    }
    if !ctx.may_group(group) {
        return codes::GROUP_AUTHORIZATION_FAILED;
    }
    let known = match ctx.shared.groups.forget_if_empty(group) {
        Ok(known) => known,
        Err(code) => return code,
    };
    match ctx.shared.log.delete_group_positions(group, None) {
        Ok(0) if !known => codes::GROUP_ID_NOT_FOUND,
        Ok(_) => codes::NONE,
        Err(e) => {
            tracing::error!(group, error = %e, "deleting a group's offsets failed");
            codes::for_log_error(&e)
        }
    }
}
