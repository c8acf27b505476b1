//! Views of an application's own stores: versioned `as_of` lookups, window
//! fetches, and the application's own routes on the same plumbing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use common::assert_problem;
use kappa_gateway::grpc::proto::gateway_client::GatewayClient;
use kappa_gateway::grpc::proto::{GetViewRequest, GetWindowsRequest};
use kappa_gateway::load::HttpClient;
use kappa_gateway::{Gateway, KeyFormat, Problem, ValueFormat, View, ViewKind};
use kappa_log::{EmbeddedLog, Log, ProducerRecord, TopicSpec};
use kappa_streams::{
    I64, Json, Materialized, Processor, ProcessorContext, Streams, StreamsBuilder, StreamsConfig,
    StreamsError, TimeWindows, Utf8, VersionedStoreHandle,
};
use serde_json::{Value, json};

/// Keeps every reading of a sensor, valid from its event time.
struct Levels(VersionedStoreHandle<String, i64>);

impl Processor<String, i64, String, i64> for Levels {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, i64>,
        key: String,
        value: i64,
    ) -> Result<(), StreamsError> {
        let at = ctx.timestamp();
        ctx.put_versioned(&self.0, &key, Some(&value), at)
    }
}

fn sensors(log: Arc<dyn Log>) -> Arc<Streams> {
    let b = StreamsBuilder::new();
    let levels = b.add_versioned_store(
        Materialized::persistent("levels"),
        Utf8,
        I64,
        Duration::from_secs(3600),
    );
    let readings = b.stream("readings", Utf8, Json::<i64>::new());
    readings.process::<String, i64, _>(move || Levels(levels.clone()), &["levels"]);
    readings
        .group_by_key(Utf8)
        .windowed_by(TimeWindows::of_size_with_grace(
            Duration::from_secs(1),
            Duration::from_secs(86_400),
        ))
        .count(Materialized::persistent("per-second"));
    Arc::new(Streams::start(log, b.build().unwrap(), StreamsConfig::new("sensors")).unwrap())
}

/// The application's own route: a sensor's level now, read-your-writes included.
async fn sensor(
    State(streams): State<Arc<Streams>>,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Result<axum::Json<Value>, Problem> {
    if let Some(min) = q.get("min_position") {
        kappa_gateway::wait_for_position(&streams, min, Duration::from_secs(10)).await?;
    }
    let store = streams.store("levels");
    match store
        .get_as_of(id.as_bytes(), i64::MAX)
        .map_err(Problem::internal)?
    {
        Some((v, from)) => Ok(axum::Json(json!({
            "sensor": id,
            "level": i64::from_be_bytes(v[..].try_into().unwrap()),
            "since": from,
        }))),
        None => Err(Problem::not_found(format!("no sensor {id}"))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versioned_windowed_and_custom_views_answer_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir.path()).unwrap());
    log.create_topic(&TopicSpec::new("readings", 2)).unwrap();
    let streams = sensors(log.clone());
    let routes = axum::Router::new()
        .route("/sensors/{id}", axum::routing::get(sensor))
        .with_state(streams.clone());
    let gateway = Gateway::builder(log.clone(), common::config())
        .view(
            View::new("levels", &streams, "levels")
                .keys(KeyFormat::Utf8)
                .values(ValueFormat::I64)
                .kind(ViewKind::Versioned),
        )
        .view(
            View::new("per-second", &streams, "per-second")
                .values(ValueFormat::I64)
                .kind(ViewKind::Windowed),
        )
        .routes(
            routes,
            json!({"/sensors/{id}": {"get": {"summary": "A sensor's level",
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
                    {"name": "min_position", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": {"description": "The level"}}}}}),
        )
        .start()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, gateway.router()).into_future());
    let mut c = HttpClient::connect(addr).await.unwrap();

    let mut last = Vec::new();
    for (sensor, at, level) in [
        ("s1", 1000, 5),
        ("s1", 1500, 7),
        ("s2", 1200, 1),
        ("s1", 2500, 9),
    ] {
        let p = log
            .append(
                "readings",
                vec![
                    ProducerRecord::value(level.to_string())
                        .with_key(sensor)
                        .with_timestamp(at),
                ],
            )
            .unwrap();
        last.push(p[0].to_string());
    }
    let min = last.join(",");

    let r = c
        .get_after("/views/levels/s1?as_of=1200", &min, common::WAIT)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        (r.json()["value"].clone(), r.json()["valid_from"].clone()),
        (json!(5), json!(1000))
    );
    let r = c.get("/views/levels/s1?as_of=1600").await.unwrap();
    assert_eq!(r.json()["value"], 7);
    let r = c.get("/views/levels/s1").await.unwrap();
    assert_eq!(
        (r.json()["value"].clone(), r.json()["valid_from"].clone()),
        (json!(9), json!(2500))
    );
    assert_problem(&c.get("/views/levels/s1?as_of=999").await.unwrap(), 404);

    let r = c
        .get("/views/per-second/s1/windows?from=0&to=5000")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json()["windows"],
        json!([{"start": 1000, "value": 2}, {"start": 2000, "value": 1}])
    );
    let r = c
        .get("/views/per-second/s1/windows?from=1500&to=5000")
        .await
        .unwrap();
    assert_eq!(r.json()["windows"], json!([{"start": 2000, "value": 1}]));
    assert_problem(&c.get("/views/levels/s1/windows").await.unwrap(), 404);
    // The same reads over gRPC.
    let mut g = GatewayClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let windows = |view: &str, from_ms| GetWindowsRequest {
        view: view.to_owned(),
        key: "s1".to_owned(),
        from_ms: Some(from_ms),
        to_ms: Some(5000),
        ..Default::default()
    };
    let w = g
        .get_windows(windows("per-second", 0))
        .await
        .unwrap()
        .into_inner();
    let got: Vec<(i64, Value)> = w
        .windows
        .iter()
        .map(|w| (w.start_ms, serde_json::from_str(&w.value_json).unwrap()))
        .collect();
    assert_eq!(got, [(1000, json!(2)), (2000, json!(1))]);
    let refused = g.get_windows(windows("levels", 0)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound);
    let level = g
        .get_view(GetViewRequest {
            view: "levels".to_owned(),
            key: "s1".to_owned(),
            as_of_ms: Some(1600),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (level.value_json.as_str(), level.valid_from_ms),
        ("7", Some(1500))
    );
    assert_problem(&c.get("/views/per-second/s1?as_of=1").await.unwrap(), 404);
    assert_problem(
        &c.get("/views/per-second/s1/windows?from=5&to=1")
            .await
            .unwrap(),
        400,
    );

    let r = c
        .get(&format!("/sensors/s2?min_position={min}"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"sensor": "s2", "level": 1, "since": 1200}));
    assert_problem(&c.get("/sensors/s9").await.unwrap(), 404);
    // The application's route is in the document, with the answers every
    // operation may give added, and a method it does not list is refused
    // naming the ones it does.
    let doc = c.get("/openapi.json").await.unwrap().json();
    let sensor_doc = &doc["paths"]["/sensors/{id}"]["get"];
    assert_eq!(sensor_doc["summary"], "A sensor's level");
    assert!(sensor_doc["responses"]["400"].is_object(), "{sensor_doc}");
    assert!(sensor_doc["responses"]["404"].is_object(), "{sensor_doc}");
    for (method, path, allow) in [
        (axum::http::Method::DELETE, "/sensors/s2", "GET, HEAD"),
        (axum::http::Method::OPTIONS, "/commands", "GET, HEAD, POST"),
    ] {
        let refused = c
            .request(method, path, &[], bytes::Bytes::new())
            .await
            .unwrap();
        assert_problem(&refused, 405);
        assert_eq!(refused.header("allow"), Some(allow), "{path}");
    }
    let metrics = String::from_utf8(c.get("/metrics").await.unwrap().body.to_vec()).unwrap();
    assert!(
        metrics.contains(
            "kappa_http_requests_total{route=\"/sensors/{id}\",method=\"GET\",status=\"200\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("kappa_streams_lag_records{application=\"sensors\",topic=\"readings\",partition=\"0\"} 0"), "{metrics}");
    let views = c.get("/views").await.unwrap().json();
    assert_eq!(views["views"].as_array().unwrap().len(), 2);
}
