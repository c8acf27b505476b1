//! The PostgreSQL sink against a real server: the table equals the topic
//! (upserts, tombstone deletes, refused records passed over) after a run,
//! after more input, after `rebuild`, and after the table is dropped and
//! created again. The crash test (SIGKILL mid-batch) is in card-limits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use kappa_effects::PostgresSink;
use kappa_effects::postgres::{self, Change, ColumnType, PostgresSinkConfig, Table, TempCluster};
use kappa_log::{Log, ProducerRecord, Record};
use serde_json::{Value, json};

use common::{caught_up, log_with_topic};

const TOPIC: &str = "accounts";

fn table() -> Table {
    Table::new("accounts", &["id"])
        .column("id", ColumnType::Text)
        .column("owner", ColumnType::Text)
        .column("cents", ColumnType::BigInt)
        .column("active", ColumnType::Boolean)
        .column("opened", ColumnType::TimestampMs)
        .nullable("tags", ColumnType::Json)
        .column("score", ColumnType::Double)
}

/// The columns after `id`, each taken from the record's field of its name.
const FIELDS: [&str; 6] = ["owner", "cents", "active", "opened", "tags", "score"];

fn mapping(r: &Record) -> Result<Change, String> {
    let id = String::from_utf8(r.key.as_deref().unwrap_or_default().to_vec())
        .map_err(|e| e.to_string())?;
    let Some(v) = r.value.as_deref() else {
        return Ok(Change::Delete(vec![json!(id)]));
    };
    let v: Value = serde_json::from_slice(v).map_err(|e| e.to_string())?;
    let mut row = vec![json!(id)];
    row.extend(FIELDS.map(|f| v[f].clone()));
    Ok(Change::Upsert(row))
}

type Row = (String, String, i64, bool, i64, Option<Value>, f64);

/// Random upserts and tombstones over 150 keys; one record in 40 is not
/// JSON and one in 50 has a string for `cents`: the sink passes over both.
fn records(rng: &mut fastrand::Rng, n: usize) -> Vec<ProducerRecord> {
    (0..n)
        .map(|_| {
            let key = format!("acct-{:03}", rng.u32(0..150));
            match rng.u32(0..100) {
                0..=9 => ProducerRecord { value: None, ..ProducerRecord::value("").with_key(key) },
                10..=12 => ProducerRecord::value("not json").with_key(key),
                13..=14 => ProducerRecord::value(json!({"owner": "x", "cents": "12", "active": true, "opened": 1, "tags": null, "score": 1.0}).to_string()).with_key(key),
                _ => {
                    let tags = if rng.bool() { json!(["gold", rng.u32(0..5)]) } else { Value::Null };
                    let v = json!({
                        "owner": format!("owner {}", rng.u32(0..40)),
                        "cents": rng.i64(-1_000_000..1_000_000_000_000),
                        "active": rng.bool(),
                        "opened": rng.i64(1_600_000_000_000..1_800_000_000_000),
                        "tags": tags,
                        "score": rng.u32(0..1000) as f64 / 8.0,
                    });
                    ProducerRecord::value(v.to_string()).with_key(key)
                }
            }
        })
        .collect()
}

/// The table the topic describes, computed from the records as written.
fn model(written: &[ProducerRecord]) -> Vec<Row> {
    let mut rows = BTreeMap::new();
    for r in written {
        let id = String::from_utf8(r.key.clone().unwrap().to_vec()).unwrap();
        let Some(v) = &r.value else {
            rows.remove(&id);
            continue;
        };
        let Ok(v) = serde_json::from_slice::<Value>(v) else {
            continue;
        };
        let Some(cents) = v["cents"].as_i64() else {
            continue;
        };
        let tags = (!v["tags"].is_null()).then(|| v["tags"].clone());
        rows.insert(
            id.clone(),
            (
                id,
                v["owner"].as_str().unwrap().to_owned(),
                cents,
                v["active"].as_bool().unwrap(),
                v["opened"].as_i64().unwrap(),
                tags,
                v["score"].as_f64().unwrap(),
            ),
        );
    }
    rows.into_values().collect()
}

fn query<T>(url: &str, f: impl AsyncFnOnce(&tokio_postgres::Client) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        f(&client).await
    })
}

fn table_rows(url: &str) -> Vec<Row> {
    query(url, async |c| {
        c.query("SELECT id, owner, cents, active, (extract(epoch from opened) * 1000)::bigint, tags, score FROM accounts ORDER BY id", &[])
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6)))
            .collect()
    })
}

fn start(log: &Arc<dyn Log>, url: &str) -> PostgresSink {
    let mut config = PostgresSinkConfig::new("accounts-sink", TOPIC, table());
    config.batch_max = 97;
    PostgresSink::start(log.clone(), url, config, mapping).unwrap()
}

#[test]
fn table_equals_the_topic_after_runs_rebuilds_and_a_dropped_table() {
    let pg = TempCluster::start().unwrap();
    let url = pg.url();
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_topic(dir.path(), TOPIC, 3);
    let mut rng = fastrand::Rng::with_seed(7);
    let mut written = records(&mut rng, 3000);
    log.append(TOPIC, written.clone()).unwrap();

    let missing = PostgresSink::start(
        log.clone(),
        &url,
        PostgresSinkConfig::new("s", TOPIC, table()),
        mapping,
    );
    let err = missing.err().unwrap().to_string();
    assert!(err.contains("create_schema"), "{err}");

    assert!(postgres::create_schema(&url, &table()).unwrap(), "created");
    assert!(
        !postgres::create_schema(&url, &table()).unwrap(),
        "already there"
    );
    let sink = start(&log, &url);
    caught_up(&sink);
    let expected = model(&written);
    assert!(expected.len() > 50 && expected.iter().any(|r| r.5.is_none()));
    assert_eq!(table_rows(&url), expected);

    // More input while it runs.
    let more = records(&mut rng, 1500);
    log.append(TOPIC, more.clone()).unwrap();
    written.extend(more);
    caught_up(&sink);
    assert_eq!(table_rows(&url), model(&written));
    let positions: i64 = query(&url, async |c| {
        c.query_one(
            "SELECT sum(next_offset)::bigint FROM kappa_sink_positions WHERE sink = 'accounts-sink'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, Option<i64>>(0)
        .unwrap()
    });
    assert_eq!(positions, 4500, "positions cover every record");
    let mut families = kappa_service::MetricFamilies::default();
    sink.metrics_source().collect(&mut families);
    let mut text = String::new();
    families.render(&mut text);
    assert!(
        text.contains("kappa_sink_records_total{sink=\"accounts-sink\",kind=\"postgres\"} 4500"),
        "{text}"
    );
    sink.close().unwrap();

    // PostgreSQL crashes while records arrive: the sink opens its
    // connection again and resumes from the positions it committed.
    let sink = start(&log, &url);
    let more = records(&mut rng, 2000);
    log.append(TOPIC, more[..1000].to_vec()).unwrap();
    pg.crash_and_restart().unwrap();
    log.append(TOPIC, more[1000..].to_vec()).unwrap();
    written.extend(more);
    caught_up(&sink);
    assert_eq!(table_rows(&url), model(&written));
    let mut families = kappa_service::MetricFamilies::default();
    sink.metrics_source().collect(&mut families);
    let mut text = String::new();
    families.render(&mut text);
    let restarts = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("kappa_sink_restarts_total{sink=\"accounts-sink\",kind=\"postgres\"} ")
        })
        .unwrap();
    assert_ne!(restarts, "0", "the sink opened its connection again");
    sink.close().unwrap();

    // Rebuild: emptied, then filled again from the log.
    postgres::rebuild(&url, "accounts-sink", &table()).unwrap();
    assert!(table_rows(&url).is_empty());
    let sink = start(&log, &url);
    caught_up(&sink);
    assert_eq!(table_rows(&url), model(&written));
    sink.close().unwrap();

    // A dropped table, created again, is rebuilt by the next start.
    query(&url, async |c| {
        c.batch_execute("DROP TABLE accounts").await.unwrap()
    });
    assert!(postgres::create_schema(&url, &table()).unwrap());
    let sink = start(&log, &url);
    caught_up(&sink);
    assert_eq!(table_rows(&url), model(&written));
    sink.close().unwrap();
}
