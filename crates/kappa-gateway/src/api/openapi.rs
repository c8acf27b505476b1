//! The OpenAPI 3.1 document of the running service (its actions' schemas,
//! the console's API and the application's own routes included) and a
//! self-contained page that renders it (no external assets).
//!
//! The document is also what the server answers by: a request with a
//! method the document does not list for its path gets 405 with `Allow`
//! naming the listed ones.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::{Shared, json as json_response};
use crate::error::GatewayError;
use kappa_service::Problem;

/// The HTTP methods a path item may describe, in the order `Allow` lists them.
const METHODS: [&str; 8] = [
    "get", "head", "post", "put", "patch", "delete", "options", "trace",
];

fn ok(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

/// A 200 answer of another media type than JSON.
fn ok_as(description: &str, media_type: &str) -> Value {
    json!({"description": description, "content": {media_type: {"schema": {"type": "string"}}}})
}

/// A response with OpenAPI links to what it names (clients and test
/// tools follow them from one operation to the next).
fn with_links(mut response: Value, links: Value) -> Value {
    response["links"] = links;
    response
}

fn param(name: &str, location: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": location, "required": location == "path", "description": description, "schema": schema})
}

/// An optional query parameter.
fn query(name: &str, description: &str, schema: Value) -> Value {
    param(name, "query", description, schema)
}

/// A path parameter: any non-empty segment.
fn path_param(name: &str, description: &str) -> Value {
    param(
        name,
        "path",
        description,
        json!({"type": "string", "minLength": 1}),
    )
}

/// A wait a request may name (ms): any, as longer ones are cut to the
/// service's longest wait.
fn wait_ms() -> Value {
    json!({"type": "integer", "minimum": 0, "maximum": u64::MAX})
}

/// `min_position` and `wait_ms`: read-your-writes on a read of `topics`
/// (each with `partitions` partitions).
fn read_your_writes(topics: &[&str], partitions: u32) -> [Value; 2] {
    [
        kappa_service::position::min_position_parameter(topics, partitions),
        query(
            "wait_ms",
            "How long to wait for min_position (default 1000; longer than the service's longest wait is cut to it).",
            wait_ms(),
        ),
    ]
}

/// The topics (and partitions) the reads of every view reflect: a
/// position of these is one every view takes.
fn views_topics(state: &Shared) -> (Vec<&str>, u32) {
    let mut views = state.views.iter();
    let Some(first) = views.next() else {
        return (Vec::new(), 0);
    };
    let mut topics: Vec<&str> = first
        .streams
        .input_topics()
        .iter()
        .map(String::as_str)
        .collect();
    let mut partitions = first.streams.partitions();
    for v in views {
        topics.retain(|t| v.streams.input_topics().iter().any(|u| u == t));
        partitions = partitions.min(v.streams.partitions());
    }
    (topics, partitions)
}

/// The parameters of a read of a view: the view's name (and with `key`,
/// the key) in the path, the read's own `query` parameters, then
/// read-your-writes.
fn view_params(
    state: &Shared,
    key: bool,
    query_params: impl IntoIterator<Item = Value>,
) -> Vec<Value> {
    let names: Vec<&str> = state.views.iter().map(|v| v.name()).collect();
    let mut params = vec![param(
        "store",
        "path",
        "View name (GET /views lists them).",
        json!({"enum": names}),
    )];
    if key {
        params.push(path_param("key", "Key."));
    }
    params.extend(query_params);
    let (topics, partitions) = views_topics(state);
    params.extend(read_your_writes(&topics, partitions));
    params
}

/// A live stream's operation (server-sent events).
fn live(what: &str, params: Vec<Value>) -> Value {
    let event = json!({"type": "object", "properties": {
        "event": {"type": "string"}, "data": {"type": "string"}, "id": {"type": "string"}}});
    json!({"get": {"summary": format!("Live stream of {what} (server-sent events)"),
        "description": "Each message's id is a cursor; reconnect with Last-Event-ID to resume exactly after it.",
        "parameters": params,
        "responses": {"200": {"description": "An event stream: each event as the schema says", "content": {"text/event-stream": {"schema": event}}},
            "503": Problem::openapi_response("Too many open streams")}}})
}

/// A live stream of records, resumable from a cursor.
fn live_records(what: &str, params: Vec<Value>) -> Value {
    let mut op = live(what, params);
    op["get"]["responses"]["404"] = Problem::openapi_response(
        "The cursor is past the end of a partition: this service gave no such cursor",
    );
    op
}

/// The application's path items, checked and gathered into one `paths`
/// object (see [`GatewayBuilder::routes`](crate::GatewayBuilder::routes)).
pub(crate) fn application_paths(
    items: Vec<(String, Value)>,
) -> Result<Map<String, Value>, GatewayError> {
    let mut paths = Map::new();
    for (path, item) in items {
        let refused =
            |why: String| Err(GatewayError::Config(format!("route documentation: {why}")));
        if path.is_empty() {
            return refused(format!(
                "give an OpenAPI paths object ({{\"/path\": {{\"get\": …}}}}), not {item}"
            ));
        }
        if !path.starts_with('/') {
            return refused(format!("{path:?} is not a path (it must start with /)"));
        }
        let Value::Object(operations) = &item else {
            return refused(format!("the path item of {path} is not an object"));
        };
        if !operations.keys().any(|k| METHODS.contains(&k.as_str())) {
            return refused(format!("the path item of {path} describes no method"));
        }
        if paths.insert(path.clone(), item).is_some() {
            return refused(format!("{path} is described twice"));
        }
    }
    Ok(paths)
}

/// The gateway's own paths: commands, events, views and operations.
fn gateway_paths(state: &Shared) -> Map<String, Value> {
    let record = json!({"$ref": "#/components/schemas/Record"});
    let page = json!({"type": "object", "properties": {
        "items": {"type": "array", "items": record},
        "total": {"type": "integer"}, "offset": {"type": "integer"}, "limit": {"type": "integer"},
        "next_after": {"type": "string", "description": "Pass as after= for the next page."}}});
    let string = json!({"type": "string"});
    let problem_type = json!({"type": "object", "required": ["type", "name", "title", "status", "description"],
        "properties": {"type": string, "name": string, "title": string, "status": {"type": "integer"},
            "description": string}});
    let count = json!({"type": "integer", "minimum": 0, "maximum": u64::MAX});
    let time = json!({"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX});
    let index = state.index.streams();
    let indexed: Vec<&str> = index.input_topics().iter().map(String::as_str).collect();
    let page_size =
        json!({"type": "integer", "minimum": 1, "maximum": state.config.page_limit_max});
    let mut paging = vec![
        query("offset", "Records to skip.", count),
        query("limit", "Page size (default 100).", page_size.clone()),
        query(
            "after",
            "Start after this id (cheaper than a large offset).",
            json!({"type": "string", "format": "uuid"}),
        ),
    ];
    paging.extend(read_your_writes(&indexed, index.partitions()));
    let mut events_paging = paging.clone();
    events_paging.push(query(
        "action",
        "Only events with this action.",
        json!({"type": "string", "pattern": "^[a-z][a-z0-9]*(-[a-z0-9]+)*$", "maxLength": 64}),
    ));
    let live_params = |what: &str, topics: &[&str]| {
        let pattern = kappa_service::position::cursor_pattern(topics, state.partitions);
        let cursor_body = pattern
            .trim_start_matches('^')
            .trim_end_matches('$')
            .to_owned();
        let cursor = json!({"type": "string", "pattern": pattern});
        vec![
            query(
                "action",
                &format!("Only {what} with this action."),
                string.clone(),
            ),
            query(
                "from",
                "Without a cursor: end (default) or beginning.",
                json!({"enum": ["end", "beginning"]}),
            ),
            query(
                "last_event_id",
                "Resume after this cursor (for clients that cannot set Last-Event-ID).",
                cursor,
            ),
            query(
                "max_rate",
                "Most records sent per second; those over it are counted in an `event: sampled` frame.",
                json!({"type": "integer", "minimum": 1, "maximum": u32::MAX}),
            ),
            param(
                "Last-Event-ID",
                "header",
                "Resume after this cursor (it wins over last_event_id); empty, as no cursor.",
                json!({"type": "string", "pattern": format!("^(?:{})?$", cursor_body)}),
            ),
        ]
    };
    let by_id = |what: &str| {
        let mut params = vec![param(
            "id",
            "path",
            &format!("{what} id."),
            json!({"type": "string", "format": "uuid"}),
        )];
        params.extend(read_your_writes(&indexed, index.partitions()));
        params
    };
    let event_topics: Vec<&str> = state
        .config
        .event_topics
        .iter()
        .map(String::as_str)
        .collect();
    let as_of = "Versioned views: the value at this time (ms); a view without history answers 404.";
    let get_params = view_params(state, true, [query("as_of", as_of, time.clone())]);
    let next = "Keys after this (the previous page's next_after).";
    let scan_params = view_params(
        state,
        false,
        [
            query(
                "prefix",
                "Keys starting with this (combines with from and to).",
                string.clone(),
            ),
            query("from", "Keys from this (inclusive).", string.clone()),
            query("to", "Keys before this (exclusive).", string.clone()),
            query("after", next, string.clone()),
            query("limit", "Page size (default 100).", page_size),
        ],
    );
    let window_params = view_params(
        state,
        true,
        [
            query("from", "Windows starting at or after (ms).", time.clone()),
            query("to", "Windows starting at or before (ms).", time),
        ],
    );
    let paths = json!({
        "/commands": {
            "post": {"summary": "Send a command",
                "parameters": [
                    query("sync", "Wait for the outcome events.", json!({"type": "boolean"})),
                    query("timeout_ms", "How long to wait with sync=true (longer than the service's longest wait is cut to it).", wait_ms()),
                    param("Idempotency-Key", "header", "Retries with the same key return the first command.",
                        json!({"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7e]+$"}))],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CommandRequest"}}}},
                "responses": {
                    "202": with_links(ok("Written; not waited for", record.clone()),
                        json!({"GetCommand": {"operationRef": "#/paths/~1commands~1{id}/get",
                            "description": "The command's status and outcome", "parameters": {"id": "$response.body#/id"}}})),
                    "201": with_links(ok("Written and answered (sync)", json!({"$ref": "#/components/schemas/Answered"})),
                        json!({"GetFirstEvent": {"operationRef": "#/paths/~1events~1{id}/get",
                            "description": "The first outcome event", "parameters": {"id": "$response.body#/events/0/id"}}})),
                    "400": Problem::openapi_response("Malformed JSON or parameters"),
                    "409": Problem::openapi_response("An outcome rejected the command (sync), or the idempotency key is in use (type /problems/idempotency-key-in-flight)"),
                    "413": Problem::openapi_response("Body too large"),
                    "422": Problem::openapi_response("Unknown action or schema violations, each with its JSON pointer (type /problems/invalid-command); or an idempotency key used for another command (type /problems/idempotency-key-reused)"),
                    "503": Problem::openapi_response("The log cannot take writes now (type /problems/log-unavailable), or idempotent commands wait for the index (type /problems/not-ready); retry after Retry-After"),
                    "504": Problem::openapi_response("No outcome in time; the command stays in the log (type /problems/outcome-timeout)"),
                    "507": Problem::openapi_response("The log's disk is under its free-space floor: nothing was written; retry after Retry-After (type /problems/disk-full)")}},
            "get": {"summary": "List commands, oldest first", "parameters": paging,
                "responses": {"200": ok("A page", page.clone()), "503": Problem::openapi_response("min_position not reached in time")}}},
        "/commands/{id}": {"get": {"summary": "A command with its status and outcome event ids",
            "parameters": by_id("Command"),
            "responses": {"200": ok("The command; status pending until an outcome is indexed. A command accepted before this request is always found (the read waits for the index to reach it)", record.clone()),
                "404": Problem::openapi_response("No command with this id was written"),
                "503": Problem::openapi_response("The index is more than 5 s behind the command topic, or min_position was not reached in time; retry after Retry-After")}}},
        "/commands/updates": live_records("new commands", live_params("commands", &[state.config.commands_topic.as_str()])),
        "/events": {"get": {"summary": "List events, oldest first", "parameters": events_paging,
            "responses": {"200": ok("A page", page), "503": Problem::openapi_response("min_position not reached in time")}}},
        "/events/{id}": {"get": {"summary": "An event with its parent record",
            "parameters": by_id("Event"),
            "responses": {"200": ok("The event", record), "404": Problem::openapi_response("Unknown id"), "503": Problem::openapi_response("min_position not reached in time")}}},
        "/events/updates": live_records("new events", live_params("events", &event_topics)),
        "/views": {"get": {"summary": "Registered views", "responses": {"200": ok("Views", json!({"type": "object"}))}}},
        "/views/{store}": {"get": {"summary": "Scan a view by prefix or key range", "parameters": scan_params,
            "responses": {"200": ok("Entries and the positions they reflect", json!({"type": "object"})),
                "404": Problem::openapi_response("No such view"), "503": Problem::openapi_response("min_position not reached in time")}}},
        "/views/{store}/{key}": {"get": {"summary": "Look up a key", "parameters": get_params,
            "responses": {"200": ok("The value and the positions it reflects", json!({"type": "object"})),
                "404": Problem::openapi_response("No such key or view, or as_of asked of a view without history"), "503": Problem::openapi_response("min_position not reached in time")}}},
        "/views/{store}/{key}/windows": {"get": {"summary": "Windows of a key in a windowed view", "parameters": window_params,
            "responses": {"200": ok("Windows by start time", json!({"type": "object"})),
                "404": Problem::openapi_response("No such view, or the view is not windowed"), "503": Problem::openapi_response("min_position not reached in time")}}},
        "/openapi.json": {"get": {"summary": "This document", "responses": {"200": ok("The OpenAPI document", json!({"type": "object"}))}}},
        "/docs": {"get": {"summary": "A page that renders this document", "responses": {"200": ok_as("An HTML page", "text/html")}}},
        "/problems": {"get": {"summary": "The problem types this service answers with (the `type` of its problems)",
            "responses": {"200": ok("The types", json!({"type": "object", "required": ["types"],
                "properties": {"types": {"type": "array", "items": problem_type.clone()}}}))}}},
        "/problems/{name}": {"get": {"summary": "One problem type: what it means and what a client should do",
            "parameters": [param("name", "path", "The type's name (its URI's last segment).",
                json!({"enum": kappa_service::problem_type::ALL.iter().map(|t| t.name).collect::<Vec<_>>()}))],
            "responses": {"200": ok("The type", problem_type), "404": Problem::openapi_response("No such type")}}},
        "/health": {"get": {"summary": "Liveness: 503 once the log has failed in a way only a restart mends",
            "responses": {"200": ok("Alive", json!({"type": "object"})), "503": Problem::openapi_response("The log is poisoned: restart the process")}}},
        "/ready": {"get": {"summary": "Readiness: the index has caught up and topologies run",
            "responses": {"200": ok("Ready", json!({"type": "object"})), "503": Problem::openapi_response("Not yet")}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": ok_as("Text format", "text/plain")}}}
    });
    match paths {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The console's paths: its pages (public) and its JSON API.
fn console_paths() -> Map<String, Value> {
    let object = json!({"type": "object"});
    let paths = json!({
        "/console": {"get": {"summary": "The console (a web page)", "responses": {"200": ok_as("The page", "text/html")}}},
        "/console/assets/{file}": {"get": {"summary": "A script or style sheet of the console",
            "parameters": [path_param("file", "File name, as the page links it.")],
            "responses": {"200": {"description": "The file", "content": {"text/javascript": {"schema": {"type": "string"}}, "text/css": {"schema": {"type": "string"}}}},
                "404": Problem::openapi_response("No such file")}}},
        "/console/pages/{file}": {"get": {"summary": "The script of a page the application adds to the console",
            "parameters": [path_param("file", "{page id}.js")],
            "responses": {"200": ok_as("The page's script", "text/javascript"), "404": Problem::openapi_response("No such page")}}},
        "/console/api/info": {"get": {"summary": "The service: its actions, views, topics and console pages", "responses": {"200": ok("The service", object.clone())}}},
        "/console/api/topology": {"get": {"summary": "The dataflow of every application the service runs", "responses": {"200": ok("Applications with their nodes and edges", object.clone())}}},
        "/console/api/system": {"get": {"summary": "The log and the process: backend, disk, memory", "responses": {"200": ok("Figures", object.clone())}}},
        "/console/api/topics": {"get": {"summary": "Every topic with its partitions' offsets and the groups reading it", "responses": {"200": ok("Topics", object.clone())}}},
        "/console/api/topics/{topic}/records": {"get": {"summary": "A page of a topic partition's records",
            "parameters": [
                path_param("topic", "Topic name."),
                query("partition", "Partition (default 0).", json!({"type": "integer", "minimum": 0, "maximum": u32::MAX})),
                query("offset", "Start at this offset (within the partition's offsets).", json!({"type": "integer", "minimum": 0, "maximum": u64::MAX})),
                query("time", "Start at the first record at or after this time (ms since the epoch).", json!({"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX})),
                query("from", "latest: the last `limit` records.", json!({"enum": ["latest"]})),
                query("limit", "Records (default 50).", json!({"type": "integer", "minimum": 1, "maximum": crate::console::api::RECORDS_MAX}))],
            "responses": {"200": ok("Records", object.clone()), "404": Problem::openapi_response("No such topic")}}},
        "/console/api/stats": {"get": {"summary": "The service's figures now (rates, lags)", "responses": {"200": ok("Figures", object)}}},
        "/console/api/stats/updates": live("the service's figures, once a second", Vec::new()),
    });
    match paths {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Adds what every operation may answer, so that each operation lists
/// every status the server gives it: 400 for a bad parameter or body, 404
/// for an unknown path parameter, 503 for read-your-writes not reached,
/// and under authentication 401, 403 and 429.
fn add_common_answers(paths: &mut Map<String, Value>, state: &Shared) {
    let auth = state.config.auth.is_some();
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        let guarded = auth && !super::is_public(path);
        for (method, operation) in item.iter_mut() {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            let Some(operation) = operation.as_object_mut() else {
                continue;
            };
            let params: Vec<Value> = operation
                .get("parameters")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let named = |n: &str| params.iter().any(|p| p["name"] == n);
            let mut common = Vec::new();
            if !params.is_empty() || operation.contains_key("requestBody") {
                common.push(("400", "A parameter or the body is malformed or out of range (unknown query parameters are refused too)"));
            }
            if params.iter().any(|p| p["in"] == "path") {
                common.push(("404", "Nothing with these path parameters"));
            }
            if named("min_position") {
                common.push((
                    "404",
                    "min_position names a record nobody wrote (at or past its partition's end; type /problems/position-not-written)",
                ));
                common.push((
                    "503",
                    "min_position not reached in time; retry after Retry-After (type /problems/position-not-reached)",
                ));
            }
            if guarded {
                common.push((
                    "401",
                    "No valid bearer token (type /problems/unauthenticated)",
                ));
                if state.config.policy.is_some() {
                    common.push((
                        "403",
                        "The policy does not allow this principal this (type /problems/forbidden)",
                    ));
                }
                if state.config.rate_limit.is_some() {
                    common.push((
                        "429",
                        "Too many requests from this principal; retry after Retry-After (type /problems/rate-limited)",
                    ));
                }
            }
            let responses = operation.entry("responses").or_insert_with(|| json!({}));
            if let Some(responses) = responses.as_object_mut() {
                for (status, description) in common {
                    responses
                        .entry(status)
                        .or_insert_with(|| Problem::openapi_response(description));
                }
            }
            if auth {
                let security = if guarded {
                    json!([{"bearer": []}])
                } else {
                    json!([])
                };
                operation.insert("security".to_owned(), security);
            }
        }
    }
}

/// The document, built from the registered actions, views and routes.
pub(crate) fn build(state: &Shared) -> Value {
    let mut paths = gateway_paths(state);
    paths.extend(console_paths());
    for (path, item) in &state.app_paths {
        paths.insert(path.clone(), item.clone());
    }
    add_common_answers(&mut paths, state);
    let views: Vec<Value> = state.views.iter().map(|v| Value::from(v.name())).collect();
    let mut components = json!({"schemas": {
        "Record": {"type": "object", "required": ["id", "action", "data", "timestamp", "error"], "properties": {
            "id": {"type": "string", "format": "uuid"}, "action": {"type": "string"}, "data": {},
            "key": {"type": ["string", "null"]}, "timestamp": {"type": "integer"},
            "parent": {"type": ["string", "null"], "format": "uuid"}, "error": {"type": "boolean"},
            "topic": {"type": "string"}, "partition": {"type": "integer"}, "offset": {"type": "integer"},
            "position": {"type": "string", "description": "topic/partition/offset: pass as min_position to read your write"}}},
        "Answered": {"allOf": [{"$ref": "#/components/schemas/Record"}, {"type": "object", "properties": {"events": {"type": "array", "items": {"$ref": "#/components/schemas/Record"}}}}]},
        "Problem": {"type": "object", "properties": {"type": {"type": "string", "format": "uri-reference",
                "description": "about:blank (the status says all), or /problems/{name}: a problem type this service describes at that address (GET /problems lists them)"}, "title": {"type": "string"}, "status": {"type": "integer"}, "detail": {"type": "string"},
            "violations": {"type": "array", "items": {"type": "object", "properties": {"pointer": {"type": "string"}, "message": {"type": "string"}}}}}}
    }});
    if let Some(schemas) = components["schemas"].as_object_mut() {
        schemas.extend(super::commands::request_schemas(&state.actions));
    }
    if state.config.auth.is_some() {
        components["securitySchemes"] = json!({"bearer": {"type": "http", "scheme": "bearer",
            "description": "A token the service's security settings accept (see docs/security.md)."}});
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": state.config.title, "version": env!("CARGO_PKG_VERSION"),
            "description": "Commands are written down to the log; views answer from local state. Every write returns a position; every read reports the positions it reflects."},
        "paths": paths,
        "components": components,
        "x-kappa-views": views,
        "x-kappa-actions": state.actions.names().collect::<Vec<_>>(),
    })
}

/// What the router answers by, read once from the document: per path
/// (a route's template), each documented method with the query
/// parameters it takes.
pub(crate) type Operations =
    std::collections::HashMap<String, std::collections::HashMap<&'static str, Vec<String>>>;

fn operations(state: &Shared) -> Operations {
    let mut operations = Operations::new();
    if let Value::Object(paths) = &build(state)["paths"] {
        for (path, item) in paths {
            let Some(item) = item.as_object() else {
                continue;
            };
            let methods = operations.entry(path.clone()).or_default();
            for method in METHODS {
                let Some(operation) = item.get(method) else {
                    continue;
                };
                let taken = operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["in"] == "query")
                    .filter_map(|p| p["name"].as_str().map(str::to_owned))
                    .collect();
                methods.insert(method, taken);
            }
        }
    }
    operations
}

/// The documented methods of `path`, made on the first call.
fn methods_of<'s>(
    state: &'s Shared,
    path: &str,
) -> Option<&'s std::collections::HashMap<&'static str, Vec<String>>> {
    state.operations.get_or_init(|| operations(state)).get(path)
}

/// The first query parameter of a request to `path` (a route's template)
/// that the document does not list for its operation; `HEAD` is read as
/// `GET`. `None` when all are listed, or the operation is not described
/// (the router answers it 405).
pub(crate) fn unknown_query_parameter(
    state: &Shared,
    method: &axum::http::Method,
    path: &str,
    uri: &axum::http::Uri,
) -> Option<String> {
    let method = if method == axum::http::Method::HEAD {
        "get"
    } else {
        METHODS
            .into_iter()
            .find(|m| m.eq_ignore_ascii_case(method.as_str()))?
    };
    let taken = methods_of(state, path)?.get(method)?;
    // A query that does not parse is left to the handler to refuse.
    let axum::extract::Query(pairs) =
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri).ok()?;
    pairs
        .into_iter()
        .map(|(name, _)| name)
        .find(|name| !taken.iter().any(|t| t == name))
}

/// The methods the document lists for `path` (a route's template), as an
/// `Allow` header's value; `HEAD` comes with every `GET`, as the router
/// answers it.
pub(crate) fn allowed_methods(state: &Shared, path: &str) -> String {
    let Some(methods) = methods_of(state, path) else {
        return String::new();
    };
    METHODS
        .iter()
        .filter(|m| methods.contains_key(*m) || (**m == "head" && methods.contains_key("get")))
        .map(|m| m.to_ascii_uppercase())
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) async fn document(State(state): State<Shared>) -> Response {
    json_response(StatusCode::OK, &build(&state))
}

/// A page that lists the operations and actions of `/openapi.json`.
const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{margin-bottom:.2rem} .op{border:1px solid #ddd;border-radius:6px;margin:.6rem 0;padding:.5rem .8rem}
.m{display:inline-block;min-width:3.5rem;font-weight:600} .get{color:#0a6} .post{color:#06c}
code,pre{background:#f6f6f6;border-radius:4px;padding:.1rem .3rem} pre{padding:.6rem;overflow:auto}
table{border-collapse:collapse} td{padding:.1rem .6rem .1rem 0;vertical-align:top}
</style></head><body><h1 id="t">API</h1><p id="d"></p><p><a href="/openapi.json">openapi.json</a></p>
<div id="ops"></div><h2>Actions</h2><div id="actions"></div>
<script>
const el=(t,a={},...c)=>{const e=document.createElement(t);Object.assign(e,a);c.forEach(x=>e.append(x));return e};
fetch('/openapi.json').then(r=>r.json()).then(doc=>{
 document.getElementById('t').textContent=doc.info.title;
 document.getElementById('d').textContent=doc.info.description;
 const ops=document.getElementById('ops');
 for(const [path,item] of Object.entries(doc.paths)) for(const [m,op] of Object.entries(item)){
  const d=el('details',{className:'op'});
  d.append(el('summary',{},el('span',{className:'m '+m,textContent:m.toUpperCase()}),el('code',{textContent:path}),' '+(op.summary||'')));
  if(op.description) d.append(el('p',{textContent:op.description}));
  const t=el('table');
  for(const p of op.parameters||[]) t.append(el('tr',{},el('td',{},el('code',{textContent:p.name})),el('td',{textContent:p.in}),el('td',{textContent:p.description||''})));
  d.append(t);
  const rs=el('ul'); for(const [s,r] of Object.entries(op.responses||{})) rs.append(el('li',{textContent:s+' '+(r.description||'')})); d.append(rs);
  ops.append(d);
 }
 const acts=document.getElementById('actions');
 const named=s=>s&&s.$ref?doc.components.schemas[s.$ref.split('/').pop()]:s;
 for(const ref of (doc.components.schemas.CommandRequest.oneOf||[])){
  const v=named(ref);
  const d=el('details',{className:'op'});
  d.append(el('summary',{},el('code',{textContent:v.title}),' '+(v.description||'')));
  d.append(el('pre',{textContent:JSON.stringify(named(v.properties.data),null,2)}));
  acts.append(d);
 }
}).catch(e=>{document.getElementById('ops').textContent='Could not load /openapi.json: '+e});
</script></body></html>"#;

pub(crate) async fn page() -> Response {
    let mut r = (StatusCode::OK, PAGE).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}
