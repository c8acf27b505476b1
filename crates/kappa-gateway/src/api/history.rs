//! The history of commands and events, from the index.

use axum::extract::{OriginalUri, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Shared, blocking, json as json_response, query, with_position};
use crate::gateway::{ends_of, last_records};
use crate::index::{Index, Kind};
use kappa_service::Problem;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    offset: usize,
    limit: Option<usize>,
    after: Option<Uuid>,
    action: Option<String>,
    min_position: Option<String>,
    wait_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ByIdQuery {
    min_position: Option<String>,
    wait_ms: Option<u64>,
}

/// Read-your-writes on the history: wait until the index has processed the
/// given positions (of the command or event topics).
async fn indexed(
    state: &Shared,
    min_position: Option<&str>,
    wait_ms: Option<u64>,
) -> Result<(), Problem> {
    super::views::wait_if_asked(state, state.index.streams(), min_position, wait_ms).await
}

/// The id of a by-id request, once the index has reached its `min_position`.
async fn indexed_id(state: &Shared, id: &str, uri: &axum::http::Uri) -> Result<Uuid, Problem> {
    let id = id
        .parse()
        .map_err(|_| Problem::bad_request(format!("{id:?} is not an id (a UUID)")))?;
    let q: ByIdQuery = query(uri)?;
    indexed(state, q.min_position.as_deref(), q.wait_ms).await?;
    Ok(id)
}

/// A by-id read of the index, off the async workers, once the index has
/// reached the request's `min_position`; with the parsed id.
async fn read_by_id<T: Send + 'static>(
    state: &Shared,
    id: &str,
    uri: &axum::http::Uri,
    read: impl FnOnce(&Index, &Uuid) -> Result<T, Problem> + Send + 'static,
) -> Result<(Uuid, T), Problem> {
    let id = indexed_id(state, id, uri).await?;
    let s = state.clone();
    let found = blocking(move || read(&s.index, &id)).await?;
    Ok((id, found))
}

/// Default page size.
const LIMIT_DEFAULT: usize = 100;

/// How long a read by id waits for the index to reach what was written
/// before it; past it the answer is 503, as the index is not keeping up.
const INDEX_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

async fn list(state: Shared, uri: &axum::http::Uri, kind: Kind) -> Result<Response, Problem> {
    let q: ListQuery = query(uri)?;
    let limit = q.limit.unwrap_or(LIMIT_DEFAULT);
    if limit == 0 || limit > state.config.page_limit_max {
        return Err(Problem::bad_request(format!(
            "limit must be 1 to {}",
            state.config.page_limit_max
        )));
    }
    if kind == Kind::Command && q.action.is_some() {
        return Err(Problem::bad_request(
            "commands are not filtered by action; list events by action instead",
        ));
    }
    if let Some(a) = &q.action
        && !kappa_service::is_action_name(a)
    {
        return Err(Problem::bad_request(format!("{a:?} is not an action name")));
    }
    indexed(&state, q.min_position.as_deref(), q.wait_ms).await?;
    let (offset, after, action) = (q.offset, q.after.map(|a| a.to_string()), q.action.clone());
    let s = state.clone();
    let page = blocking(move || {
        Ok(s.index
            .list(kind, action.as_deref(), offset, after.as_deref(), limit)?)
    })
    .await?;
    let mut items = Vec::with_capacity(page.items.len());
    for item in &page.items {
        items.push(Value::Object(with_position(&item.json, &item.position)?));
    }
    let mut body = json!({
        "items": items,
        "total": page.total,
        "offset": q.offset,
        "limit": limit,
    });
    if let Some(next) = page.next_after {
        body["next_after"] = Value::from(next);
    }
    Ok(json_response(StatusCode::OK, &body))
}

pub(crate) async fn list_commands(
    State(state): State<Shared>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, Problem> {
    list(state, &uri, Kind::Command).await
}

pub(crate) async fn list_events(
    State(state): State<Shared>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, Problem> {
    list(state, &uri, Kind::Event).await
}

pub(crate) async fn get_command(
    State(state): State<Shared>,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, Problem> {
    let id = indexed_id(&state, &id, &uri).await?;
    let (stored, outcomes) = command(&state, id).await?;
    let mut body = with_position(&stored.json, &stored.position)?;
    body.insert(
        "status".to_owned(),
        Value::from(CommandStatus::of(&outcomes).as_str()),
    );
    body.insert(
        "events".to_owned(),
        Value::from(outcomes.into_iter().map(|(id, _)| id).collect::<Vec<_>>()),
    );
    Ok(json_response(StatusCode::OK, &Value::Object(body)))
}

/// What is known of a command's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommandStatus {
    /// No outcome event yet.
    Pending,
    /// Outcome events came and none rejects the command.
    Succeeded,
    /// An outcome event rejects the command.
    Failed,
}

impl CommandStatus {
    /// The status its outcome events (id, rejects) give a command.
    pub(crate) fn of(outcomes: &[(String, bool)]) -> Self {
        Self::from_rejections(outcomes.iter().map(|(_, error)| *error))
    }

    /// The status of a command whose outcome events say, each, whether
    /// they reject it: pending without any.
    pub(crate) fn from_rejections(mut rejects: impl Iterator<Item = bool>) -> Self {
        match rejects.next() {
            None => Self::Pending,
            Some(first) if first || rejects.any(|r| r) => Self::Failed,
            Some(_) => Self::Succeeded,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

/// A command by id with its outcome events (id, rejects). A command
/// accepted before this call (the Location of its 202, fetched at once) is
/// always found: past the index, the read waits for it to reach the
/// command topic's current ends, or is a 503 when it is far behind.
pub(crate) async fn command(
    state: &Shared,
    id: Uuid,
) -> Result<(crate::index::Stored, Vec<(String, bool)>), Problem> {
    let read = |index: &Index, id: &Uuid| Ok((index.get(Kind::Command, id)?, index.outcomes(id)?));
    let s = state.clone();
    if let (Some(stored), outcomes) = blocking(move || read(&s.index, &id)).await? {
        return Ok((stored, outcomes));
    }
    // Once the index has processed to the command topic's ends, it has
    // the command, or the command was never written.
    let s = state.clone();
    let caught_up = blocking(move || {
        let ends = last_records(&ends_of(&*s.log, [&s.config.commands_topic], s.partitions)?);
        if !s.index.streams().wait_for_processed(&ends, INDEX_WAIT)? {
            return Ok(None);
        }
        Ok(Some(read(&s.index, &id)?))
    })
    .await?;
    match caught_up {
        Some((Some(stored), outcomes)) => Ok((stored, outcomes)),
        Some((None, _)) => Err(Problem::not_found(format!("no command {id}"))),
        None => Err(Problem::unavailable(
            format!(
                "the index is more than {} s behind the command topic; command {id} may not be indexed yet",
                INDEX_WAIT.as_secs()
            ),
            1,
        )
        .typed(&kappa_service::problem_type::NOT_READY)),
    }
}

pub(crate) async fn get_event(
    State(state): State<Shared>,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, Problem> {
    let (id, (stored, parent, caused)) = read_by_id(&state, &id, &uri, |index, id| {
        let Some(stored) = index.get(Kind::Event, id)? else {
            return Ok((None, None, Vec::new()));
        };
        let parent_id = serde_json::from_slice::<Value>(&stored.json)
            .ok()
            .and_then(|v| {
                v.get("parent")
                    .and_then(Value::as_str)
                    .and_then(|p| p.parse().ok())
            });
        let parent = match parent_id {
            Some(p) => match index.get(Kind::Command, &p)? {
                Some(c) => Some(c),
                None => index.get(Kind::Event, &p)?,
            },
            None => None,
        };
        // Events this one caused (an effect's outcome, say).
        let caused = index.outcomes(id)?;
        Ok((Some(stored), parent, caused))
    })
    .await?;
    let Some(stored) = stored else {
        return Err(Problem::not_found(format!("no event {id}")));
    };
    let mut body = with_position(&stored.json, &stored.position)?;
    if let Some(p) = parent {
        body.insert(
            "parent_record".to_owned(),
            Value::Object(with_position(&p.json, &p.position)?),
        );
    }
    body.insert(
        "events".to_owned(),
        Value::from(caused.into_iter().map(|(id, _)| id).collect::<Vec<_>>()),
    );
    Ok(json_response(StatusCode::OK, &Value::Object(body)))
}
