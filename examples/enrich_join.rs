//! A stream–table join: orders keyed by customer id are enriched with the
//! customer's name and country from a table of customers. Each order meets
//! the customer's row as it is when the order is processed: a later change of
//! the row changes later orders only, and an order without a row is kept
//! (a left join) rather than dropped.
//!
//! Run it with `cargo run -p kappa-examples --bin enrich-join`. It writes
//! customers and orders (as JSON) to an embedded log in a scratch directory,
//! in four rounds, waiting each time until the topology has processed the
//! round, and prints the enriched orders.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::ensure;
use kappa_log::{EmbeddedLog, Log, ProducerRecord, TopicPartition, TopicSpec};
use kappa_streams::{Json, Materialized, Streams, StreamsBuilder, StreamsConfig, Utf8};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The longest the program waits for the topology.
const WAIT: Duration = Duration::from_secs(30);

#[derive(Clone, Serialize, Deserialize)]
struct Customer {
    name: String,
    country: String,
}

#[derive(Clone, Serialize, Deserialize)]
struct Order {
    order: String,
    item: String,
    cents: i64,
}

/// An order and its customer's row (`None` when there is none).
type Enriched = (Order, Option<Customer>);

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir.path())?);
    // A join needs its inputs co-partitioned: same partition count, same keys.
    for topic in ["customers", "orders", "enriched-orders"] {
        log.create_topic(&TopicSpec::new(topic, 2))?;
    }
    let b = StreamsBuilder::new();
    let store = Materialized::persistent("customers-by-id");
    let customers = b.table("customers", Utf8, Json::<Customer>::new(), store);
    b.stream("orders", Utf8, Json::<Order>::new())
        .left_join(&customers, Utf8, |order, customer| (order, customer))
        .to("enriched-orders", Utf8, Json::<Enriched>::new());
    let config = StreamsConfig::new("enrich-orders");
    let streams = Streams::start(log.clone(), b.build()?, config)?;

    let rounds = [
        (
            "customers",
            vec![customer("c-1", "Ada", "UK"), customer("c-2", "Grace", "US")],
        ),
        (
            "orders",
            vec![
                order("c-1", "o-1", "keyboard", 4900),
                order("c-2", "o-2", "monitor", 18900),
                order("c-3", "o-3", "cable", 900), // c-3 has no row
            ],
        ),
        // Ada moves: orders already enriched keep the old row.
        ("customers", vec![customer("c-1", "Ada", "FR")]),
        ("orders", vec![order("c-1", "o-4", "mouse", 2500)]),
    ];
    for (topic, records) in rounds {
        let written = log.append(topic, records)?;
        let targets: Vec<(TopicPartition, u64)> = written
            .into_iter()
            .map(|p| (TopicPartition::new(p.topic, p.partition), p.offset))
            .collect();
        let processed = streams.wait_for_processed(&targets, WAIT)?;
        ensure!(
            processed,
            "the topology did not process {topic} within {WAIT:?}"
        );
    }
    streams.close()?;

    // Two partitions: list by order id for a stable listing.
    let mut enriched = BTreeMap::new();
    for r in log.read_topic("enriched-orders")? {
        let id = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
        let (order, customer): Enriched =
            serde_json::from_slice(r.value.as_deref().unwrap_or_default())?;
        enriched.insert(order.order.clone(), (id, order, customer));
    }
    for (id, order, customer) in enriched.values() {
        let who = match customer {
            Some(c) => format!("{} ({})", c.name, c.country),
            None => "no such customer".to_owned(),
        };
        let amount = format!("{}.{:02}", order.cents / 100, order.cents % 100);
        println!("{} {} {amount} for {id}: {who}", order.order, order.item);
    }
    Ok(())
}

/// A customer's row, keyed by id, as JSON.
fn customer(id: &str, name: &str, country: &str) -> ProducerRecord {
    let row = json!({"name": name, "country": country});
    ProducerRecord::value(row.to_string()).with_key(id.to_owned())
}

/// An order, keyed by customer id, as JSON.
fn order(customer: &str, order: &str, item: &str, cents: i64) -> ProducerRecord {
    let value = json!({"order": order, "item": item, "cents": cents});
    ProducerRecord::value(value.to_string()).with_key(customer.to_owned())
}
