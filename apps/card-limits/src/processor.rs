//! The command processor: decides each command from the card's state and
//! emits its events. One instance per task; all of a card's commands reach
//! the same task, in log order (the record key is the card).
//!
//! Settled spending and pending holds are kept as daily panes in window
//! stores, so a balance adds up at most `period_days` (or 7) panes of one
//! card, never its history.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use kappa_log::Log;
use kappa_service::Envelope;
use kappa_streams::{
    I64, Json, Materialized, Processor, ProcessorContext, StoreHandle, Streams, StreamsBuilder,
    StreamsConfig, StreamsError, Topology, Utf8, WindowStoreHandle,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::model::{
    AuthRecord, AuthStatus, Authorize, Balance, Card, DAY_MS, HOLD_MS, LATENESS_MS, RemoveLimit,
    SetLimit, Settle, TxnRecord, at_least, day, limit_fields,
};

/// Store names (also the names of their views).
pub mod stores {
    /// Card → limit, period, latest timestamp.
    pub const CARDS: &str = "cards";
    /// `card/auth_id` → the authorization and its decision.
    pub const AUTHS: &str = "authorizations";
    /// `card/txn_id` → the settlement.
    pub const TXNS: &str = "settlements";
    /// Card → settled cents per day.
    pub const SETTLED: &str = "settled-by-day";
    /// Card → pending (approved, unsettled) cents per day of the authorization.
    pub const PENDING: &str = "pending-by-day";
    /// `card/threshold/day` → a notification was sent.
    pub const NOTICES: &str = "notices";
}

/// Longest limit period, days.
pub const PERIOD_DAYS_MAX: i64 = 366;

/// Window-store retention by stream time: none in practice.
const KEEP_FOREVER_DAYS: u64 = 100 * 366;

/// How far back from a card's latest event time `balance?at=` answers.
pub const BALANCE_HISTORY_MS: i64 = 400 * DAY_MS;

/// Panes kept behind a card's latest event time: enough for any window of a
/// balance within [`BALANCE_HISTORY_MS`] (the longest period plus margin).
/// Older panes are dropped when the card is written.
const SETTLED_KEEP_MS: i64 = BALANCE_HISTORY_MS + (PERIOD_DAYS_MAX + 3) * DAY_MS;
const PENDING_KEEP_MS: i64 = BALANCE_HISTORY_MS + HOLD_MS + 3 * DAY_MS;

/// The stores a processor uses.
#[derive(Clone)]
pub struct Stores {
    cards: StoreHandle<String, Card>,
    auths: StoreHandle<String, AuthRecord>,
    txns: StoreHandle<String, TxnRecord>,
    settled: Panes,
    pending: Panes,
    notices: StoreHandle<String, i64>,
}

/// A window store of daily panes per card, and how far behind a card's
/// latest event time its panes are kept.
#[derive(Clone)]
struct Panes {
    store: WindowStoreHandle<String, i64>,
    keep_ms: i64,
}

/// Where a card's latest event time stands once a command is applied.
#[derive(Clone, Copy)]
struct Latest {
    at: i64,
    /// Whether `at` moved to a new day: only then can panes have fallen
    /// behind what is kept.
    new_day: bool,
}

impl Latest {
    /// The card's latest event time after an event at `t`.
    fn after(card: &Card, t: i64) -> Self {
        let at = card.latest.map_or(t, |l| l.max(t));
        let new_day = card.latest.is_none_or(|l| day(at) > day(l));
        Self { at, new_day }
    }
}

impl Stores {
    fn declare(b: &StreamsBuilder) -> Self {
        Self {
            cards: b.add_state_store(Materialized::persistent(stores::CARDS), Utf8, Json::new()),
            auths: b.add_state_store(Materialized::persistent(stores::AUTHS), Utf8, Json::new()),
            txns: b.add_state_store(Materialized::persistent(stores::TXNS), Utf8, Json::new()),
            settled: Panes::declare(b, stores::SETTLED, SETTLED_KEEP_MS),
            pending: Panes::declare(b, stores::PENDING, PENDING_KEEP_MS),
            notices: b.add_state_store(Materialized::persistent(stores::NOTICES), Utf8, I64),
        }
    }
}

impl Panes {
    fn declare(b: &StreamsBuilder, name: &str, keep_ms: i64) -> Self {
        // Record timestamps are arrival times, not the commands' event
        // times, so the store keeps everything by stream time and panes
        // are dropped per card instead (see `add`).
        let keep_forever = Duration::from_secs(KEEP_FOREVER_DAYS * 86_400);
        Self {
            store: b.add_window_store(Materialized::persistent(name), Utf8, I64, keep_forever),
            keep_ms,
        }
    }

    /// Adds `amount` to the pane of day(`t`), and, when the card's latest
    /// event moved to a new day, drops panes no balance at or after
    /// `latest.at` can reach (older than `keep_ms` behind it).
    fn add(
        &self,
        ctx: &mut Ctx<'_>,
        key: &String,
        t: i64,
        amount: i64,
        latest: Latest,
    ) -> Result<(), StreamsError> {
        let pane = day(t);
        let total = ctx
            .window_get(&self.store, key, pane)?
            .unwrap_or(0)
            .saturating_add(amount);
        ctx.window_put(&self.store, key, pane, (total != 0).then_some(&total))?;
        if !latest.new_day {
            // Nothing fell behind the horizon since the card's last write.
            return Ok(());
        }
        let horizon = day(latest.at).saturating_sub(self.keep_ms);
        for (old, _) in ctx.window_fetch(&self.store, key, i64::MIN, horizon.saturating_sub(1))? {
            ctx.window_put(&self.store, key, old, None)?;
        }
        Ok(())
    }
}

/// The processor of one task.
struct Decide(Stores);

type Ctx<'a> = ProcessorContext<'a, String, Envelope>;

fn parse<T: DeserializeOwned>(command: &Envelope) -> Result<T, String> {
    T::deserialize(&command.data)
        .map_err(|e| format!("the data of {} does not fit: {e}", command.action))
}

impl Decide {
    fn card(&self, ctx: &mut Ctx<'_>, card: &str) -> Result<Card, StreamsError> {
        Ok(ctx
            .get(&self.0.cards, &card.to_owned())?
            .unwrap_or_default())
    }

    /// Settled and pending spending of `card` evaluated at time `t`.
    fn balance(
        &self,
        ctx: &mut Ctx<'_>,
        card: &Card,
        key: &String,
        t: i64,
    ) -> Result<Balance, StreamsError> {
        let today = day(t);
        let period = card.period_days() * DAY_MS;
        let settled =
            ctx.window_fetch(&self.0.settled.store, key, today - period + DAY_MS, today)?;
        let pending =
            ctx.window_fetch(&self.0.pending.store, key, today - HOLD_MS + DAY_MS, today)?;
        Ok(Balance {
            settled: settled.iter().map(|(_, v)| v).sum(),
            pending: pending.iter().map(|(_, v)| v).sum(),
        })
    }

    fn is_late(card: &Card, t: i64) -> bool {
        card.latest
            .is_some_and(|latest| t < latest.saturating_sub(LATENESS_MS))
    }

    fn notify(
        &self,
        ctx: &mut Ctx<'_>,
        command: &Envelope,
        threshold: i64,
        spent: i64,
        limit: i64,
        t: i64,
    ) -> Result<(), StreamsError> {
        let card = command.key.clone().unwrap_or_default();
        let key = format!("{card}/{threshold}/{}", day(t));
        if ctx.get(&self.0.notices, &key)?.is_some() {
            return Ok(());
        }
        ctx.put(&self.0.notices, &key, &1)?;
        let event = command.event(
            "limit-threshold-reached",
            json!({"card": card, "threshold": threshold, "spent": spent, "limit": limit, "day": day(t)}),
        );
        ctx.forward(card, event)
    }

    fn set_limit(
        &self,
        ctx: &mut Ctx<'_>,
        command: &Envelope,
        d: SetLimit,
    ) -> Result<(), StreamsError> {
        let mut card = self.card(ctx, &d.card)?;
        card.limit = Some(d.limit);
        card.period_days = d.period_days.unwrap_or(crate::model::DEFAULT_PERIOD_DAYS);
        ctx.put(&self.0.cards, &d.card, &card)?;
        let data = json!({"card": d.card, "limit": d.limit, "period_days": card.period_days});
        ctx.forward(d.card, command.event("limit-set", data))
    }

    fn remove_limit(
        &self,
        ctx: &mut Ctx<'_>,
        command: &Envelope,
        d: RemoveLimit,
    ) -> Result<(), StreamsError> {
        let mut card = self.card(ctx, &d.card)?;
        card.limit = None;
        ctx.put(&self.0.cards, &d.card, &card)?;
        ctx.forward(
            d.card.clone(),
            command.event("limit-removed", json!({"card": d.card})),
        )
    }

    fn authorize(
        &self,
        ctx: &mut Ctx<'_>,
        command: &Envelope,
        d: Authorize,
    ) -> Result<(), StreamsError> {
        let auth_key = format!("{}/{}", d.card, d.auth_id);
        if let Some(original) = ctx.get(&self.0.auths, &auth_key)? {
            let mut data = original.data.clone();
            data["duplicate"] = Value::Bool(true);
            return ctx.forward(d.card, command.event(&original.decision, data));
        }
        let mut card = self.card(ctx, &d.card)?;
        if Self::is_late(&card, d.timestamp) {
            let data = json!({"auth_id": d.auth_id, "card": d.card, "reason": "late"});
            return ctx.forward(d.card, command.reject("authorization-rejected", data));
        }
        let before = self.balance(ctx, &card, &d.card, d.timestamp)?.spent();
        let approve = card
            .limit
            .is_none_or(|l| i128::from(before) + i128::from(d.amount) <= i128::from(l));
        let latest = Latest::after(&card, d.timestamp);
        let (decision, spent, status) = if approve {
            self.0
                .pending
                .add(ctx, &d.card, d.timestamp, d.amount, latest)?;
            (
                "authorization-approved",
                before.saturating_add(d.amount),
                AuthStatus::Pending,
            )
        } else {
            ("authorization-declined", before, AuthStatus::Declined)
        };
        let (limit, available) = limit_fields(card.limit, spent);
        let mut data = json!({
            "auth_id": d.auth_id, "card": d.card, "amount": d.amount, "merchant": d.merchant,
            "spent": spent, "limit": limit, "available": available,
        });
        if !approve {
            data["reason"] = json!("limit-exceeded");
        }
        card.latest = Some(latest.at);
        ctx.put(&self.0.cards, &d.card, &card)?;
        let record = AuthRecord {
            amount: d.amount,
            timestamp: d.timestamp,
            merchant: d.merchant.clone(),
            status,
            decision: decision.to_owned(),
            data: data.clone(),
        };
        ctx.put(&self.0.auths, &auth_key, &record)?;
        ctx.forward(d.card.clone(), command.event(decision, data))?;
        if let Some(l) = card.limit {
            if approve {
                if !at_least(before, 80, l) && at_least(spent, 80, l) {
                    self.notify(ctx, command, 80, spent, l, d.timestamp)?;
                }
                if spent == l {
                    self.notify(ctx, command, 100, spent, l, d.timestamp)?;
                }
            } else {
                self.notify(ctx, command, 100, spent, l, d.timestamp)?;
            }
        }
        Ok(())
    }

    fn settle(&self, ctx: &mut Ctx<'_>, command: &Envelope, d: Settle) -> Result<(), StreamsError> {
        let txn_key = format!("{}/{}", d.card, d.txn_id);
        if ctx.get(&self.0.txns, &txn_key)?.is_some() {
            let data = json!({"txn_id": d.txn_id, "card": d.card});
            return ctx.forward(d.card, command.event("settlement-duplicate", data));
        }
        let mut card = self.card(ctx, &d.card)?;
        if Self::is_late(&card, d.timestamp) {
            let data = json!({"txn_id": d.txn_id, "card": d.card, "reason": "late"});
            return ctx.forward(d.card, command.reject("settlement-rejected", data));
        }
        let latest = Latest::after(&card, d.timestamp);
        let mut matched = false;
        if let Some(auth_id) = &d.auth_id {
            let auth_key = format!("{}/{auth_id}", d.card);
            if let Some(mut hold) = ctx.get(&self.0.auths, &auth_key)?
                && hold.status == AuthStatus::Pending
            {
                // A hold past every window it could count in has no pane left to take from.
                if day(hold.timestamp) >= day(latest.at).saturating_sub(PENDING_KEEP_MS) {
                    self.0
                        .pending
                        .add(ctx, &d.card, hold.timestamp, -hold.amount, latest)?;
                }
                hold.status = AuthStatus::Settled;
                ctx.put(&self.0.auths, &auth_key, &hold)?;
                matched = true;
            }
        }
        self.0
            .settled
            .add(ctx, &d.card, d.timestamp, d.amount, latest)?;
        let record = TxnRecord {
            amount: d.amount,
            timestamp: d.timestamp,
            auth_id: d.auth_id.clone(),
            matched,
        };
        ctx.put(&self.0.txns, &txn_key, &record)?;
        card.latest = Some(latest.at);
        ctx.put(&self.0.cards, &d.card, &card)?;
        let data = json!({
            "txn_id": d.txn_id, "card": d.card, "amount": d.amount,
            "auth_id": d.auth_id, "matched": matched,
        });
        ctx.forward(d.card, command.event("transaction-settled", data))
    }
}

impl Processor<String, Envelope, String, Envelope> for Decide {
    fn process(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: String,
        command: Envelope,
    ) -> Result<(), StreamsError> {
        let card_of = |data: &Value| data.get("card").and_then(Value::as_str).map(str::to_owned);
        // A command keyed by another card would split that card's state over two tasks.
        if card_of(&command.data).as_deref() != Some(key.as_str()) {
            let data = json!({"reason": "the command's key must be its data.card", "key": key});
            return ctx.forward(key, command.reject("command-rejected", data));
        }
        let outcome = match command.action.as_str() {
            "set-limit" => parse(&command).map(|d| self.set_limit(ctx, &command, d)),
            "remove-limit" => parse(&command).map(|d| self.remove_limit(ctx, &command, d)),
            "authorize" => parse(&command).map(|d| self.authorize(ctx, &command, d)),
            "settle" => parse(&command).map(|d| self.settle(ctx, &command, d)),
            other => Err(format!("unknown action {other:?}")),
        };
        match outcome {
            Ok(result) => result,
            Err(reason) => {
                tracing::warn!(action = %command.action, %reason, "command refused by the processor");
                ctx.forward(
                    key,
                    command.reject("command-rejected", json!({"reason": reason})),
                )
            }
        }
    }
}

/// The topology: commands in, events out.
///
/// # Errors
///
/// Never for this topology; kept fallible like [`StreamsBuilder::build`].
pub fn topology(commands: &str, events: &str) -> Result<Topology, StreamsError> {
    let b = StreamsBuilder::new();
    let stores = Stores::declare(&b);
    let names = [
        stores::CARDS,
        stores::AUTHS,
        stores::TXNS,
        stores::SETTLED,
        stores::PENDING,
        stores::NOTICES,
    ];
    b.stream(commands, Utf8, Json::<Envelope>::new())
        .process(move || Decide(stores.clone()), &names)
        .to(events, Utf8, Json::<Envelope>::new());
    b.build()
}

/// The application id of the processor.
pub const APPLICATION_ID: &str = "card-limits";

/// How the processor runs.
#[derive(Clone, Copy, Debug)]
pub struct Processing {
    /// How often it commits (the floor of a sync command's latency).
    pub commit_interval: Duration,
    /// Worker threads its tasks (one per command partition) are spread over.
    pub threads: NonZeroUsize,
}

impl Processing {
    /// `commit_interval` on one worker thread.
    pub fn single_threaded(commit_interval: Duration) -> Self {
        Self {
            commit_interval,
            threads: NonZeroUsize::MIN,
        }
    }

    /// The runtime settings these make, for [`start_configured`] callers
    /// that set more (scale-out).
    pub fn streams_config(&self) -> StreamsConfig {
        let mut config = StreamsConfig::new(APPLICATION_ID);
        config.commit_interval = self.commit_interval;
        config.num_threads = self.threads.get();
        config
    }
}

/// Worker threads for the processor when none are named: one per core the
/// process may use, since one thread is what bounds a busy service.
pub fn default_threads() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

/// Starts the processor on `log` (its topics must exist).
///
/// # Errors
///
/// Missing topics or log failures.
pub fn start(
    log: Arc<dyn Log>,
    commands: &str,
    events: &str,
    processing: Processing,
) -> Result<Arc<Streams>, StreamsError> {
    start_configured(log, commands, events, processing.streams_config())
}

/// As [`start`], with every runtime setting given.
///
/// # Errors
///
/// Missing topics or log failures.
pub fn start_configured(
    log: Arc<dyn Log>,
    commands: &str,
    events: &str,
    config: StreamsConfig,
) -> Result<Arc<Streams>, StreamsError> {
    Ok(Arc::new(Streams::start(
        log,
        topology(commands, events)?,
        config,
    )?))
}
