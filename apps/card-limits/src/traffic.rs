//! Realistic command streams for the demo and the load generator: each card
//! first gets a limit (renewed every ten steps), then authorizations, most
//! of which settle seven steps later; one in twenty is a retried
//! authorization (a duplicate), and the settlement naming it finds no hold.
//! Limits are small enough that some authorizations are declined. Event time
//! moves a minute per card step.

use bytes::Bytes;
use kappa_gateway::load::CommandMaker;
use serde_json::{Value, json};

/// Merchants of the demo stream (searchable by any word of their names).
pub const MERCHANTS: [&str; 37] = [
    "Corner Coffee",
    "Harbor Books",
    "Green Grocer",
    "Night Owl Pharmacy",
    "Blue Line Taxi",
    "Summit Outdoor",
    "Pixel Electronics",
    "Golden Wok",
    "River Bakery",
    "Metro Transit",
    "Sunrise Coffee",
    "Oak Hardware",
    "City Cinema",
    "Lakeside Fuel",
    "Bright Dental",
    "Urban Florist",
    "Northside Books",
    "Fresh Market",
    "Velvet Salon",
    "Harbor Fuel",
    "Maple Diner",
    "Quick Parking",
    "Stone Pizza",
    "Atlas Travel",
    "Echo Music",
    "Cedar Pharmacy",
    "Silver Gym",
    "Orchard Grocer",
    "Little Pet Shop",
    "Beacon Hotel",
    "Copper Kettle Coffee",
    "Prime Electronics",
    "Willow Books",
    "Central Bakery",
    "Ridge Outdoor",
    "Bay Cinema",
    "Lantern Diner",
];

/// Event time of the first commands (2026-06-01).
pub const START_MS: i64 = 1_780_272_000_000;

/// The `n`-th command of a stream over `cards` cards: (action, data).
///
/// ```
/// let (action, data) = card_limits::traffic::command(0, 10);
/// assert_eq!(action, "set-limit");
/// assert_eq!(data["card"], "card-0");
/// ```
pub fn command(n: u64, cards: u64) -> (&'static str, Value) {
    let cards = cards.max(1);
    let card = format!("card-{}", n % cards);
    let step = n / cards;
    let t = START_MS + i64::try_from(step).unwrap_or(i64::MAX / 60_000) * 60_000;
    // A deterministic spread of amounts (no two neighbours alike).
    let amount = 100 + (n.wrapping_mul(2_654_435_761) % 9_900) as i64;
    if step % 20 == 17 {
        // A retried authorization: the same id as the step before (decided already).
        return (
            "authorize",
            json!({"auth_id": format!("a{}", step - 1), "card": card, "amount": amount,
                "merchant": MERCHANTS[(n % 37) as usize], "timestamp": t}),
        );
    }
    match step % 10 {
        0 => {
            let limit = 20_000 + (n.wrapping_mul(40_503) % 20) as i64 * 10_000;
            (
                "set-limit",
                json!({"card": card, "limit": limit, "period_days": 30}),
            )
        }
        1..=7 => (
            "authorize",
            json!({"auth_id": format!("a{step}"), "card": card, "amount": amount,
                "merchant": MERCHANTS[(n % 37) as usize], "timestamp": t}),
        ),
        // Settles the authorization made seven steps before (same card).
        _ => (
            "settle",
            json!({"txn_id": format!("t{step}"), "card": card, "amount": amount,
                "auth_id": format!("a{}", step - 7), "timestamp": t}),
        ),
    }
}

/// The same stream as request bodies for `kappa_gateway::load`.
pub fn bodies(cards: u64) -> CommandMaker {
    std::sync::Arc::new(move |n| {
        let (action, data) = command(n, cards);
        let card = data["card"].clone();
        Bytes::from(json!({"action": action, "key": card, "data": data}).to_string())
    })
}
