//! The commands' payloads, the state kept per card, and the rules' constants.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// One day in milliseconds (the pane of every window).
pub const DAY_MS: i64 = 86_400_000;
/// How long an approved authorization holds funds.
pub const HOLD_MS: i64 = 7 * DAY_MS;
/// How far behind a card's latest authorization or settlement a new one may be.
pub const LATENESS_MS: i64 = 2 * DAY_MS;
/// The period of a limit when `set-limit` names none.
pub const DEFAULT_PERIOD_DAYS: i64 = 30;

/// The day a timestamp falls in (its start).
pub fn day(t: i64) -> i64 {
    t.div_euclid(DAY_MS) * DAY_MS
}

/// `set-limit` data.
#[derive(Clone, Debug, Deserialize)]
pub struct SetLimit {
    /// The card.
    pub card: String,
    /// Cents.
    pub limit: i64,
    /// Length of the settled-spending window, days.
    #[serde(default)]
    pub period_days: Option<i64>,
}

/// `remove-limit` data.
#[derive(Clone, Debug, Deserialize)]
pub struct RemoveLimit {
    /// The card.
    pub card: String,
}

/// `authorize` data.
#[derive(Clone, Debug, Deserialize)]
pub struct Authorize {
    /// Unique per card.
    pub auth_id: String,
    /// The card.
    pub card: String,
    /// Cents.
    pub amount: i64,
    /// Who asks.
    pub merchant: String,
    /// Event time, ms.
    pub timestamp: i64,
}

/// `settle` data.
#[derive(Clone, Debug, Deserialize)]
pub struct Settle {
    /// Unique per card.
    pub txn_id: String,
    /// The card.
    pub card: String,
    /// Cents.
    pub amount: i64,
    /// Event time, ms.
    pub timestamp: i64,
    /// The authorization this settles, if any.
    #[serde(default)]
    pub auth_id: Option<String>,
}

/// What the service keeps per card.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Card {
    /// The limit in force, cents.
    pub limit: Option<i64>,
    /// Days of settled spending that count.
    pub period_days: i64,
    /// Largest timestamp of an accepted authorization or settlement.
    pub latest: Option<i64>,
}

impl Card {
    /// The period in force (the default before any limit was set).
    pub fn period_days(&self) -> i64 {
        if self.period_days > 0 {
            self.period_days
        } else {
            DEFAULT_PERIOD_DAYS
        }
    }
}

/// An authorization's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthStatus {
    /// Approved, holding funds until settled (or for 7 days).
    Pending,
    /// Approved and settled.
    Settled,
    /// Declined.
    Declined,
}

/// A decided authorization.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuthRecord {
    /// Cents.
    pub amount: i64,
    /// Event time.
    pub timestamp: i64,
    /// Who asked.
    pub merchant: String,
    /// Where it stands.
    pub status: AuthStatus,
    /// The decision event's action, re-emitted for duplicates.
    pub decision: String,
    /// The decision event's data.
    pub data: Value,
}

/// A settlement seen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TxnRecord {
    /// Cents.
    pub amount: i64,
    /// Event time.
    pub timestamp: i64,
    /// The authorization it named.
    pub auth_id: Option<String>,
    /// Whether it released a pending hold.
    pub matched: bool,
}

/// Spending of a card at a time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Balance {
    /// Settled spending in the period.
    pub settled: i64,
    /// Pending holds in the last 7 days.
    pub pending: i64,
}

impl Balance {
    /// Settled plus pending.
    pub fn spent(&self) -> i64 {
        self.settled.saturating_add(self.pending)
    }
}

/// The JSON of a limit and what is left of it (`null`s without a limit).
pub fn limit_fields(limit: Option<i64>, spent: i64) -> (Value, Value) {
    match limit {
        Some(l) => (json!(l), json!(l.saturating_sub(spent))),
        None => (Value::Null, Value::Null),
    }
}

/// Whether `spent` is at least `percent`% of `limit` (exact, no overflow).
pub fn at_least(spent: i64, percent: i64, limit: i64) -> bool {
    i128::from(spent) * 100 >= i128::from(percent) * i128::from(limit)
}
