//! The console over real HTTP: its page and scripts, and the data behind
//! them (the service, its dataflow, topics, records with provenance links,
//! live figures) plus sampled live streams.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::sse::open;
use common::{Commands, assert_problem, fresh};
use kappa_gateway::load::HttpClient;
use serde_json::{Value, json};

/// Sends a synchronous `add` command to each of `keys`, and returns the answers.
async fn add(c: &mut HttpClient, keys: &[&str]) -> Vec<Value> {
    let mut answers = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let r = c.sync("add", Some(key), json!({"amount": i + 1})).await;
        assert_eq!(r.status, 201);
        answers.push(r.json());
    }
    answers
}

/// The member of array `list` of `v` whose `field` is `name`.
fn named<'a>(v: &'a Value, list: &str, field: &str, name: &str) -> &'a Value {
    v[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t[field] == name)
        .unwrap_or_else(|| panic!("no {name} in {list}: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_scripts_are_served_from_the_binary() {
    let (_dir, s, mut c) = fresh().await;
    let page = c.get("/console").await.unwrap();
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    let html = String::from_utf8(page.body.to_vec()).unwrap();
    // Every script and style the page names is served here: no CDN.
    for asset in ["console.css", "console.js"] {
        assert!(
            html.contains(&format!("/console/assets/{asset}")),
            "{asset}"
        );
    }
    assert!(
        !html.contains("https://"),
        "the page names nothing off this service"
    );
    for asset in [
        "console.js",
        "live.js",
        "topology.js",
        "topics.js",
        "commands.js",
        "views.js",
    ] {
        let r = c.get(&format!("/console/assets/{asset}")).await.unwrap();
        assert_eq!(r.status, 200, "{asset}");
        assert_eq!(r.header("content-type"), Some("text/javascript"));
        assert!(r.body.len() > 500, "{asset} is empty");
    }
    assert_problem(&c.get("/console/assets/secret.txt").await.unwrap(), 404);
    assert_problem(&c.get("/console/pages/none.js").await.unwrap(), 404);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_and_topology_describe_the_running_service() {
    let (_dir, s, mut c) = fresh().await;
    let info = c.get("/console/api/info").await.unwrap().json();
    assert_eq!(info["backend"], "embedded");
    assert_eq!(info["commands_topic"], "commands");
    assert_eq!(info["partitions"], 2);
    let action = named(&info, "actions", "name", "add");
    assert_eq!(action["schema"]["required"], json!(["amount"]));
    assert_eq!(info["views"][0]["name"], "totals");
    assert_eq!(info["views"][0]["store"], "totals");

    let topology = c.get("/console/api/topology").await.unwrap().json();
    let apps = topology["applications"].as_array().unwrap();
    let demo = named(&topology, "applications", "id", "kappa-demo");
    assert!(
        apps.iter().any(|a| a["id"] == "kappa-gateway-index"),
        "{topology}"
    );
    let nodes = demo["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{demo}");
    assert_eq!(
        (&nodes[0]["kind"], &nodes[0]["topic"]),
        (&json!("source"), &json!("commands"))
    );
    assert_eq!(nodes[1]["kind"], "processor");
    assert_eq!(nodes[1]["stores"], json!(["totals"]));
    assert_eq!(nodes[1]["parents"], json!([nodes[0]["name"]]));
    assert_eq!(
        (&nodes[2]["kind"], &nodes[2]["topic"]),
        (&json!("sink"), &json!("events"))
    );
    assert_eq!(
        demo["stores"],
        json!([{"name": "totals", "kind": "persistent", "view": "totals"}])
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_browser_pages_and_links_each_event_to_its_command() {
    let (_dir, s, mut c) = fresh().await;
    let answers = add(&mut c, &["k"; 5]).await;
    // The first command's event, by its position; its provenance names the command.
    let event = &answers[0]["events"][0];
    let path = format!(
        "/console/api/topics/events/records?partition={}&offset={}&limit=1",
        event["partition"], event["offset"]
    );
    let page = c.get(&path).await.unwrap().json();
    let record = &page["records"][0];
    assert_eq!(record["offset"], event["offset"]);
    assert_eq!(record["value_format"], "json");
    assert_eq!(record["value"]["id"], event["id"]);
    assert_eq!(record["key"], "k");
    assert_eq!(record["key_format"], "text");
    let source = record["provenance"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["header"] == "kappa-source")
        .unwrap_or_else(|| panic!("no kappa-source link: {record}"));
    let command = &answers[0];
    assert_eq!(
        (&source["topic"], &source["partition"], &source["offset"]),
        (
            &json!("commands"),
            &command["partition"],
            &command["offset"]
        )
    );
    // Following the link finds the command itself.
    let linked = c
        .get(&format!(
            "/console/api/topics/commands/records?partition={}&offset={}&limit=1",
            source["partition"], source["offset"]
        ))
        .await
        .unwrap()
        .json();
    assert_eq!(linked["records"][0]["value"]["id"], command["id"]);

    // Pages: all five events of key k are in one partition, in order.
    let p = event["partition"].as_u64().unwrap();
    let all = c
        .get(&format!("/console/api/topics/events/records?partition={p}"))
        .await
        .unwrap()
        .json();
    let ids: Vec<&Value> = all["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["value"]["id"])
        .collect();
    let expected: Vec<&Value> = answers.iter().map(|a| &a["events"][0]["id"]).collect();
    assert_eq!(ids, expected);
    assert_eq!(all["next_offset"], all["end"]);
    let two = c
        .get(&format!(
            "/console/api/topics/events/records?partition={p}&limit=2"
        ))
        .await
        .unwrap()
        .json();
    assert_eq!(two["records"].as_array().unwrap().len(), 2);
    assert_eq!(two["next_offset"], 2);
    let latest = c
        .get(&format!(
            "/console/api/topics/events/records?partition={p}&from=latest&limit=1"
        ))
        .await
        .unwrap()
        .json();
    assert_eq!(latest["records"][0]["value"]["id"], *expected[4]);
    let t = all["records"][3]["timestamp"].as_i64().unwrap();
    let by_time = c
        .get(&format!(
            "/console/api/topics/events/records?partition={p}&time={t}&limit=1"
        ))
        .await
        .unwrap()
        .json();
    assert!(by_time["records"][0]["timestamp"].as_i64().unwrap() >= t);
    assert!(by_time["from"].as_u64().unwrap() <= 3);

    // Bad input: a clear problem, nothing read.
    let base = "/console/api/topics/events/records";
    for (query, status) in [
        ("limit=0", 400),
        ("limit=501", 400),
        ("offset=0&from=latest", 400),
        ("from=earliest", 400),
        ("offset=999", 400),
        ("partition=2", 400),
        ("partition=x", 400),
        ("colour=red", 400),
    ] {
        assert_problem(&c.get(&format!("{base}?{query}")).await.unwrap(), status);
    }
    assert_problem(
        &c.get("/console/api/topics/nothing/records").await.unwrap(),
        404,
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_and_live_figures_show_offsets_rates_and_lag() {
    let (_dir, s, mut c) = fresh().await;
    add(&mut c, &["k0", "k1", "k2", "k3"]).await;
    let topics = c.get("/console/api/topics").await.unwrap().json();
    let commands = named(&topics, "topics", "name", "commands");
    let ends: u64 = commands["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["end"].as_u64().unwrap())
        .sum();
    assert_eq!(ends, s.ends("commands").iter().sum::<u64>());
    assert_eq!(commands["internal"], false);
    assert_eq!(commands["compacted"], false);
    let demo_lag: Vec<&Value> = topics["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["group"] == "kappa-demo")
        .collect();
    assert_eq!(demo_lag.len(), 2, "{topics}");
    assert!(demo_lag.iter().all(|g| g["kind"] == "application"));

    // A group that is not one of the service's applications (a Kafka
    // consumer group of a served log, say) is listed from the log.
    let mut commit = kappa_log::Commit::new();
    commit.set_group_position("audit", kappa_log::TopicPartition::new("commands", 0), 0);
    s.log.commit(commit).unwrap();
    let topics = c.get("/console/api/topics").await.unwrap().json();
    let audit = named(&topics, "groups", "group", "audit");
    assert_eq!(audit["kind"], "consumer group");
    assert_eq!(
        (audit["topic"].as_str(), audit["position"].as_u64()),
        (Some("commands"), Some(0))
    );
    assert_eq!(
        audit["lag"].as_u64(),
        Some(s.ends("commands")[0]),
        "{audit}"
    );

    let mut sse = s.client().await;
    let mut frames = open(&mut sse, "/console/api/stats/updates", None).await;
    let first = frames.next().await;
    assert_eq!(first.event, "stats");
    let end_of = |f: &Value| {
        named(f, "topics", "name", "commands")["end"]
            .as_u64()
            .unwrap()
    };
    let before = end_of(&first.data);
    let ten: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
    add(&mut c, &ten.iter().map(String::as_str).collect::<Vec<_>>()).await;
    // A later sample sees the ten commands, at a positive rate, and the
    // processor caught up with them (sync answers came from its events).
    let later = loop {
        let f = frames.next().await;
        if end_of(&f.data) == before + 10 {
            break f.data;
        }
    };
    let commands = named(&later, "topics", "name", "commands");
    assert!(commands["rate"].as_f64().unwrap() > 0.0, "{later}");
    let demo = named(&later, "applications", "id", "kappa-demo");
    assert!(demo["processed"].as_u64().unwrap() >= 14, "{demo}");
    let tasks = demo["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    assert!(tasks.iter().all(|t| t["state"] == "running"), "{demo}");
    let lag: u64 = tasks.iter().map(|t| t["lag"].as_u64().unwrap()).sum();
    assert_eq!(lag, demo["lag"].as_u64().unwrap());
    assert_eq!(demo["nodes"].as_array().unwrap().len(), 3);
    // Viewers share samples: a new one is taken only once the last is a
    // second old (less a little for how long taking one lasts).
    let a = c.get("/console/api/stats").await.unwrap().json();
    let b = c.get("/console/api/stats").await.unwrap().json();
    let apart = b["at"].as_i64().unwrap() - a["at"].as_i64().unwrap();
    assert!(apart == 0 || apart >= 900, "samples {apart} ms apart");
    drop(frames);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sampled_stream_sends_at_most_its_rate_and_counts_the_rest() {
    let (_dir, s, mut c) = fresh().await;
    assert_problem(&c.get("/events/updates?max_rate=0").await.unwrap(), 400);
    assert_problem(&c.get("/events/updates?max_rate=x").await.unwrap(), 400);
    const N: u64 = 30;
    add(&mut c, &["k"; N as usize]).await;
    let mut sse = s.client().await;
    let mut frames = open(&mut sse, "/events/updates?from=beginning&max_rate=5", None).await;
    let (mut sent, mut skipped, mut windows) = (0, 0, 0);
    while sent + skipped < N {
        let f = frames.next().await;
        match f.event.as_str() {
            "event" => sent += 1,
            "sampled" => {
                skipped += f.data["skipped"].as_u64().unwrap();
                windows += 1;
            }
            other => panic!("unexpected frame {other}"),
        }
        assert!(sent <= 5 * (windows + 1), "more than 5 a second: {sent}");
    }
    assert_eq!(sent + skipped, N, "every record is sent or counted");
    assert!(skipped > 0 && windows >= 1);
    drop(frames);
    s.stop().await;
}
