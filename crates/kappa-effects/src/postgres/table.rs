//! The shape of a sink's table, and the SQL made from it.

use serde_json::Value;

use crate::error::EffectsError;

/// The table that stores every sink's positions.
pub const POSITIONS_TABLE: &str = "kappa_sink_positions";

/// A column's type, with how JSON values convert into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    /// `text`, from a JSON string.
    Text,
    /// `bigint`, from a JSON integer.
    BigInt,
    /// `double precision`, from a JSON number.
    Double,
    /// `boolean`, from a JSON boolean.
    Boolean,
    /// `jsonb`, from any JSON value.
    Json,
    /// `timestamptz`, from a JSON integer of milliseconds since the epoch.
    TimestampMs,
}

impl ColumnType {
    /// The column's SQL type.
    pub fn sql(self) -> &'static str {
        match self {
            ColumnType::Text => "text",
            ColumnType::BigInt => "bigint",
            ColumnType::Double => "double precision",
            ColumnType::Boolean => "boolean",
            ColumnType::Json => "jsonb",
            ColumnType::TimestampMs => "timestamptz",
        }
    }

    /// The type of one value in a binary `COPY`.
    pub(crate) fn copy_type(self) -> tokio_postgres::types::Type {
        use tokio_postgres::types::Type;
        match self {
            ColumnType::Text => Type::TEXT,
            ColumnType::BigInt => Type::INT8,
            ColumnType::Double => Type::FLOAT8,
            ColumnType::Boolean => Type::BOOL,
            ColumnType::Json => Type::JSONB,
            ColumnType::TimestampMs => Type::TIMESTAMPTZ,
        }
    }

    /// The array type the sink sends the column's values as.
    pub(crate) fn array(self) -> &'static str {
        match self {
            ColumnType::Text => "text[]",
            ColumnType::BigInt => "int8[]",
            ColumnType::TimestampMs => "timestamptz[]",
            ColumnType::Double => "float8[]",
            ColumnType::Boolean => "bool[]",
            ColumnType::Json => "jsonb[]",
        }
    }
}

/// One column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Name: lowercase letters, digits and `_`, starting with a letter or `_`.
    pub name: String,
    /// Type.
    pub kind: ColumnType,
    /// Whether NULL is allowed (never for key columns).
    pub nullable: bool,
}

/// A sink's table: columns, and the key columns that identify a row.
///
/// ```
/// use kappa_effects::postgres::{ColumnType, Table};
/// let t = Table::new("authorizations", &["auth_id"])
///     .column("auth_id", ColumnType::Text)
///     .column("amount", ColumnType::BigInt)
///     .nullable("merchant", ColumnType::Text);
/// let sql = t.create_sql()?;
/// assert!(sql.contains("PRIMARY KEY (\"auth_id\")"));
/// # Ok::<_, kappa_effects::EffectsError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    /// Table name (optionally `schema.table`).
    pub name: String,
    /// Columns in order; a [`Change::Upsert`](super::Change::Upsert) gives values in this order.
    pub columns: Vec<Column>,
    /// Key column names, in order; a [`Change::Delete`](super::Change::Delete) gives values in this order.
    pub key: Vec<String>,
}

/// Whether `s` is a plain SQL identifier (so quoting it changes nothing).
fn plain_identifier(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// `"name"` or `"schema"."name"`.
pub(crate) fn quoted(name: &str) -> String {
    name.split('.')
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(".")
}

impl Table {
    /// A table `name` identified by the `key` columns (declare them too).
    pub fn new(name: &str, key: &[&str]) -> Self {
        Self {
            name: name.to_owned(),
            columns: Vec::new(),
            key: key.iter().map(|k| (*k).to_owned()).collect(),
        }
    }

    /// Adds a NOT NULL column.
    pub fn column(mut self, name: &str, kind: ColumnType) -> Self {
        self.columns.push(Column {
            name: name.to_owned(),
            kind,
            nullable: false,
        });
        self
    }

    /// Adds a column that may be NULL.
    pub fn nullable(mut self, name: &str, kind: ColumnType) -> Self {
        self.columns.push(Column {
            name: name.to_owned(),
            kind,
            nullable: true,
        });
        self
    }

    /// Checks names and keys.
    ///
    /// # Errors
    ///
    /// A name that is not a plain identifier, a repeated column, no key, or
    /// a key that names no column or a nullable one.
    pub fn check(&self) -> Result<(), EffectsError> {
        let bad = |why: String| {
            Err(EffectsError::Config(format!(
                "table {:?}: {why}",
                self.name
            )))
        };
        let parts: Vec<&str> = self.name.split('.').collect();
        if parts.len() > 2 || !parts.iter().all(|p| plain_identifier(p)) {
            return bad(
                "the name must be lowercase letters, digits and _ (optionally schema.table)".into(),
            );
        }
        if self.columns.is_empty() || self.key.is_empty() {
            return bad("it needs columns and a key".into());
        }
        for (i, c) in self.columns.iter().enumerate() {
            if !plain_identifier(&c.name) {
                return bad(format!("column {:?} is not a plain identifier", c.name));
            }
            if self.columns[..i].iter().any(|d| d.name == c.name) {
                return bad(format!("column {:?} is declared twice", c.name));
            }
        }
        for k in &self.key {
            match self.columns.iter().find(|c| c.name == *k) {
                None => return bad(format!("key column {k:?} is not declared")),
                Some(c) if c.nullable => return bad(format!("key column {k:?} is nullable")),
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// `CREATE TABLE IF NOT EXISTS` for this table.
    ///
    /// # Errors
    ///
    /// As [`Table::check`].
    pub fn create_sql(&self) -> Result<String, EffectsError> {
        self.check()?;
        let mut cols: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                format!(
                    "\"{}\" {}{}",
                    c.name,
                    c.kind.sql(),
                    if c.nullable { "" } else { " NOT NULL" }
                )
            })
            .collect();
        cols.push(format!("PRIMARY KEY ({})", self.key_list()));
        Ok(format!(
            "CREATE TABLE IF NOT EXISTS {} (\n  {}\n)",
            quoted(&self.name),
            cols.join(",\n  ")
        ))
    }

    pub(crate) fn key_list(&self) -> String {
        self.key
            .iter()
            .map(|k| format!("\"{k}\""))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub(crate) fn key_columns(&self) -> Vec<&Column> {
        self.key
            .iter()
            .filter_map(|k| self.columns.iter().find(|c| c.name == *k))
            .collect()
    }

    /// `INSERT … SELECT FROM unnest(arrays) ON CONFLICT … DO UPDATE`: one
    /// statement per batch whatever its size.
    pub(crate) fn upsert_sql(&self) -> String {
        self.insert_sql(true)
    }

    fn insert_sql(&self, upsert: bool) -> String {
        let names: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("\"{}\"", c.name))
            .collect();
        let (arrays, select) = unnest(&self.columns.iter().collect::<Vec<_>>());
        let updates: Vec<String> = self
            .columns
            .iter()
            .filter(|c| !self.key.contains(&c.name))
            .map(|c| format!("\"{0}\" = EXCLUDED.\"{0}\"", c.name))
            .collect();
        let on_conflict = match (upsert, updates.is_empty()) {
            (false, _) => String::new(),
            (true, true) => format!(" ON CONFLICT ({}) DO NOTHING", self.key_list()),
            (true, false) => format!(
                " ON CONFLICT ({}) DO UPDATE SET {}",
                self.key_list(),
                updates.join(", ")
            ),
        };
        format!(
            "INSERT INTO {} ({}) SELECT {select} FROM unnest({arrays}) AS u({}){on_conflict}",
            quoted(&self.name),
            names.join(", "),
            (0..self.columns.len())
                .map(|i| format!("c{i}"))
                .collect::<Vec<_>>()
                .join(", "),
        )
    }

    /// `COPY … FROM STDIN BINARY` of every column: the fastest way to add
    /// rows whose keys do not exist yet.
    pub(crate) fn copy_sql(&self) -> String {
        let names: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("\"{}\"", c.name))
            .collect();
        format!(
            "COPY {} ({}) FROM STDIN BINARY",
            quoted(&self.name),
            names.join(", ")
        )
    }

    /// `DELETE … WHERE (key) IN (SELECT FROM unnest(arrays))`.
    pub(crate) fn delete_sql(&self) -> String {
        let keys = self.key_columns();
        let (arrays, select) = unnest(&keys);
        format!(
            "DELETE FROM {} WHERE ({}) IN (SELECT {select} FROM unnest({arrays}) AS u({}))",
            quoted(&self.name),
            self.key_list(),
            (0..keys.len())
                .map(|i| format!("c{i}"))
                .collect::<Vec<_>>()
                .join(", "),
        )
    }
}

/// The `unnest` arguments and the select list.
fn unnest(columns: &[&Column]) -> (String, String) {
    let arrays = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("${}::{}", i + 1, c.kind.array()))
        .collect::<Vec<_>>()
        .join(", ");
    let select = (0..columns.len())
        .map(|i| format!("c{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    (arrays, select)
}

/// One column's values of a batch, typed for the driver.
#[derive(Debug)]
pub(crate) enum ColumnValues {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
    Double(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    Json(Vec<Option<Value>>),
    Time(Vec<Option<std::time::SystemTime>>),
}

impl ColumnValues {
    pub(crate) fn new(kind: ColumnType, capacity: usize) -> Self {
        match kind {
            ColumnType::Text => Self::Text(Vec::with_capacity(capacity)),
            ColumnType::BigInt => Self::Int(Vec::with_capacity(capacity)),
            ColumnType::TimestampMs => Self::Time(Vec::with_capacity(capacity)),
            ColumnType::Double => Self::Double(Vec::with_capacity(capacity)),
            ColumnType::Boolean => Self::Bool(Vec::with_capacity(capacity)),
            ColumnType::Json => Self::Json(Vec::with_capacity(capacity)),
        }
    }

    /// Appends one value (consumed).
    pub(crate) fn push(&mut self, v: Value) {
        match self {
            Self::Text(a) => a.push(match v {
                Value::String(s) => Some(s),
                _ => None,
            }),
            Self::Int(a) => a.push(v.as_i64()),
            Self::Double(a) => a.push(v.as_f64()),
            Self::Bool(a) => a.push(v.as_bool()),
            Self::Json(a) => a.push((!v.is_null()).then_some(v)),
            Self::Time(a) => a.push(v.as_i64().map(time_of_ms)),
        }
    }

    /// Values held.
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Text(a) => a.len(),
            Self::Int(a) => a.len(),
            Self::Double(a) => a.len(),
            Self::Bool(a) => a.len(),
            Self::Json(a) => a.len(),
            Self::Time(a) => a.len(),
        }
    }

    /// The `i`-th value (for a row of a binary `COPY`).
    pub(crate) fn at(&self, i: usize) -> &(dyn tokio_postgres::types::ToSql + Sync) {
        match self {
            Self::Text(a) => &a[i],
            Self::Int(a) => &a[i],
            Self::Double(a) => &a[i],
            Self::Bool(a) => &a[i],
            Self::Json(a) => &a[i],
            Self::Time(a) => &a[i],
        }
    }

    pub(crate) fn as_sql(&self) -> &(dyn tokio_postgres::types::ToSql + Sync) {
        match self {
            Self::Text(a) => a,
            Self::Int(a) => a,
            Self::Double(a) => a,
            Self::Bool(a) => a,
            Self::Json(a) => a,
            Self::Time(a) => a,
        }
    }
}

/// Milliseconds since the epoch (negative before it) as a time.
fn time_of_ms(ms: i64) -> std::time::SystemTime {
    let offset = std::time::Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        std::time::UNIX_EPOCH + offset
    } else {
        std::time::UNIX_EPOCH - offset
    }
}

/// Whether `v` fits a column (NULL only where allowed).
pub(crate) fn fits(c: &Column, v: &Value) -> bool {
    match (c.kind, v) {
        (_, Value::Null) => c.nullable,
        (ColumnType::Text, Value::String(_)) => true,
        (ColumnType::BigInt | ColumnType::TimestampMs, v) => v.as_i64().is_some(),
        (ColumnType::Double, Value::Number(_)) => true,
        (ColumnType::Boolean, Value::Bool(_)) => true,
        (ColumnType::Json, _) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_unsafe_names_and_bad_keys() {
        let ok = Table::new("t", &["id"]).column("id", ColumnType::Text);
        assert!(ok.check().is_ok());
        for bad in [
            Table::new("t; drop table x", &["id"]).column("id", ColumnType::Text),
            Table::new("t", &["id"]).column("Id", ColumnType::Text),
            Table::new("t", &["id"]).nullable("id", ColumnType::Text),
            Table::new("t", &["nope"]).column("id", ColumnType::Text),
            Table::new("t", &[]).column("id", ColumnType::Text),
            Table::new("t", &["id"])
                .column("id", ColumnType::Text)
                .column("id", ColumnType::BigInt),
            Table::new("a.b.c", &["id"]).column("id", ColumnType::Text),
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn values_fit_their_columns() {
        let c = |kind, nullable| Column {
            name: "c".into(),
            kind,
            nullable,
        };
        assert!(fits(&c(ColumnType::BigInt, false), &serde_json::json!(5)));
        assert!(!fits(
            &c(ColumnType::BigInt, false),
            &serde_json::json!(5.5)
        ));
        assert!(!fits(&c(ColumnType::BigInt, false), &Value::Null));
        assert!(fits(&c(ColumnType::BigInt, true), &Value::Null));
        assert!(!fits(&c(ColumnType::Text, false), &serde_json::json!(1)));
        assert!(fits(
            &c(ColumnType::Json, false),
            &serde_json::json!({"a": 1})
        ));
    }
}
