//! The OpenAPI 3.1 document of the running service (its actions' schemas
//! included) and a self-contained page that renders it (no external assets).

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Shared, json as json_response};

fn problem_ref(description: &str) -> Value {
    json!({"description": description, "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}})
}

fn ok(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn param(name: &str, location: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": location, "required": location == "path", "description": description, "schema": schema})
}

/// An optional query parameter.
fn query(name: &str, description: &str, schema: Value) -> Value {
    param(name, "query", description, schema)
}

/// The parameters of a read of a view: the view's name (and with `key`,
/// the key) in the path, the read's own `query` parameters, then
/// read-your-writes.
fn view_params(key: bool, query_params: impl IntoIterator<Item = Value>) -> Vec<Value> {
    let mut params = vec![param(
        "store",
        "path",
        "View name.",
        json!({"type": "string"}),
    )];
    if key {
        params.push(param("key", "path", "Key.", json!({"type": "string"})));
    }
    params.extend(query_params);
    params.push(query(
        "min_position",
        "Comma-separated positions (topic/partition/offset) the view must have processed first (read-your-writes).",
        json!({"type": "string"}),
    ));
    params.push(query(
        "wait_ms",
        "How long to wait for min_position (default 1000).",
        json!({"type": "integer", "minimum": 0}),
    ));
    params
}

/// The document, built from the registered actions and views.
pub(crate) fn build(state: &Shared) -> Value {
    let record = json!({"$ref": "#/components/schemas/Record"});
    let page = json!({"type": "object", "properties": {
        "items": {"type": "array", "items": record},
        "total": {"type": "integer"}, "offset": {"type": "integer"}, "limit": {"type": "integer"},
        "next_after": {"type": "string", "description": "Pass as after= for the next page."}}});
    let string = json!({"type": "string"});
    let integer = json!({"type": "integer"});
    let count = json!({"type": "integer", "minimum": 0});
    let positive = json!({"type": "integer", "minimum": 1});
    let paging = vec![
        query("offset", "Records to skip.", count),
        query(
            "limit",
            "Page size.",
            json!({"type": "integer", "minimum": 1, "maximum": state.config.page_limit_max}),
        ),
        query(
            "after",
            "Start after this id (cheaper than a large offset).",
            json!({"type": "string", "format": "uuid"}),
        ),
    ];
    let mut events_paging = paging.clone();
    events_paging.push(query(
        "action",
        "Only events with this action.",
        string.clone(),
    ));
    let live = |what: &str| {
        json!({"get": {"summary": format!("Live stream of new {what} (server-sent events)"),
            "description": "Each message's id is a cursor; reconnect with Last-Event-ID to resume exactly after it.",
            "parameters": [
                param("action", "query", "Only records with this action.", json!({"type": "string"})),
                param("from", "query", "Without Last-Event-ID: end (default) or beginning.", json!({"enum": ["end", "beginning"]})),
                param("Last-Event-ID", "header", "Resume after this cursor.", json!({"type": "string"}))],
            "responses": {"200": {"description": "An event stream", "content": {"text/event-stream": {}}},
                "400": problem_ref("Bad cursor or parameter"), "503": problem_ref("Too many open streams")}}})
    };
    let as_of = "Versioned views: the value at this time (ms).";
    let get_params = view_params(true, [query("as_of", as_of, integer.clone())]);
    let next = "Keys after this (the previous page's next_after).";
    let scan_params = view_params(
        false,
        [
            query("prefix", "Keys starting with this.", string.clone()),
            query("from", "Keys from this (inclusive).", string.clone()),
            query("to", "Keys before this (exclusive).", string.clone()),
            query("after", next, string),
            query("limit", "Page size.", positive),
        ],
    );
    let window_params = view_params(
        true,
        [
            query(
                "from",
                "Windows starting at or after (ms).",
                integer.clone(),
            ),
            query("to", "Windows starting at or before (ms).", integer),
        ],
    );
    let views: Vec<Value> = state.views.iter().map(|v| Value::from(v.name())).collect();
    json!({
        "openapi": "3.1.0",
        "info": {"title": state.config.title, "version": env!("CARGO_PKG_VERSION"),
            "description": "Commands are written down to the log; views answer from local state. Every write returns a position; every read reports the positions it reflects."},
        "paths": {
            "/commands": {
                "post": {"summary": "Send a command",
                    "parameters": [
                        param("sync", "query", "Wait for the outcome events.", json!({"type": "boolean"})),
                        param("timeout_ms", "query", "How long to wait with sync=true.", json!({"type": "integer", "minimum": 0})),
                        param("Idempotency-Key", "header", "Retries with the same key return the first command.", json!({"type": "string", "maxLength": 255}))],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CommandRequest"}}}},
                    "responses": {
                        "202": ok("Written; not waited for", record.clone()),
                        "201": ok("Written and answered (sync)", json!({"$ref": "#/components/schemas/Answered"})),
                        "400": problem_ref("Malformed JSON or parameters"),
                        "409": problem_ref("An outcome rejected the command (sync), or the idempotency key is in use"),
                        "413": problem_ref("Body too large"),
                        "422": problem_ref("Unknown action or schema violations (each with its JSON pointer)"),
                        "507": problem_ref("The log's disk is under its free-space floor: nothing was written; retry after Retry-After"),
                        "504": problem_ref("No outcome in time; the command stays in the log")}},
                "get": {"summary": "List commands, oldest first", "parameters": paging, "responses": {"200": ok("A page", page.clone())}}},
            "/commands/{id}": {"get": {"summary": "A command with its status and outcome event ids",
                "parameters": [param("id", "path", "Command id.", json!({"type": "string", "format": "uuid"}))],
                "responses": {"200": ok("The command; status pending until an outcome is indexed. A command accepted before this request is always found (the read waits for the index to reach it)", record.clone()),
                    "404": problem_ref("No command with this id was written"),
                    "503": problem_ref("The index is more than 5 s behind the command topic; retry after Retry-After")}}},
            "/commands/updates": live("commands"),
            "/events": {"get": {"summary": "List events, oldest first", "parameters": events_paging, "responses": {"200": ok("A page", page)}}},
            "/events/{id}": {"get": {"summary": "An event with its parent record",
                "parameters": [param("id", "path", "Event id.", json!({"type": "string", "format": "uuid"}))],
                "responses": {"200": ok("The event", record.clone()), "404": problem_ref("Unknown id")}}},
            "/events/updates": live("events"),
            "/views": {"get": {"summary": "Registered views", "responses": {"200": ok("Views", json!({"type": "object"}))}}},
            "/views/{store}": {"get": {"summary": "Scan a view by prefix or key range", "parameters": scan_params,
                "responses": {"200": ok("Entries and the positions they reflect", json!({"type": "object"})), "503": problem_ref("min_position not reached in time")}}},
            "/views/{store}/{key}": {"get": {"summary": "Look up a key", "parameters": get_params,
                "responses": {"200": ok("The value and the positions it reflects", json!({"type": "object"})), "404": problem_ref("No such key or view"), "503": problem_ref("min_position not reached in time")}}},
            "/views/{store}/{key}/windows": {"get": {"summary": "Windows of a key in a windowed view", "parameters": window_params,
                "responses": {"200": ok("Windows by start time", json!({"type": "object"}))}}},
            "/health": {"get": {"summary": "Liveness: 503 once the log has failed in a way only a restart mends", "responses": {"200": ok("Alive", json!({"type": "object"})), "503": problem_ref("The log is poisoned: restart the process")}}},
            "/ready": {"get": {"summary": "Readiness: the index has caught up and topologies run", "responses": {"200": ok("Ready", json!({"type": "object"})), "503": problem_ref("Not yet")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "Text format", "content": {"text/plain": {}}}}}}
        },
        "components": {"schemas": {
            "CommandRequest": super::commands::request_schema(&state.actions),
            "Record": {"type": "object", "required": ["id", "action", "data", "timestamp", "error"], "properties": {
                "id": {"type": "string", "format": "uuid"}, "action": {"type": "string"}, "data": {},
                "key": {"type": ["string", "null"]}, "timestamp": {"type": "integer"},
                "parent": {"type": ["string", "null"], "format": "uuid"}, "error": {"type": "boolean"},
                "topic": {"type": "string"}, "partition": {"type": "integer"}, "offset": {"type": "integer"},
                "position": {"type": "string", "description": "topic/partition/offset: pass as min_position to read your write"}}},
            "Answered": {"allOf": [{"$ref": "#/components/schemas/Record"}, {"type": "object", "properties": {"events": {"type": "array", "items": {"$ref": "#/components/schemas/Record"}}}}]},
            "Problem": {"type": "object", "properties": {"type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"}, "detail": {"type": "string"},
                "violations": {"type": "array", "items": {"type": "object", "properties": {"pointer": {"type": "string"}, "message": {"type": "string"}}}}}}
        }},
        "x-kappa-views": views,
        "x-kappa-actions": state.actions.names().collect::<Vec<_>>(),
    })
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
 for(const v of (doc.components.schemas.CommandRequest.oneOf||[])){
  const d=el('details',{className:'op'});
  d.append(el('summary',{},el('code',{textContent:v.title}),' '+(v.description||'')));
  d.append(el('pre',{textContent:JSON.stringify(v.properties.data,null,2)}));
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
