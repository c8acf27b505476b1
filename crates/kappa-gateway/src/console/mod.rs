//! The console: web pages served by the gateway at `/console` to see and
//! drive a running service (its dataflow, topics and records, commands,
//! views, and pages the application adds).
//!
//! The pages are plain ES modules embedded in the binary: no build step, no
//! network beyond this service. The pages and their scripts carry no data
//! and are public; everything they show comes from `/console/api/...` and
//! the gateway's own routes, behind the same authentication and policy as
//! any other request.

pub(crate) mod api;
pub(crate) mod stats;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::api::Shared;
use kappa_service::Problem;

/// A page an application adds to the console: a script (an ES module
/// exporting `render(root, console)`) listed in the console's menu.
///
/// ```
/// use kappa_gateway::ConsolePage;
/// let page = ConsolePage::new("cards", "Card limits", "export function render(root) {}");
/// assert_eq!(page.id(), "cards");
/// ```
#[derive(Clone, Debug)]
pub struct ConsolePage {
    id: String,
    title: String,
    script: &'static str,
}

impl ConsolePage {
    /// A page shown as `title` in the menu, at `/console#/app/{id}`.
    pub fn new(id: &str, title: &str, script: &'static str) -> Self {
        Self {
            id: id.to_owned(),
            title: title.to_owned(),
            script,
        }
    }

    /// The page's id (its address in the console).
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn title(&self) -> &str {
        &self.title
    }
}

/// The console's own files, embedded at build time.
const ASSETS: [(&str, &str, &str); 8] = [
    (
        "console.css",
        "text/css",
        include_str!("assets/console.css"),
    ),
    (
        "console.js",
        "text/javascript",
        include_str!("assets/console.js"),
    ),
    (
        "topology.js",
        "text/javascript",
        include_str!("assets/topology.js"),
    ),
    (
        "topics.js",
        "text/javascript",
        include_str!("assets/topics.js"),
    ),
    (
        "commands.js",
        "text/javascript",
        include_str!("assets/commands.js"),
    ),
    (
        "views.js",
        "text/javascript",
        include_str!("assets/views.js"),
    ),
    (
        "system.js",
        "text/javascript",
        include_str!("assets/system.js"),
    ),
    ("live.js", "text/javascript", include_str!("assets/live.js")),
];

const INDEX: &str = include_str!("assets/index.html");

/// Paths anyone may fetch: the page and its scripts, which hold no data.
pub(crate) fn is_public(path: &str) -> bool {
    path == "/console"
        || path.starts_with("/console/assets/")
        || path.starts_with("/console/pages/")
}

pub(crate) fn routes(state: Shared) -> Router {
    Router::new()
        .route("/console", get(index))
        .route("/console/assets/{file}", get(asset))
        .route("/console/pages/{file}", get(page))
        .route("/console/api/info", get(api::info))
        .route("/console/api/topology", get(api::topology))
        .route("/console/api/system", get(api::system))
        .route("/console/api/topics", get(api::topics))
        .route("/console/api/topics/{topic}/records", get(api::records))
        .route("/console/api/stats", get(stats::now))
        .route("/console/api/stats/updates", get(stats::updates))
        .with_state(state)
}

/// The console's pages allow only their own scripts and styles and talk
/// only to this service.
fn static_file(content_type: &'static str, body: &'static str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

async fn index() -> Response {
    static_file("text/html; charset=utf-8", INDEX)
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => static_file(content_type, body),
        None => Problem::not_found(format!("no console asset {file:?}")).into_response(),
    }
}

async fn page(State(state): State<Shared>, Path(file): Path<String>) -> Response {
    let page = file
        .strip_suffix(".js")
        .and_then(|id| state.console_pages.iter().find(|p| p.id == id));
    match page {
        Some(p) => static_file("text/javascript", p.script),
        None => Problem::not_found(format!("no console page {file:?}")).into_response(),
    }
}
