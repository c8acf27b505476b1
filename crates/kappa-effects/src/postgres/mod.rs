//! A sink that keeps a PostgreSQL table equal to a topic (the job Kafka
//! Connect's JDBC sink does), exactly once.
//!
//! Each batch of records becomes one transaction: deletes, one multi-row
//! upsert (`INSERT … SELECT FROM unnest(…) ON CONFLICT … DO UPDATE`) and the
//! sink's next offsets in [`POSITIONS_TABLE`]. A crash at any point leaves
//! the table and its positions consistent; the sink resumes from them.
//!
//! The schema is explicit: [`create_schema`] makes the positions table and
//! the sink's table (run it from a deploy step or a CLI command); a sink
//! refuses to start while either is missing. Dropping the table, creating
//! it again with `create_schema`, and starting the sink rebuilds it from
//! the log; so does [`rebuild`].

mod cluster;
mod table;

use std::collections::HashMap;
use std::sync::Arc;

use kappa_log::{Log, Record};
use serde_json::Value;
use tokio_postgres::{Client, NoTls, Statement};

pub use cluster::TempCluster;
pub use table::{Column, ColumnType, POSITIONS_TABLE, Table};

use crate::error::EffectsError;
use crate::sink::{Applied, Apply, SinkHandle};
use table::{ColumnValues, fits, quoted};

/// What one record does to the table.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Insert or replace the row: one value per column, in column order.
    Upsert(Vec<Value>),
    /// Delete the row with these key values (in key order), if any.
    Delete(Vec<Value>),
    /// Nothing (the record is not for this table).
    Skip,
}

/// Turns a record into a change; `Err` passes over the record with a warning.
pub type Mapping = dyn Fn(&Record) -> Result<Change, String> + Send + Sync;

/// Settings of a PostgreSQL sink.
#[derive(Clone, Debug)]
pub struct PostgresSinkConfig {
    /// The sink's name: its positions are stored under it.
    pub name: String,
    /// The topic it follows.
    pub topic: String,
    /// The table it keeps.
    pub table: Table,
    /// Most records per transaction.
    pub batch_max: usize,
}

impl PostgresSinkConfig {
    /// A sink `name` from `topic` into `table`.
    pub fn new(name: &str, topic: &str, table: Table) -> Self {
        Self {
            name: name.to_owned(),
            topic: topic.to_owned(),
            table,
            batch_max: 5_000,
        }
    }
}

/// Runs `f` on a thread of its own with a small runtime, so callers may be
/// inside or outside an async context.
fn on_own_runtime<T: Send>(
    f: impl FnOnce(&tokio::runtime::Runtime) -> Result<T, EffectsError> + Send,
) -> Result<T, EffectsError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| EffectsError::io("starting a runtime", e))?;
            f(&rt)
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Connects, driving the connection on `rt`.
async fn connect(rt: &tokio::runtime::Runtime, url: &str) -> Result<Client, EffectsError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    rt.spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "PostgreSQL connection closed");
        }
    });
    Ok(client)
}

/// SQL for the positions table.
fn positions_sql() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {POSITIONS_TABLE} (\n  sink text NOT NULL,\n  topic text NOT NULL,\n  partition integer NOT NULL,\n  next_offset bigint NOT NULL,\n  target text NOT NULL,\n  PRIMARY KEY (sink, topic, partition)\n)"
    )
}

/// The statements [`create_schema`] runs, for review or a migration tool.
///
/// # Errors
///
/// An invalid table.
pub fn schema_sql(table: &Table) -> Result<String, EffectsError> {
    Ok(format!("{};\n{};\n", positions_sql(), table.create_sql()?))
}

/// Creates the positions table and `table` when missing, in one
/// transaction. When `table` is new, positions of sinks that wrote into
/// an earlier table of that name are dropped, so those sinks rebuild it.
/// Returns whether `table` was created.
///
/// # Errors
///
/// Invalid table, or PostgreSQL refused.
pub fn create_schema(url: &str, table: &Table) -> Result<bool, EffectsError> {
    table.check()?;
    on_own_runtime(|rt| {
        rt.block_on(async {
            let mut client = connect(rt, url).await?;
            let tx = client.transaction().await?;
            tx.batch_execute(&positions_sql()).await?;
            let missing: bool = tx
                .query_one("SELECT to_regclass($1) IS NULL", &[&quoted(&table.name)])
                .await?
                .get(0);
            tx.batch_execute(&table.create_sql()?).await?;
            if missing {
                tx.execute(
                    &format!("DELETE FROM {POSITIONS_TABLE} WHERE target = $1"),
                    &[&table.name],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(missing)
        })
    })
}

/// Empties the sink's table and forgets its positions (one transaction):
/// its next start rebuilds the table from the log. Run it while the sink
/// is stopped.
///
/// # Errors
///
/// PostgreSQL refused (a missing table, say).
pub fn rebuild(url: &str, sink: &str, table: &Table) -> Result<(), EffectsError> {
    table.check()?;
    on_own_runtime(|rt| {
        rt.block_on(async {
            let mut client = connect(rt, url).await?;
            let tx = client.transaction().await?;
            tx.batch_execute(&format!("TRUNCATE {}", quoted(&table.name)))
                .await?;
            tx.execute(
                &format!("DELETE FROM {POSITIONS_TABLE} WHERE sink = $1"),
                &[&sink],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    })
}

/// A running PostgreSQL sink.
///
/// ```no_run
/// # fn demo(log: std::sync::Arc<dyn kappa_log::Log>) -> Result<(), kappa_effects::EffectsError> {
/// use kappa_effects::postgres::{self, Change, ColumnType, PostgresSinkConfig, Table};
/// use kappa_effects::PostgresSink;
/// let url = "host=127.0.0.1 user=postgres dbname=postgres";
/// let table = Table::new("balances", &["card"])
///     .column("card", ColumnType::Text)
///     .column("cents", ColumnType::BigInt);
/// postgres::create_schema(url, &table)?;
/// let sink = PostgresSink::start(log, url, PostgresSinkConfig::new("balances", "balances", table), |r| {
///     let card = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
///     Ok(match r.value.as_deref() {
///         None => Change::Delete(vec![card.into()]),
///         Some(v) => Change::Upsert(vec![card.into(), serde_json::from_slice(v).map_err(|e| e.to_string())?]),
///     })
/// })?;
/// # Ok(()) }
/// ```
pub struct PostgresSink {
    thread: SinkHandle,
}

crate::sink::deref_to_handle!(PostgresSink);

impl PostgresSink {
    /// Connects and follows the topic from the stored positions.
    ///
    /// # Errors
    ///
    /// Invalid table, a missing table (run [`create_schema`]), PostgreSQL
    /// or log failures.
    pub fn start(
        log: Arc<dyn Log>,
        url: &str,
        config: PostgresSinkConfig,
        mapping: impl Fn(&Record) -> Result<Change, String> + Send + Sync + 'static,
    ) -> Result<Self, EffectsError> {
        config.table.check()?;
        let partitions = log.describe_topic(&config.topic)?.spec.partitions as usize;
        let mapping: Arc<Mapping> = Arc::new(mapping);
        let url = url.to_owned();
        let c = config.clone();
        let open: crate::sink::Open = Box::new(move || {
            let (apply, start) = open(&url, &c, partitions, mapping.clone())?;
            Ok((Box::new(apply), start))
        });
        let thread = SinkHandle::start(
            log,
            "postgres",
            &config.name,
            &config.topic,
            config.batch_max,
            open,
        )?;
        Ok(Self { thread })
    }

    /// Stops after the batch in progress.
    ///
    /// # Errors
    ///
    /// The failure that had stopped the sink.
    pub fn close(mut self) -> Result<(), EffectsError> {
        self.thread.stop()
    }
}

/// Connects, checks the tables, reads the sink's positions and prepares
/// its statements; on a thread of its own, as callers may be async.
fn open(
    url: &str,
    config: &PostgresSinkConfig,
    partitions: usize,
    mapping: Arc<Mapping>,
) -> Result<(PgApply, Vec<u64>), EffectsError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            // One worker: it writes a batch while the sink's thread reads
            // and prepares the next.
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("postgres-sink")
                .enable_all()
                .build()
                .map_err(|e| EffectsError::io("starting a runtime", e))?;
            let (client, start, statements) = rt.block_on(async {
                let client = connect(&rt, url).await?;
                let row = client
                    .query_one(
                        "SELECT to_regclass($1) IS NOT NULL, to_regclass($2) IS NOT NULL",
                        &[&POSITIONS_TABLE, &quoted(&config.table.name)],
                    )
                    .await?;
                if !(row.get::<_, bool>(0) && row.get::<_, bool>(1)) {
                    return Err(EffectsError::Config(format!(
                        "table {:?} or {POSITIONS_TABLE:?} does not exist: create them first (kappa_effects::postgres::create_schema)",
                        config.table.name
                    )));
                }
                let mut start = vec![0u64; partitions];
                let rows = client
                    .query(
                        &format!("SELECT partition, next_offset FROM {POSITIONS_TABLE} WHERE sink = $1 AND topic = $2"),
                        &[&config.name, &config.topic],
                    )
                    .await?;
                for r in rows {
                    let (p, o): (i32, i64) = (r.get(0), r.get(1));
                    if let Some(slot) = usize::try_from(p).ok().and_then(|p| start.get_mut(p)) {
                        *slot = u64::try_from(o).unwrap_or(0);
                    }
                }
                let statements = Statements {
                    upsert: client.prepare(&config.table.upsert_sql()).await?,
                    copy: config.table.copy_sql(),
                    copy_types: config.table.columns.iter().map(|c| c.kind.copy_type()).collect(),
                    delete: client.prepare(&config.table.delete_sql()).await?,
                    positions: client
                        .prepare(&format!(
                            "INSERT INTO {POSITIONS_TABLE} (sink, topic, partition, next_offset, target) \
                             SELECT $1, $2, p, o, $5 FROM unnest($3::int4[], $4::int8[]) AS u(p, o) \
                             ON CONFLICT (sink, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, target = EXCLUDED.target"
                        ))
                        .await?,
                };
                Ok::<_, EffectsError>((client, start, statements))
            })?;
            tracing::info!(sink = %config.name, table = %config.table.name, topic = %config.topic, from = ?start, "PostgreSQL sink starting");
            let apply = PgApply {
                rt,
                client: Some(client),
                statements: Arc::new(statements),
                append_after: 0,
                append_gap: 1,
                in_flight: None,
                durable: None,
                mapping,
                config: config.clone(),
            };
            Ok((apply, start))
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

struct PgApply {
    rt: tokio::runtime::Runtime,
    /// The connection, when no write holds it.
    client: Option<Client>,
    statements: Arc<Statements>,
    /// Batches to write with `upsert` before trying `append` again.
    append_after: u32,
    /// How long the last wait for `append` was (doubles while keys keep existing).
    append_gap: u32,
    /// The batch being written, and the positions after it.
    in_flight: Option<(tokio::task::JoinHandle<Written>, Vec<u64>)>,
    /// Positions written since `durable` was last asked.
    durable: Option<Vec<u64>>,
    mapping: Arc<Mapping>,
    config: PostgresSinkConfig,
}

struct Statements {
    upsert: Statement,
    /// A binary `COPY` of all columns.
    copy: String,
    copy_types: Vec<tokio_postgres::types::Type>,
    delete: Statement,
    positions: Statement,
}

/// A batch ready to send: one array per column.
struct Prepared {
    rows: Vec<ColumnValues>,
    keys: Vec<ColumnValues>,
    upserts: u64,
    deletes: u64,
    partitions: Vec<i32>,
    offsets: Vec<i64>,
    try_append: bool,
}

/// What a write hands back: the connection and whether the append worked.
type Written = (Client, Result<Option<bool>, EffectsError>);

impl PgApply {
    /// The batch's final change per key: later records win.
    fn fold(
        &self,
        records: &[Record],
        applied: &mut Applied,
    ) -> HashMap<String, Option<Vec<Value>>> {
        let table = &self.config.table;
        let key_at: Vec<usize> = table
            .key
            .iter()
            .filter_map(|k| table.columns.iter().position(|c| c.name == *k))
            .collect();
        let mut last = HashMap::with_capacity(records.len());
        for r in records {
            let change = match (self.mapping)(r) {
                Ok(c) => c,
                Err(why) => {
                    tracing::warn!(sink = %self.config.name, position = %r.position(), %why, "passing over a record the mapping refused");
                    applied.skipped += 1;
                    continue;
                }
            };
            let (key, row) = match change {
                Change::Skip => {
                    applied.skipped += 1;
                    continue;
                }
                Change::Upsert(values) => {
                    if values.len() != table.columns.len()
                        || !table.columns.iter().zip(&values).all(|(c, v)| fits(c, v))
                    {
                        tracing::warn!(sink = %self.config.name, position = %r.position(), "passing over a row whose values do not fit the table's columns");
                        applied.skipped += 1;
                        continue;
                    }
                    let key: Vec<&Value> = key_at.iter().map(|i| &values[*i]).collect();
                    (
                        serde_json::to_string(&key).unwrap_or_default(),
                        Some(values),
                    )
                }
                Change::Delete(key) => {
                    let columns = table.key_columns();
                    if key.len() != columns.len()
                        || !columns.iter().zip(&key).all(|(c, v)| fits(c, v))
                    {
                        tracing::warn!(sink = %self.config.name, position = %r.position(), "passing over a delete whose key does not fit the table's key");
                        applied.skipped += 1;
                        continue;
                    }
                    // The key's JSON is parsed back into values when applied.
                    (serde_json::to_string(&key).unwrap_or_default(), None)
                }
            };
            last.insert(key, row);
        }
        last
    }
}

impl PgApply {
    /// Waits for the batch being written; its positions become durable.
    fn finish_in_flight(&mut self) -> Result<(), EffectsError> {
        let Some((handle, positions)) = self.in_flight.take() else {
            return Ok(());
        };
        let (client, result) = self
            .rt
            .block_on(handle)
            .map_err(|e| EffectsError::Config(format!("the write task failed: {e}")))?;
        self.client = Some(client);
        match result? {
            Some(true) => self.append_gap = 1,
            Some(false) => {
                self.append_after = self.append_gap;
                self.append_gap = (self.append_gap * 2).min(1024);
            }
            None => {}
        }
        self.durable = Some(positions);
        Ok(())
    }

    fn prepare(&mut self, records: &[Record], next: &[u64], applied: &mut Applied) -> Prepared {
        let folded = self.fold(records, applied);
        let table = &self.config.table;
        let mut rows: Vec<ColumnValues> = table
            .columns
            .iter()
            .map(|c| ColumnValues::new(c.kind, folded.len()))
            .collect();
        let mut keys: Vec<ColumnValues> = table
            .key_columns()
            .iter()
            .map(|c| ColumnValues::new(c.kind, 0))
            .collect();
        for (key, row) in folded {
            match row {
                Some(values) => {
                    applied.upserted += 1;
                    for (col, v) in rows.iter_mut().zip(values) {
                        col.push(v);
                    }
                }
                None => {
                    applied.deleted += 1;
                    let values: Vec<Value> = serde_json::from_str(&key).unwrap_or_default();
                    for (col, v) in keys.iter_mut().zip(values) {
                        col.push(v);
                    }
                }
            }
        }
        // Appending (a binary COPY) is much faster than upserting and
        // is the common case: a first load, a rebuild, a stream of new
        // entities. A batch with a key that exists already falls back to
        // the upsert; while that keeps happening, appends are tried less often.
        let try_append = self.append_after == 0;
        self.append_after = self.append_after.saturating_sub(1);
        Prepared {
            rows,
            keys,
            upserts: applied.upserted,
            deletes: applied.deleted,
            partitions: (0..next.len() as i32).collect(),
            offsets: next.iter().map(|o| *o as i64).collect(),
            try_append,
        }
    }
}

/// Adds the rows with a binary `COPY` (refused if a key exists).
async fn copy(
    tx: &tokio_postgres::Transaction<'_>,
    statements: &Statements,
    rows: &[ColumnValues],
) -> Result<(), tokio_postgres::Error> {
    let sink = tx.copy_in(&statements.copy).await?;
    let mut writer = std::pin::pin!(tokio_postgres::binary_copy::BinaryCopyInWriter::new(
        sink,
        &statements.copy_types
    ));
    let n = rows.first().map_or(0, ColumnValues::len);
    let mut row = Vec::with_capacity(rows.len());
    for i in 0..n {
        row.clear();
        row.extend(rows.iter().map(|c| c.at(i)));
        writer.as_mut().write(&row).await?;
    }
    writer.as_mut().finish().await?;
    Ok(())
}

/// One batch in one transaction: deletes, the rows, the positions.
async fn write(
    client: &mut Client,
    statements: &Statements,
    config: &PostgresSinkConfig,
    batch: Prepared,
) -> Result<Option<bool>, EffectsError> {
    let mut tx = client.transaction().await?;
    if batch.deletes > 0 {
        let params: Vec<_> = batch.keys.iter().map(ColumnValues::as_sql).collect();
        tx.execute(&statements.delete, &params).await?;
    }
    let mut appended = None;
    if batch.upserts > 0 {
        let params: Vec<_> = batch.rows.iter().map(ColumnValues::as_sql).collect();
        if batch.try_append {
            let attempt = tx.savepoint("kappa_append").await?;
            match copy(&attempt, statements, &batch.rows).await {
                Ok(()) => {
                    attempt.commit().await?;
                    appended = Some(true);
                }
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                    attempt.rollback().await?;
                    appended = Some(false);
                }
                Err(e) => return Err(e.into()),
            }
        }
        if appended != Some(true) {
            tx.execute(&statements.upsert, &params).await?;
        }
    }
    tx.execute(
        &statements.positions,
        &[
            &config.name,
            &config.topic,
            &batch.partitions,
            &batch.offsets,
            &config.table.name,
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(appended)
}

impl Apply for PgApply {
    /// Prepares the batch while the previous one is being written, then
    /// starts writing it: reading and mapping overlap the database's work.
    fn apply(&mut self, records: &[Record], next: &[u64]) -> Result<Applied, EffectsError> {
        let mut applied = Applied::default();
        let batch = self.prepare(records, next, &mut applied);
        self.finish_in_flight()?;
        let Some(mut client) = self.client.take() else {
            return Err(EffectsError::Config(
                "the PostgreSQL connection was lost".to_owned(),
            ));
        };
        let statements = self.statements.clone();
        let config = self.config.clone();
        let handle = self.rt.spawn(async move {
            let result = write(&mut client, &statements, &config, batch).await;
            (client, result)
        });
        self.in_flight = Some((handle, next.to_vec()));
        Ok(applied)
    }

    fn durable(&mut self, idle: bool) -> Result<Option<Vec<u64>>, EffectsError> {
        if idle {
            self.finish_in_flight()?;
        }
        Ok(self.durable.take())
    }

    fn holding(&self) -> bool {
        self.in_flight.is_some()
    }
}
