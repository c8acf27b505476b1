//! A generated history of card commands, and a straightforward
//! implementation of the rules (the oracle) to check the service against.
#![allow(dead_code)]

pub mod history_http;
pub mod security;
pub mod service;
pub mod views;

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

pub const H: i64 = 86_400_000;
const V: i64 = 7 * H;
const G: i64 = 2 * H;

pub fn day(t: i64) -> i64 {
    t.div_euclid(H) * H
}

/// A command as sent: action and data (the key is `data.card`).
#[derive(Clone, Debug)]
pub struct Command {
    pub action: &'static str,
    pub data: Value,
}

impl Command {
    pub fn card(&self) -> &str {
        self.data["card"].as_str().unwrap()
    }

    pub fn body(&self) -> Value {
        json!({"action": self.action, "key": self.card(), "data": self.data})
    }
}

/// An expected event: action, data, error flag.
pub type Expected = (String, Value, bool);

struct Hold {
    auth_id: String,
    t: i64,
    amount: i64,
    settled: bool,
}

#[derive(Default)]
pub struct OracleCard {
    pub limit: Option<i64>,
    period_days: i64,
    latest: Option<i64>,
    settlements: Vec<(i64, i64)>,
    holds: Vec<Hold>,
    decisions: HashMap<String, (String, Value)>,
    txns: HashSet<String>,
    notices: HashSet<(i64, i64)>,
}

impl OracleCard {
    pub fn period(&self) -> i64 {
        if self.period_days > 0 {
            self.period_days
        } else {
            30
        }
    }

    pub fn settled(&self, t: i64) -> i64 {
        let p = self.period() * H;
        self.settlements
            .iter()
            .filter(|(s, _)| day(t) - p + H <= day(*s) && day(*s) <= day(t))
            .map(|(_, a)| a)
            .sum()
    }

    pub fn pending(&self, t: i64) -> i64 {
        self.holds
            .iter()
            .filter(|h| !h.settled && day(t) - V + H <= day(h.t) && day(h.t) <= day(t))
            .map(|h| h.amount)
            .sum()
    }

    pub fn latest(&self) -> Option<i64> {
        self.latest
    }

    fn late(&self, t: i64) -> bool {
        self.latest.is_some_and(|l| t < l - G)
    }

    /// Holds approved and not settled, by auth id.
    pub fn open_holds(&self) -> Vec<String> {
        self.holds
            .iter()
            .filter(|h| !h.settled)
            .map(|h| h.auth_id.clone())
            .collect()
    }
}

/// The rules, written plainly.
#[derive(Default)]
pub struct Oracle {
    pub cards: HashMap<String, OracleCard>,
}

fn limit_json(limit: Option<i64>, spent: i64) -> (Value, Value) {
    match limit {
        Some(l) => (json!(l), json!(l - spent)),
        None => (Value::Null, Value::Null),
    }
}

/// A record of `card` too late to decide: rejected, an error, naming the
/// record by its `id_field`.
fn late(action: &str, id_field: &str, id: &str, card: &str) -> Expected {
    (
        action.into(),
        json!({id_field: id, "card": card, "reason": "late"}),
        true,
    )
}

impl Oracle {
    pub fn apply(&mut self, c: &Command) -> Vec<Expected> {
        let d = &c.data;
        let card_id = c.card().to_owned();
        let card = self.cards.entry(card_id.clone()).or_default();
        let mut out = Vec::new();
        match c.action {
            "set-limit" => {
                card.limit = Some(d["limit"].as_i64().unwrap());
                card.period_days = d.get("period_days").and_then(Value::as_i64).unwrap_or(30);
                out.push((
                    "limit-set".into(),
                    json!({"card": card_id, "limit": card.limit, "period_days": card.period_days}),
                    false,
                ));
            }
            "remove-limit" => {
                card.limit = None;
                out.push(("limit-removed".into(), json!({"card": card_id}), false));
            }
            "authorize" => {
                let auth_id = d["auth_id"].as_str().unwrap().to_owned();
                let (t, amount) = (
                    d["timestamp"].as_i64().unwrap(),
                    d["amount"].as_i64().unwrap(),
                );
                if let Some((action, data)) = card.decisions.get(&auth_id) {
                    let mut data = data.clone();
                    data["duplicate"] = json!(true);
                    out.push((action.clone(), data, false));
                    return out;
                }
                if card.late(t) {
                    out.push(late(
                        "authorization-rejected",
                        "auth_id",
                        &auth_id,
                        &card_id,
                    ));
                    return out;
                }
                let before = card.settled(t) + card.pending(t);
                let approve = card.limit.is_none_or(|l| before + amount <= l);
                let spent = if approve { before + amount } else { before };
                let (limit, available) = limit_json(card.limit, spent);
                let mut data = json!({"auth_id": auth_id, "card": card_id, "amount": amount, "merchant": d["merchant"], "spent": spent, "limit": limit, "available": available});
                let action = if approve {
                    "authorization-approved"
                } else {
                    "authorization-declined"
                };
                if !approve {
                    data["reason"] = json!("limit-exceeded");
                }
                if approve {
                    card.holds.push(Hold {
                        auth_id: auth_id.clone(),
                        t,
                        amount,
                        settled: false,
                    });
                }
                card.latest = Some(card.latest.map_or(t, |l| l.max(t)));
                card.decisions
                    .insert(auth_id, (action.to_owned(), data.clone()));
                out.push((action.into(), data, false));
                if let Some(l) = card.limit {
                    let mut notify = |threshold: i64, card: &mut OracleCard| {
                        if card.notices.insert((threshold, day(t))) {
                            out.push(("limit-threshold-reached".into(), json!({"card": card_id, "threshold": threshold, "spent": spent, "limit": l, "day": day(t)}), false));
                        }
                    };
                    // 80%: from below to at least (spent * 100 vs limit * 80).
                    if approve && before * 100 < l * 80 && spent * 100 >= l * 80 {
                        notify(80, card);
                    }
                    if !approve || spent == l {
                        notify(100, card);
                    }
                }
            }
            "settle" => {
                let txn_id = d["txn_id"].as_str().unwrap().to_owned();
                let (t, amount) = (
                    d["timestamp"].as_i64().unwrap(),
                    d["amount"].as_i64().unwrap(),
                );
                if card.txns.contains(&txn_id) {
                    out.push((
                        "settlement-duplicate".into(),
                        json!({"txn_id": txn_id, "card": card_id}),
                        false,
                    ));
                    return out;
                }
                if card.late(t) {
                    out.push(late("settlement-rejected", "txn_id", &txn_id, &card_id));
                    return out;
                }
                let auth_id = d.get("auth_id").and_then(Value::as_str).map(str::to_owned);
                let mut matched = false;
                if let Some(a) = &auth_id
                    && let Some(h) = card
                        .holds
                        .iter_mut()
                        .find(|h| &h.auth_id == a && !h.settled)
                {
                    h.settled = true;
                    matched = true;
                }
                card.settlements.push((t, amount));
                card.txns.insert(txn_id.clone());
                card.latest = Some(card.latest.map_or(t, |l| l.max(t)));
                out.push(("transaction-settled".into(), json!({"txn_id": txn_id, "card": card_id, "amount": amount, "auth_id": auth_id, "matched": matched}), false));
            }
            other => panic!("unknown action {other}"),
        }
        out
    }
}

/// A small deterministic generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// `n` commands over `cards` cards, about a day of event time per command
/// of a card (so months for a few thousand commands),
/// with limit changes, duplicates, late records and settlements with and
/// without matching holds.
pub fn history(seed: u64, cards: usize, n: usize) -> Vec<Command> {
    let mut rng = Rng::new(seed);
    let start = 1_780_000_000_000_i64;
    let mut clock: Vec<i64> = (0..cards).map(|_| start).collect();
    let mut auths: Vec<Vec<(String, i64)>> = vec![Vec::new(); cards];
    let mut txns: Vec<Vec<String>> = vec![Vec::new(); cards];
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let c = rng.below(cards as u64) as usize;
        let card = format!("card-{c}");
        // About a day per command of a card: a few thousand commands over
        // dozens of cards span months.
        clock[c] += rng.below(2 * H as u64) as i64;
        let t = match rng.below(100) {
            0..=2 => clock[c] - G - H - rng.below(5 * H as u64) as i64,
            3..=14 => clock[c] - rng.below(G as u64) as i64,
            _ => clock[c],
        };
        let roll = rng.below(100);
        let command = if roll < 5 || i < cards / 2 {
            let limit = [0, 5_000, 20_000, 100_000, 500_000, 2_000_000][rng.below(6) as usize]
                + rng.below(1000) as i64;
            let mut data = json!({"card": card, "limit": limit});
            let period = [1, 7, 30, 90, 366, 0][rng.below(6) as usize];
            if period > 0 {
                data["period_days"] = json!(period);
            }
            Command {
                action: "set-limit",
                data,
            }
        } else if roll < 7 {
            Command {
                action: "remove-limit",
                data: json!({"card": card}),
            }
        } else if roll < 62 {
            let (auth_id, amount) = if !auths[c].is_empty() && rng.chance(5) {
                auths[c][rng.below(auths[c].len() as u64) as usize].clone()
            } else {
                let a = (format!("a{i}"), 100 + rng.below(30_000) as i64);
                auths[c].push(a.clone());
                a
            };
            Command {
                action: "authorize",
                data: json!({"auth_id": auth_id, "card": card, "amount": amount, "merchant": format!("m-{}", rng.below(20)), "timestamp": t}),
            }
        } else {
            let txn_id = if !txns[c].is_empty() && rng.chance(4) {
                txns[c][rng.below(txns[c].len() as u64) as usize].clone()
            } else {
                let id = format!("t{i}");
                txns[c].push(id.clone());
                id
            };
            let mut data = json!({"txn_id": txn_id, "card": card, "timestamp": t, "amount": 100 + rng.below(30_000) as i64});
            match rng.below(100) {
                0..=59 if !auths[c].is_empty() => {
                    let (a, amount) = auths[c][rng.below(auths[c].len() as u64) as usize].clone();
                    data["auth_id"] = json!(a);
                    data["amount"] = json!(amount);
                }
                60..=74 => data["auth_id"] = json!(format!("nope-{i}")),
                _ => {}
            }
            Command {
                action: "settle",
                data,
            }
        };
        out.push(command);
    }
    out
}
