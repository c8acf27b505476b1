//! `kappa.gateway.v1.Gateway`: each call admits its sender as the HTTP API
//! does, then runs the same code as its HTTP twin.

use std::pin::Pin;
use std::time::Instant;

use futures_util::Stream;
use kappa_log::Position;
use kappa_service::{Envelope, Problem};
use tonic::{Request, Response, Status};

use super::proto;
use super::status::status_of;
use crate::api::Shared;
use crate::api::commands::{Submission, idempotency_key, submit, sync_timeout, validate_command};
use crate::api::history::CommandStatus;
use crate::api::live::{Frame, decode_cursor, follow_from, starting_cursor};
use crate::api::views::Scan;
use crate::auth::{Access, Principal};

/// The gateway's gRPC service.
pub(crate) struct GatewayService {
    state: Shared,
}

impl GatewayService {
    pub(crate) fn new(state: &Shared) -> Self {
        Self {
            state: state.clone(),
        }
    }

    /// Counts an answer in `/metrics` under the method's path, with the
    /// status of its HTTP twin, and turns a problem into its gRPC status.
    fn answer<T>(
        &self,
        method: &str,
        started: Instant,
        result: Result<T, Problem>,
    ) -> Result<Response<T>, Status> {
        let status = result
            .as_ref()
            .map_or_else(|p| p.status().as_u16(), |_| 200);
        self.state.metrics.request(
            &format!("/kappa.gateway.v1.Gateway/{method}"),
            "POST",
            status,
            started.elapsed(),
        );
        result.map(Response::new).map_err(|p| status_of(&p))
    }

    /// Admits a read of `view`: one key, or a scan (`None`).
    fn admit_view<T>(
        &self,
        request: &Request<T>,
        view: &str,
        key: Option<&str>,
        what: &str,
    ) -> Result<(), Problem> {
        admit(
            &self.state,
            request,
            Some(Access::View { store: view, key }),
            what,
        )
        .map(drop)
    }

    /// A live stream of `topics` for a request the policy allows as stream `name`.
    fn stream(
        &self,
        request: Request<proto::StreamRequest>,
        topics: &[String],
        name: &'static str,
    ) -> Result<RecordStream, Problem> {
        admit(&self.state, &request, Some(Access::Stream { name }), name)?;
        let r = request.into_inner();
        let given = r
            .cursor
            .as_deref()
            .map(|text| decode_cursor(topics, self.state.partitions, text, "cursor"))
            .transpose()?;
        let cursor = starting_cursor(&self.state, topics, given, r.from_beginning)?;
        let frames = follow_from(&self.state, cursor, r.action, None, |frame| match frame {
            Frame::Record {
                cursor,
                position,
                value,
            } => Some(
                record(value, &position)
                    .map(|record| proto::StreamResponse {
                        record: Some(record),
                        cursor,
                    })
                    .map_err(|p| status_of(&p)),
            ),
            Frame::Sampled(_) => None,
            Frame::Failed(why) => Some(Err(Status::unavailable(format!(
                "the live stream stopped: {why}"
            )))),
        })?;
        Ok(Box::pin(frames))
    }
}

type RecordStream = Pin<Box<dyn Stream<Item = Result<proto::StreamResponse, Status>> + Send>>;

/// The sender of a request, admitted as the HTTP API admits one (the same
/// credentials, policy and request budget); `None` when the service does
/// not authenticate.
fn admit<T>(
    state: &Shared,
    request: &Request<T>,
    access: Option<Access<'_>>,
    what: &str,
) -> Result<Option<Principal>, Problem> {
    let authorization = request
        .metadata()
        .get("authorization")
        .map(|v| v.to_str().unwrap_or("\u{fffd}"));
    crate::api::admit(state, authorization, access, what)
}

/// An interceptor that admits a request to a whole service as the route `path`.
pub(crate) fn admitted(
    state: &Shared,
    path: &'static str,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone + Send + Sync + 'static {
    let state = state.clone();
    move |request: Request<()>| {
        admit(&state, &request, Some(Access::Route { path }), path)
            .map(|_| request)
            .map_err(|p| status_of(&p))
    }
}

/// A stored command or event as a message.
fn record(json: &[u8], position: &Position) -> Result<proto::Record, Problem> {
    let e: Envelope = serde_json::from_slice(json).map_err(|e| {
        Problem::internal(format!("stored record {position} is not an envelope: {e}"))
    })?;
    Ok(record_of(e, position))
}

/// A command or event at `position` as a message.
fn record_of(e: Envelope, position: &Position) -> proto::Record {
    proto::Record {
        id: e.id.to_string(),
        action: e.action,
        data_json: e.data.to_string(),
        key: e.key,
        timestamp_ms: e.timestamp,
        parent: e.parent.map(|p| p.to_string()),
        error: e.error,
        idempotency_key: e.idempotency_key,
        principal: e.principal,
        topic: position.topic.to_string(),
        partition: position.partition,
        offset: position.offset,
        position: position.to_string(),
    }
}

fn status_message(status: CommandStatus) -> proto::CommandStatus {
    match status {
        CommandStatus::Pending => proto::CommandStatus::Pending,
        CommandStatus::Succeeded => proto::CommandStatus::Succeeded,
        CommandStatus::Failed => proto::CommandStatus::Failed,
    }
}

#[tonic::async_trait]
impl proto::gateway_server::Gateway for GatewayService {
    async fn send_command(
        &self,
        request: Request<proto::SendCommandRequest>,
    ) -> Result<Response<proto::SendCommandResponse>, Status> {
        let started = Instant::now();
        let state = &self.state;
        // The policy is applied by `submit`, once the action and key are known.
        let principal = match admit(state, &request, None, "SendCommand") {
            Ok(principal) => principal,
            Err(refused) => return self.answer("SendCommand", started, Err(refused)),
        };
        let result = async {
            let r = request.into_inner();
            let data = serde_json::from_str(&r.data_json).map_err(|e| {
                (
                    "malformed",
                    Problem::bad_request(format!("data_json is not JSON: {e}")),
                )
            })?;
            let command = validate_command(&state.actions, &r.action, data, r.key)?;
            let submission = Submission {
                command,
                idempotency_key: r
                    .idempotency_key
                    .as_deref()
                    .map(idempotency_key)
                    .transpose()?,
                wait: r.wait.then(|| sync_timeout(state, r.timeout_ms)),
            };
            let submitted = submit(state, principal.as_ref(), submission).await?;
            let mut events = Vec::new();
            for (position, json) in submitted.events.iter().flatten() {
                events.push(record(json, position).map_err(|p| ("failed", p))?);
            }
            let status = CommandStatus::from_rejections(events.iter().map(|e| e.error));
            Ok(proto::SendCommandResponse {
                // From the command in hand: the stored bytes need no parsing.
                command: Some(record_of(submitted.command, &submitted.stored.position)),
                status: status_message(status).into(),
                events,
                replayed: submitted.replayed,
            })
        }
        .await
        .map_err(|(reason, problem): (&'static str, Problem)| {
            state.metrics.rejected(reason);
            problem
        });
        self.answer("SendCommand", started, result)
    }

    async fn get_command(
        &self,
        request: Request<proto::GetCommandRequest>,
    ) -> Result<Response<proto::GetCommandResponse>, Status> {
        let started = Instant::now();
        let result = async {
            admit(
                &self.state,
                &request,
                Some(Access::Stream { name: "commands" }),
                "GetCommand",
            )?;
            let id = &request.get_ref().id;
            let id = id
                .parse()
                .map_err(|_| Problem::bad_request(format!("{id:?} is not an id (a UUID)")))?;
            let (stored, outcomes) = crate::api::history::command(&self.state, id).await?;
            Ok(proto::GetCommandResponse {
                command: Some(record(&stored.json, &stored.position)?),
                status: status_message(CommandStatus::of(&outcomes)).into(),
                event_ids: outcomes.into_iter().map(|(id, _)| id).collect(),
            })
        }
        .await;
        self.answer("GetCommand", started, result)
    }

    async fn list_views(
        &self,
        request: Request<proto::ListViewsRequest>,
    ) -> Result<Response<proto::ListViewsResponse>, Status> {
        let started = Instant::now();
        let result = admit(
            &self.state,
            &request,
            Some(Access::Route { path: "/views" }),
            "ListViews",
        )
        .map(|_| proto::ListViewsResponse {
            views: self
                .state
                .views
                .iter()
                .map(|v| proto::View {
                    name: v.name().to_owned(),
                    store: v.store.name().to_owned(),
                    kind: v.kind.name().to_owned(),
                    application_id: v.streams.application_id().to_owned(),
                    inputs: v
                        .streams
                        .input_topics()
                        .iter()
                        .map(ToString::to_string)
                        .collect(),
                    partitions: v.streams.partitions(),
                    position: kappa_service::position::reflected(&v.streams, None),
                })
                .collect(),
        });
        self.answer("ListViews", started, result)
    }

    async fn get_view(
        &self,
        request: Request<proto::GetViewRequest>,
    ) -> Result<Response<proto::GetViewResponse>, Status> {
        let started = Instant::now();
        let result = async {
            let r = request.get_ref();
            self.admit_view(&request, &r.view, Some(&r.key), "GetView")?;
            let read = crate::api::views::read_key(
                &self.state,
                &r.view,
                &r.key,
                r.as_of_ms,
                r.min_position.as_deref(),
                r.wait_ms,
            )
            .await?;
            Ok(proto::GetViewResponse {
                view: r.view.clone(),
                key_json: read.key.to_string(),
                value_json: read.value.to_string(),
                position: read.position,
                valid_from_ms: read.valid_from,
            })
        }
        .await;
        self.answer("GetView", started, result)
    }

    async fn scan_view(
        &self,
        request: Request<proto::ScanViewRequest>,
    ) -> Result<Response<proto::ScanViewResponse>, Status> {
        let started = Instant::now();
        let result = async {
            let r = request.get_ref();
            self.admit_view(&request, &r.view, None, "ScanView")?;
            let scan = Scan {
                prefix: r.prefix.as_deref(),
                from: r.from.as_deref(),
                to: r.to.as_deref(),
                after: r.after.as_deref(),
                limit: r.limit.map(|l| l as usize),
            };
            let page = crate::api::views::scan_page(
                &self.state,
                &r.view,
                &scan,
                r.min_position.as_deref(),
                r.wait_ms,
            )
            .await?;
            Ok(proto::ScanViewResponse {
                view: r.view.clone(),
                entries: page
                    .entries
                    .into_iter()
                    .map(|(key, value)| proto::Entry {
                        key_json: key.to_string(),
                        value_json: value.to_string(),
                    })
                    .collect(),
                position: page.position,
                // As the key's text, which `after` takes.
                next_after: page.next_after.map(|k| match k {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                }),
            })
        }
        .await;
        self.answer("ScanView", started, result)
    }

    async fn get_windows(
        &self,
        request: Request<proto::GetWindowsRequest>,
    ) -> Result<Response<proto::GetWindowsResponse>, Status> {
        let started = Instant::now();
        let result = async {
            let r = request.get_ref();
            self.admit_view(&request, &r.view, Some(&r.key), "GetWindows")?;
            let (windows, position) = crate::api::views::read_windows(
                &self.state,
                &r.view,
                &r.key,
                (r.from_ms, r.to_ms),
                r.min_position.as_deref(),
                r.wait_ms,
            )
            .await?;
            Ok(proto::GetWindowsResponse {
                view: r.view.clone(),
                key: r.key.clone(),
                windows: windows
                    .into_iter()
                    .map(|(start_ms, value)| proto::Window {
                        start_ms,
                        value_json: value.to_string(),
                    })
                    .collect(),
                position,
            })
        }
        .await;
        self.answer("GetWindows", started, result)
    }

    type StreamCommandsStream = RecordStream;

    async fn stream_commands(
        &self,
        request: Request<proto::StreamRequest>,
    ) -> Result<Response<Self::StreamCommandsStream>, Status> {
        let started = Instant::now();
        let topics = [self.state.config.commands_topic.clone()];
        let result = self.stream(request, &topics, "commands");
        self.answer("StreamCommands", started, result)
    }

    type StreamEventsStream = RecordStream;

    async fn stream_events(
        &self,
        request: Request<proto::StreamRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        let started = Instant::now();
        let topics = self.state.config.event_topics.clone();
        let result = self.stream(request, &topics, "events");
        self.answer("StreamEvents", started, result)
    }
}
