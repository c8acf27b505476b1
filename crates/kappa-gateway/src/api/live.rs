//! Live streams of commands and events as server-sent events, resumable
//! from the exact log position with `Last-Event-ID`.
//!
//! Every message's `id` is the cursor just past its record, so a client that
//! reconnects with the last id it saw gets the next record and no repeat.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{OriginalUri, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use kappa_log::{FetchLimits, TopicPartition};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::{Shared, query};
use kappa_service::Problem;
use kappa_service::position::Cursor;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LiveQuery {
    /// Only records with this action.
    action: Option<String>,
    /// Where to start without `Last-Event-ID`: `end` (default) or `beginning`.
    from: Option<String>,
    /// A cursor, for clients that cannot set `Last-Event-ID`.
    last_event_id: Option<String>,
    /// Most records sent per second; those over it are skipped and counted
    /// in an `event: sampled` frame (a console under load).
    max_rate: Option<u32>,
}

#[derive(Deserialize)]
struct ActionOnly<'a> {
    #[serde(borrow)]
    action: std::borrow::Cow<'a, str>,
}

/// Frames buffered per connection before the reader waits for the client.
const BUFFER: usize = 1024;

pub(crate) async fn commands(
    State(state): State<Shared>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    let topics = vec![state.config.commands_topic.clone()];
    stream(state, &uri, &headers, topics, "command").unwrap_or_else(IntoResponse::into_response)
}

pub(crate) async fn events(
    State(state): State<Shared>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    let topics = state.config.event_topics.clone();
    stream(state, &uri, &headers, topics, "event").unwrap_or_else(IntoResponse::into_response)
}

/// One open live stream, counted against the cap; the gauge goes down
/// when it ends.
pub(crate) struct Open(Shared);

impl Open {
    /// Counts a new stream, or refuses it (503) when the cap is reached.
    pub(crate) fn new(state: &Shared) -> Result<Self, Problem> {
        if state.metrics.sse(1) > state.config.sse_connections_max as i64 {
            state.metrics.sse(-1);
            return Err(Problem::unavailable("too many live streams are open", 5)
                .typed(&kappa_service::problem_type::TOO_MANY_STREAMS));
        }
        Ok(Self(state.clone()))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.metrics.sse(-1);
    }
}

fn stream(
    state: Shared,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    topics: Vec<String>,
    name: &'static str,
) -> Result<Response, Problem> {
    let q: LiveQuery = query(uri)?;
    let partitions = state.partitions;
    let from_start = match q.from.as_deref() {
        None | Some("end") => false,
        Some("beginning") => true,
        Some(other) => {
            return Err(Problem::bad_request(format!(
                "from={other:?}: use end or beginning"
            )));
        }
    };
    // Every cursor given is checked, even one the header overrides.
    let from_query = q
        .last_event_id
        .as_deref()
        .map(|text| decode_cursor(&topics, partitions, text, "last_event_id"))
        .transpose()?;
    // EventSource sends no header for an empty id; read an empty one so too.
    let from_header = match headers.get("last-event-id") {
        Some(v) if !v.is_empty() => {
            let text = v
                .to_str()
                .map_err(|_| Problem::bad_request("Last-Event-ID is not text"))?;
            Some(decode_cursor(&topics, partitions, text, "Last-Event-ID")?)
        }
        _ => None,
    };
    let cursor = starting_cursor(&state, &topics, from_header.or(from_query), from_start)?;
    if q.max_rate == Some(0) {
        return Err(Problem::bad_request(
            "max_rate=0 would send nothing: give at least 1, or leave it out",
        ));
    }
    let frames = follow_from(&state, cursor, q.action, q.max_rate, move |frame| {
        Some(match frame {
            Frame::Record {
                cursor,
                position,
                value,
            } => {
                let data = super::with_position(value, &position).ok()?;
                Event::default()
                    .event(name)
                    .id(cursor)
                    .data(serde_json::Value::Object(data).to_string())
            }
            Frame::Sampled(skipped) => Event::default()
                .event("sampled")
                .data(format!("{{\"skipped\":{skipped}}}")),
            Frame::Failed(why) => Event::default().event("error").data(why),
        })
    })?;
    Ok(Sse::new(frames.map(Ok::<_, Infallible>))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// A cursor a client gave (`given` names where, for the error).
pub(crate) fn decode_cursor(
    topics: &[String],
    partitions: u32,
    text: &str,
    given: &str,
) -> Result<Cursor, Problem> {
    Cursor::decode(text, topics, partitions)
        .map_err(|e| Problem::bad_request(format!("{given}: {e}")))
}

/// Where a live stream of `topics` starts: just after a client's cursor,
/// else at the beginning or the end of every partition. A cursor past the
/// end of its partitions is a 404: this service gave no such cursor.
pub(crate) fn starting_cursor(
    state: &Shared,
    topics: &[String],
    given: Option<Cursor>,
    from_start: bool,
) -> Result<Cursor, Problem> {
    if let Some(cursor) = given {
        // The records before each next offset were all written, if
        // this service gave the cursor.
        let seen: Vec<(TopicPartition, u64)> = cursor
            .0
            .iter()
            .filter(|(_, next)| *next > 0)
            .map(|(tp, next)| (tp.clone(), next - 1))
            .collect();
        if let Some(why) = kappa_service::position::not_written(&*state.log, &seen)? {
            return Err(Problem::not_found(format!(
                "the cursor is past the end of its partitions, so this service gave no such cursor: {why}"
            ))
            .typed(&kappa_service::problem_type::POSITION_NOT_WRITTEN));
        }
        return Ok(cursor);
    }
    let mut c = Vec::new();
    for t in topics {
        for p in 0..state.partitions {
            let tp = TopicPartition::new(t.as_str(), p);
            let o = state.log.offsets(&tp)?;
            c.push((tp, if from_start { o.start } else { o.end }));
        }
    }
    Ok(Cursor(c))
}

/// What a live stream tells its client.
pub(crate) enum Frame<'a> {
    /// A record, and the cursor that resumes just after it.
    Record {
        cursor: String,
        position: kappa_log::Position,
        value: &'a [u8],
    },
    /// How many records the last second skipped (over `max_rate`).
    Sampled(u64),
    /// The log failed; the stream ends.
    Failed(String),
}

/// Follows the log from `cursor` on a thread of its own (records of
/// `action` only, at most `max_rate` a second), each frame rendered for
/// the client by `render` (`None`: not sent). The stream ends when the
/// client goes away or the service closes; it counts against the cap on
/// open streams while it lasts.
pub(crate) fn follow_from<T: Send + 'static>(
    state: &Shared,
    cursor: Cursor,
    action: Option<String>,
    max_rate: Option<u32>,
    render: impl Fn(Frame<'_>) -> Option<T> + Send + 'static,
) -> Result<impl futures_util::Stream<Item = T> + Send + 'static, Problem> {
    let open = Open::new(state)?;
    let (tx, rx) = mpsc::channel::<T>(BUFFER);
    let log = state.log.clone();
    let closing = state.closing.clone();
    let mut sampling = max_rate.map(Sampling::new);
    tokio::task::spawn_blocking(move || {
        follow(
            &*log,
            cursor,
            action.as_deref(),
            &Sink { tx: &tx, render },
            &closing,
            sampling.as_mut(),
        );
    });
    Ok(futures_util::stream::unfold(
        (rx, open),
        |(mut rx, open)| async move { rx.recv().await.map(|e| (e, (rx, open))) },
    ))
}

/// Where a follower's frames go: rendered, then queued for the client.
struct Sink<'a, T, R> {
    tx: &'a mpsc::Sender<T>,
    render: R,
}

impl<T, R: Fn(Frame<'_>) -> Option<T>> Sink<'_, T, R> {
    /// Sends a frame; false when the client went away.
    fn send(&self, frame: Frame<'_>) -> bool {
        match (self.render)(frame) {
            Some(item) => self.tx.blocking_send(item).is_ok(),
            None => true,
        }
    }

    fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// A budget of frames per second: records over it are skipped, and how
/// many were is told once the second is over.
struct Sampling {
    max_per_second: u32,
    window: std::time::Instant,
    sent: u32,
    skipped: u64,
}

impl Sampling {
    fn new(max_per_second: u32) -> Self {
        Self {
            max_per_second,
            window: std::time::Instant::now(),
            sent: 0,
            skipped: 0,
        }
    }

    /// Whether the next record may be sent now.
    fn admit(&mut self) -> bool {
        if self.sent < self.max_per_second {
            self.sent += 1;
            true
        } else {
            self.skipped += 1;
            false
        }
    }

    /// Starts a new second once the current one is over; returns how many
    /// records the past one skipped, when it skipped any.
    fn roll(&mut self) -> Option<u64> {
        if self.window.elapsed() < Duration::from_secs(1) {
            return None;
        }
        self.window = std::time::Instant::now();
        self.sent = 0;
        let skipped = std::mem::take(&mut self.skipped);
        (skipped > 0).then_some(skipped)
    }
}

/// Tells how many records were skipped when a second that skipped some is
/// over; false when the client went away.
fn tell_skipped<T, R: Fn(Frame<'_>) -> Option<T>>(
    sampling: Option<&mut Sampling>,
    sink: &Sink<'_, T, R>,
) -> bool {
    match sampling.and_then(Sampling::roll) {
        Some(skipped) => sink.send(Frame::Sampled(skipped)),
        None => true,
    }
}

/// Reads from `cursor` onward and sends frames until the client goes away.
fn follow<T, R: Fn(Frame<'_>) -> Option<T>>(
    log: &dyn kappa_log::Log,
    mut cursor: Cursor,
    action: Option<&str>,
    sink: &Sink<'_, T, R>,
    closing: &std::sync::atomic::AtomicBool,
    mut sampling: Option<&mut Sampling>,
) {
    let mut records = Vec::new();
    let limits = FetchLimits {
        records_max: 512,
        // Bounded so a closed connection is noticed while the topics are idle.
        wait_max: Duration::from_secs(1),
        ..FetchLimits::default()
    };
    let index: std::collections::HashMap<(Arc<str>, u32), usize> = cursor
        .0
        .iter()
        .enumerate()
        .map(|(i, (tp, _))| ((tp.topic.clone(), tp.partition), i))
        .collect();
    while !sink.is_closed() && !closing.load(std::sync::atomic::Ordering::Acquire) {
        records.clear();
        let fetched = match log.fetch(&cursor.0, limits, &mut records) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "live stream stopped");
                sink.send(Frame::Failed(e.to_string()));
                return;
            }
        };
        for r in &records {
            // Advance past this record before sending, so its id resumes after it.
            if let Some(&i) = index.get(&(r.topic.clone(), r.partition)) {
                cursor.0[i].1 = r.offset + 1;
            }
            let Some(value) = &r.value else { continue };
            if let Some(wanted) = action {
                match serde_json::from_slice::<ActionOnly<'_>>(value) {
                    Ok(a) if a.action == wanted => {}
                    _ => continue,
                }
            }
            if let Some(s) = sampling.as_deref_mut()
                && !s.admit()
            {
                continue;
            }
            let frame = Frame::Record {
                cursor: cursor.encode(),
                position: r.position(),
                value,
            };
            if !sink.send(frame) {
                return;
            }
        }
        for ((_, at), next) in cursor.0.iter_mut().zip(fetched.next_offsets) {
            *at = next;
        }
        // Once per fetch (which waits at most a second), so a quiet second
        // still tells what the last busy one skipped.
        if !tell_skipped(sampling.as_deref_mut(), sink) {
            return;
        }
    }
}
