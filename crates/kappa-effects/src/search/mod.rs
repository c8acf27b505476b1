//! A sink that keeps a full-text index (tantivy) of a topic, served by the
//! gateway at `GET /search/{index}?q=`.
//!
//! Documents are identified by an id: an upsert replaces the document with
//! the same id, a delete removes it. The positions the index reflects are
//! the payload of its own commits, so documents and positions change
//! together; after a crash the sink resumes from the last commit. Deleting
//! the index directory rebuilds it from the log at the next start.

mod routes;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kappa_log::{Log, Record};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tantivy::collector::{Count, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::query::QueryParser;
use tantivy::schema::{FAST, Field, INDEXED, STORED, STRING, Schema, TEXT, Value as _};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

pub use routes::{paths, routes};

use crate::error::EffectsError;
use crate::sink::{Applied, Apply, SinkHandle};

/// How a field is indexed (every field is also stored and returned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// Words, searched by any of them (`merchant:coffee`).
    Text,
    /// One exact value (`card:card-7`).
    Keyword,
    /// A number, searched by value or range (`amount:[100 TO 500]`).
    Integer,
}

/// What one record does to the index.
#[derive(Clone, Debug, PartialEq)]
pub enum Doc {
    /// Adds or replaces the document `id` with these fields (others are ignored).
    Upsert {
        /// The document's id.
        id: String,
        /// Field values: strings for text and keyword fields, integers for integer fields.
        fields: Map<String, Value>,
    },
    /// Removes the document `id`.
    Delete(String),
    /// Nothing.
    Skip,
}

/// Turns a record into a document change; `Err` passes over the record.
pub type DocMapping = dyn Fn(&Record) -> Result<Doc, String> + Send + Sync;

/// Settings of a full-text sink.
#[derive(Clone, Debug)]
pub struct SearchConfig {
    /// The index's name: `GET /search/{name}`.
    pub name: String,
    /// The topic it follows.
    pub topic: String,
    /// Searchable fields; the first text fields are searched when a query names none.
    pub fields: Vec<(String, FieldKind)>,
    /// Where the index lives.
    pub dir: PathBuf,
    /// Changes wait at most this long for the next commit (a commit writes segments).
    pub commit_interval: Duration,
}

impl SearchConfig {
    /// An index `name` of `topic` in `dir`.
    pub fn new(name: &str, topic: &str, dir: impl Into<PathBuf>) -> Self {
        Self {
            name: name.to_owned(),
            topic: topic.to_owned(),
            fields: Vec::new(),
            dir: dir.into(),
            commit_interval: Duration::from_millis(500),
        }
    }

    /// Adds a field.
    pub fn field(mut self, name: &str, kind: FieldKind) -> Self {
        self.fields.push((name.to_owned(), kind));
        self
    }
}

/// The id field's name in the index.
const ID: &str = "_id";

/// What a commit's payload holds.
#[derive(Serialize, Deserialize)]
struct Payload {
    topic: String,
    next: Vec<u64>,
}

/// The searchable part shared with the routes.
pub(crate) struct Searchable {
    pub(crate) name: String,
    index: Index,
    reader: IndexReader,
    fields: Vec<(String, FieldKind, Field)>,
    default_fields: Vec<Field>,
}

/// One hit.
#[derive(Debug, Serialize)]
pub struct Hit {
    /// Relevance.
    pub score: f32,
    /// The document's id.
    pub id: String,
    /// Its stored fields.
    pub fields: Map<String, Value>,
}

/// A query's answer.
#[derive(Debug, Serialize)]
pub struct Hits {
    /// Matching documents in all.
    pub total: usize,
    /// The best `limit` of them, best first.
    pub hits: Vec<Hit>,
}

/// Why a search failed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The query does not parse (the message says where).
    #[error("bad query: {0}")]
    Query(String),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] tantivy::TantivyError),
}

impl Searchable {
    /// The best `limit` documents for `query` (tantivy's query language:
    /// words, `field:value`, `"phrases"`, `AND`/`OR`/`-`, `[a TO b]`).
    pub(crate) fn search(&self, query: &str, limit: usize) -> Result<Hits, SearchError> {
        let parser = QueryParser::for_index(&self.index, self.default_fields.clone());
        let query = parser
            .parse_query(query)
            .map_err(|e| SearchError::Query(e.to_string()))?;
        let searcher = self.reader.searcher();
        let (top, total) = searcher.search(
            &query,
            &(TopDocs::with_limit(limit.max(1)).order_by_score(), Count),
        )?;
        let id_field = self.index.schema().get_field(ID)?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top.into_iter().take(limit) {
            let doc: TantivyDocument = searcher.doc(address)?;
            let id = doc
                .get_first(id_field)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned();
            let mut fields = Map::new();
            for (name, kind, field) in &self.fields {
                let Some(v) = doc.get_first(*field) else {
                    continue;
                };
                let value = match kind {
                    FieldKind::Integer => v.as_i64().map(Value::from),
                    _ => v.as_str().map(Value::from),
                };
                if let Some(value) = value {
                    fields.insert(name.clone(), value);
                }
            }
            hits.push(Hit { score, id, fields });
        }
        Ok(Hits { total, hits })
    }
}

/// A running full-text sink.
///
/// ```no_run
/// # fn demo(log: std::sync::Arc<dyn kappa_log::Log>) -> Result<(), kappa_effects::EffectsError> {
/// use kappa_effects::search::{Doc, FieldKind, SearchConfig};
/// use kappa_effects::SearchSink;
/// let config = SearchConfig::new("merchants", "events", "./search/merchants")
///     .field("merchant", FieldKind::Text)
///     .field("card", FieldKind::Keyword);
/// let sink = SearchSink::start(log, config, |record| {
///     let v: serde_json::Value = serde_json::from_slice(record.value.as_deref().unwrap_or_default())
///         .map_err(|e| e.to_string())?;
///     let Some(merchant) = v["data"]["merchant"].as_str() else { return Ok(Doc::Skip) };
///     let mut fields = serde_json::Map::new();
///     fields.insert("merchant".into(), merchant.into());
///     Ok(Doc::Upsert { id: v["id"].as_str().unwrap_or_default().into(), fields })
/// })?;
/// # Ok(()) }
/// ```
pub struct SearchSink {
    thread: SinkHandle,
    searchable: Arc<Searchable>,
}

crate::sink::deref_to_handle!(SearchSink);

impl SearchSink {
    /// Opens (or creates) the index and follows the topic from the
    /// positions of its last commit.
    ///
    /// # Errors
    ///
    /// No fields or a bad field name, an index made with other fields or
    /// for another topic (delete its directory to rebuild it), log failures.
    pub fn start(
        log: Arc<dyn Log>,
        config: SearchConfig,
        mapping: impl Fn(&Record) -> Result<Doc, String> + Send + Sync + 'static,
    ) -> Result<Self, EffectsError> {
        if config.fields.is_empty() {
            return Err(EffectsError::Config(format!(
                "index {:?} has no fields",
                config.name
            )));
        }
        for (i, (name, _)) in config.fields.iter().enumerate() {
            let plain = !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !name.starts_with('_');
            if !plain || config.fields[..i].iter().any(|(n, _)| n == name) {
                return Err(EffectsError::Config(format!(
                    "index {:?}: field {name:?} must be unique, of letters, digits and _, not starting with _",
                    config.name
                )));
            }
        }
        let partitions = log.describe_topic(&config.topic)?.spec.partitions as usize;
        let mut builder = Schema::builder();
        let id = builder.add_text_field(ID, STRING | STORED);
        let mut fields = Vec::new();
        for (name, kind) in &config.fields {
            let field = match kind {
                FieldKind::Text => builder.add_text_field(name, TEXT | STORED),
                FieldKind::Keyword => builder.add_text_field(name, STRING | STORED),
                FieldKind::Integer => builder.add_i64_field(name, INDEXED | STORED | FAST),
            };
            fields.push((name.clone(), *kind, field));
        }
        std::fs::create_dir_all(&config.dir)
            .map_err(|e| EffectsError::io(format!("creating {}", config.dir.display()), e))?;
        let directory = MmapDirectory::open(&config.dir)
            .map_err(|e| EffectsError::Config(format!("opening {}: {e}", config.dir.display())))?;
        let index = Index::open_or_create(directory, builder.build()).map_err(|e| {
            EffectsError::Config(format!(
                "index {:?} in {}: {e} (delete the directory to rebuild it from the log)",
                config.name,
                config.dir.display()
            ))
        })?;
        // Checks the index was built from this topic before anything else.
        stored_positions(&index, &config, partitions)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let default_fields: Vec<Field> = fields
            .iter()
            .filter(|(_, k, _)| *k == FieldKind::Text)
            .map(|(_, _, f)| *f)
            .collect();
        let searchable = Arc::new(Searchable {
            name: config.name.clone(),
            index,
            reader,
            default_fields: if default_fields.is_empty() {
                fields.iter().map(|(_, _, f)| *f).collect()
            } else {
                default_fields
            },
            fields,
        });
        let mapping: Arc<DocMapping> = Arc::new(mapping);
        let (searching, c) = (searchable.clone(), config.clone());
        let open: crate::sink::Open = Box::new(move || {
            let start = stored_positions(&searching.index, &c, partitions)?;
            tracing::info!(index = %c.name, dir = %c.dir.display(), from = ?start, "full-text sink starting");
            let apply = SearchApply {
                writer: searching.index.writer(32 * 1024 * 1024)?,
                id,
                searchable: searching.clone(),
                mapping: mapping.clone(),
                topic: c.topic.clone(),
                name: c.name.clone(),
                commit_interval: c.commit_interval,
                last_commit: Instant::now(),
                pending: None,
            };
            Ok((Box::new(apply), start))
        });
        let thread = SinkHandle::start(log, "search", &config.name, &config.topic, 5_000, open)?;
        Ok(Self { thread, searchable })
    }

    /// The index's name.
    pub fn name(&self) -> &str {
        &self.searchable.name
    }

    /// Searches the committed documents.
    ///
    /// # Errors
    ///
    /// A query that does not parse, or index failures.
    pub fn search(&self, query: &str, limit: usize) -> Result<Hits, SearchError> {
        self.searchable.search(query, limit)
    }

    /// Stops after the batch in progress (changes not committed yet are
    /// applied again at the next start).
    ///
    /// # Errors
    ///
    /// The failure that had stopped the sink.
    pub fn close(mut self) -> Result<(), EffectsError> {
        self.thread.stop()
    }
}

/// Drops an index so its next start rebuilds it from the log. Run it while
/// the sink is stopped.
///
/// # Errors
///
/// The directory could not be removed.
pub fn rebuild(dir: &Path) -> Result<(), EffectsError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(EffectsError::io(format!("removing {}", dir.display()), e)),
    }
}

/// The positions in the payload of the index's last commit (zeros for a
/// new index).
fn stored_positions(
    index: &Index,
    config: &SearchConfig,
    partitions: usize,
) -> Result<Vec<u64>, EffectsError> {
    Ok(match index.load_metas()?.payload {
        Some(p) => {
            let payload: Payload =
                serde_json::from_str(&p).map_err(|e| EffectsError::CorruptProgress {
                    what: format!("index {:?}", config.name),
                    detail: e.to_string(),
                })?;
            if payload.topic != config.topic || payload.next.len() != partitions {
                return Err(EffectsError::Config(format!(
                    "index {:?} in {} was built from {} ({} partitions), not {} ({partitions}): delete it to rebuild",
                    config.name,
                    config.dir.display(),
                    payload.topic,
                    payload.next.len(),
                    config.topic
                )));
            }
            payload.next
        }
        None => vec![0; partitions],
    })
}

struct SearchApply {
    writer: IndexWriter,
    id: Field,
    searchable: Arc<Searchable>,
    mapping: Arc<DocMapping>,
    topic: String,
    name: String,
    commit_interval: Duration,
    last_commit: Instant,
    /// Positions after the changes applied but not committed yet.
    pending: Option<Vec<u64>>,
}

impl Apply for SearchApply {
    fn apply(&mut self, records: &[Record], next: &[u64]) -> Result<Applied, EffectsError> {
        let mut applied = Applied::default();
        for r in records {
            match (self.mapping)(r) {
                Ok(Doc::Skip) => applied.skipped += 1,
                Ok(Doc::Delete(id)) => {
                    self.writer.delete_term(Term::from_field_text(self.id, &id));
                    applied.deleted += 1;
                }
                Ok(Doc::Upsert { id, fields }) => {
                    let mut doc = TantivyDocument::default();
                    doc.add_text(self.id, &id);
                    for (name, kind, field) in &self.searchable.fields {
                        match (kind, fields.get(name)) {
                            (FieldKind::Integer, Some(v)) => {
                                if let Some(n) = v.as_i64() {
                                    doc.add_i64(*field, n);
                                }
                            }
                            (_, Some(Value::String(s))) => doc.add_text(*field, s),
                            _ => {}
                        }
                    }
                    self.writer.delete_term(Term::from_field_text(self.id, &id));
                    self.writer.add_document(doc)?;
                    applied.upserted += 1;
                }
                Err(why) => {
                    tracing::warn!(index = %self.name, position = %r.position(), %why, "passing over a record the mapping refused");
                    applied.skipped += 1;
                }
            }
        }
        self.pending = Some(next.to_vec());
        Ok(applied)
    }

    fn durable(&mut self, idle: bool) -> Result<Option<Vec<u64>>, EffectsError> {
        let Some(next) = &self.pending else {
            return Ok(None);
        };
        if !idle && self.last_commit.elapsed() < self.commit_interval {
            return Ok(None);
        }
        let payload = serde_json::to_string(&Payload {
            topic: self.topic.clone(),
            next: next.clone(),
        })
        .unwrap_or_default();
        let mut prepared = self.writer.prepare_commit()?;
        prepared.set_payload(&payload);
        prepared.commit()?;
        self.searchable.reader.reload()?;
        self.last_commit = Instant::now();
        Ok(self.pending.take())
    }

    fn holding(&self) -> bool {
        self.pending.is_some()
    }
}
