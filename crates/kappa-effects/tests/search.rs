//! The full-text sink: every query answers as a recomputation from the
//! topic says, after a run, after a stop that lost uncommitted changes,
//! and after a rebuild; `/search/{index}` serves it over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kappa_effects::SearchSink;
use kappa_effects::search::{self, Doc, FieldKind, SearchConfig};
use kappa_log::{ProducerRecord, Record, TopicPartition, TopicSpec};
use serde_json::{Map, Value, json};

use common::{caught_up, log_with_topic};

const TOPIC: &str = "docs";
const WORDS: [&str; 8] = [
    "coffee", "books", "harbor", "fuel", "bakery", "cinema", "green", "taxi",
];

fn mapping(r: &Record) -> Result<Doc, String> {
    let id = String::from_utf8(r.key.as_deref().unwrap_or_default().to_vec())
        .map_err(|e| e.to_string())?;
    let Some(v) = r.value.as_deref() else {
        return Ok(Doc::Delete(id));
    };
    let v: Value = serde_json::from_slice(v).map_err(|e| e.to_string())?;
    let mut fields = Map::new();
    for k in ["title", "tag", "n"] {
        fields.insert(k.to_owned(), v[k].clone());
    }
    Ok(Doc::Upsert { id, fields })
}

fn config(dir: &std::path::Path) -> SearchConfig {
    let mut c = SearchConfig::new("docs", TOPIC, dir)
        .field("title", FieldKind::Text)
        .field("tag", FieldKind::Keyword)
        .field("n", FieldKind::Integer);
    c.commit_interval = Duration::from_millis(50);
    c
}

fn records(rng: &mut fastrand::Rng, n: usize) -> Vec<ProducerRecord> {
    (0..n)
        .map(|_| {
            let key = format!("d{}", rng.u32(0..120));
            if rng.u32(0..10) == 0 {
                return ProducerRecord { value: None, ..ProducerRecord::value("").with_key(key) };
            }
            let title: Vec<&str> = (0..rng.usize(1..4)).map(|_| WORDS[rng.usize(0..WORDS.len())]).collect();
            let v = json!({"title": title.join(" "), "tag": format!("t{}", rng.u32(0..4)), "n": rng.i64(0..100)});
            ProducerRecord::value(v.to_string()).with_key(key)
        })
        .collect()
}

/// Final document per id, from the records as written.
fn model(written: &[ProducerRecord]) -> BTreeMap<String, Value> {
    let mut docs = BTreeMap::new();
    for r in written {
        let id = String::from_utf8(r.key.clone().unwrap().to_vec()).unwrap();
        match &r.value {
            None => docs.remove(&id),
            Some(v) => docs.insert(id, serde_json::from_slice(v).unwrap()),
        };
    }
    docs
}

fn ids(sink: &SearchSink, q: &str) -> BTreeSet<String> {
    let hits = sink.search(q, 1000).unwrap();
    let ids: BTreeSet<String> = hits.hits.iter().map(|h| h.id.clone()).collect();
    assert_eq!(
        ids.len(),
        hits.total,
        "{q}: no document twice, all returned"
    );
    ids
}

fn check(sink: &SearchSink, written: &[ProducerRecord]) {
    let docs = model(written);
    let matching = |f: &dyn Fn(&Value) -> bool| -> BTreeSet<String> {
        docs.iter()
            .filter(|(_, v)| f(v))
            .map(|(k, _)| k.clone())
            .collect()
    };
    for w in WORDS {
        let expected = matching(&|v| v["title"].as_str().unwrap().split(' ').any(|t| t == w));
        assert_eq!(ids(sink, w), expected, "word {w}");
    }
    assert_eq!(ids(sink, "tag:t2"), matching(&|v| v["tag"] == "t2"));
    assert_eq!(
        ids(sink, "n:[10 TO 20]"),
        matching(&|v| (10..=20).contains(&v["n"].as_i64().unwrap()))
    );
    assert_eq!(
        ids(sink, "+coffee +tag:t1"),
        matching(&|v| v["tag"] == "t1" && v["title"].as_str().unwrap().contains("coffee"))
    );
}

#[test]
fn answers_equal_a_recomputation_after_restarts_and_rebuilds() {
    let dir = tempfile::tempdir().unwrap();
    let index_dir = dir.path().join("index");
    let log = log_with_topic(&dir.path().join("log"), TOPIC, 2);
    let mut rng = fastrand::Rng::with_seed(11);
    let mut written = records(&mut rng, 2000);
    log.append(TOPIC, written.clone()).unwrap();

    let sink = SearchSink::start(log.clone(), config(&index_dir), mapping).unwrap();
    caught_up(&sink);
    check(&sink, &written);
    let committed = sink.committed();
    assert_eq!(committed.iter().sum::<u64>(), 2000);
    sink.close().unwrap();

    // A restart resumes from the positions of the last commit.
    let more = records(&mut rng, 700);
    log.append(TOPIC, more.clone()).unwrap();
    written.extend(more);
    let sink = SearchSink::start(log.clone(), config(&index_dir), mapping).unwrap();
    assert_eq!(sink.committed(), committed, "resumes where it committed");
    caught_up(&sink);
    check(&sink, &written);
    sink.close().unwrap();

    // Dropped and rebuilt from the log.
    search::rebuild(&index_dir).unwrap();
    let sink = SearchSink::start(log.clone(), config(&index_dir), mapping).unwrap();
    assert_eq!(sink.committed(), vec![0, 0]);
    caught_up(&sink);
    check(&sink, &written);

    // An index of another topic is refused, not mixed.
    log.create_topic(&TopicSpec::new("other", 2)).unwrap();
    sink.close().unwrap();
    let mut other = config(&index_dir);
    other.topic = "other".to_owned();
    let err = SearchSink::start(log.clone(), other, mapping)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("delete it to rebuild"), "{err}");

    // So is an index of a longer log than this one (the log was replaced).
    drop(log);
    let fresh = log_with_topic(&dir.path().join("fresh"), TOPIC, 2);
    let err = SearchSink::start(fresh, config(&index_dir), mapping)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("built from another log"), "{err}");
}

#[test]
fn search_is_served_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_topic(&dir.path().join("log"), TOPIC, 2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sink = SearchSink::start(log.clone(), config(&dir.path().join("index")), mapping).unwrap();
    let app = search::routes(&[&sink]);
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(async move { axum::serve(listener, app).await });
    let client = kappa_effects::http_client().unwrap();
    let get = |path: String| {
        let client = client.clone();
        rt.block_on(async move {
            let r = client.get(path).send().await.unwrap();
            let status = r.status().as_u16();
            (
                status,
                serde_json::from_slice::<Value>(&r.bytes().await.unwrap()).unwrap_or(Value::Null),
            )
        })
    };
    let positions = log
        .append(
            TOPIC,
            vec![
                ProducerRecord::value(
                    json!({"title": "corner coffee", "tag": "t0", "n": 3}).to_string(),
                )
                .with_key("a"),
            ],
        )
        .unwrap();
    // Read your write: wait for the position the append returned.
    let (status, body) = get(format!(
        "{base}/search/docs?q=coffee&min_position={}&wait_ms=10000",
        positions[0]
    ));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"], 1);
    assert_eq!(body["hits"][0]["id"], "a");
    assert_eq!(
        body["hits"][0]["fields"],
        json!({"title": "corner coffee", "tag": "t0", "n": 3})
    );
    let p = positions[0].partition;
    assert!(
        body["position"]
            .as_str()
            .unwrap()
            .contains(&format!("docs/{p}/0")),
        "{body}"
    );
    for (path, want) in [
        ("/search/docs", 400),
        ("/search/docs?q=title:(", 400),
        ("/search/docs?q=coffee&limit=0", 400),
        ("/search/docs?q=coffee&bogus=1", 400),
        ("/search/docs?q=coffee&min_position=other/0/1", 400),
        ("/search/nope?q=coffee", 404),
    ] {
        let (status, body) = get(format!("{base}{path}"));
        assert_eq!(status, want, "{path}: {body}");
        assert!(body["detail"].is_string(), "{path}: problem+json: {body}");
    }
    let end = log.offsets(&TopicPartition::new(TOPIC, p)).unwrap().end;
    let (status, body) = get(format!(
        "{base}/search/docs?q=coffee&min_position=docs/{p}/{end}&wait_ms=5000"
    ));
    assert_eq!(
        status, 404,
        "a position nobody wrote is told at once: {body}"
    );
    // Written, but never taken in: the sink has stopped.
    sink.close().unwrap();
    let later = log
        .append(
            TOPIC,
            vec![ProducerRecord::value(json!({"title": "green tea"}).to_string()).with_key("b")],
        )
        .unwrap();
    let (status, body) = get(format!(
        "{base}/search/docs?q=coffee&min_position={}&wait_ms=50",
        later[0]
    ));
    assert_eq!(status, 503, "a position not reached: {body}");
}
