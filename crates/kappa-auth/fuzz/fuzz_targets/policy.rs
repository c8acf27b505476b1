//! Any policy, principal and request: evaluation never panics, and a rule
//! restricted to a claim's entities never allows a key the claim lacks.
#![no_main]

use kappa_auth::{Access, Policy, Principal, decode_segment};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\n');
    let (Some(policy), Some(claim), Some(action), Some(path)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let _ = decode_segment(path);
    let Ok(policy) = serde_json::from_str::<Policy>(policy) else {
        return;
    };
    let claim: Value = serde_json::from_str(claim).unwrap_or(Value::String(claim.to_owned()));
    let principal = Principal::new("fuzz", &["customer"]).with_claim("cards", claim.clone());
    let key = path.rsplit('/').next();
    let asks = [
        Access::Command { action, key },
        Access::View { store: action, key },
        Access::View {
            store: action,
            key: None,
        },
        Access::Stream { name: action },
        Access::Route { path },
    ];
    let allowed: Vec<bool> = asks.iter().map(|a| policy.allows(&principal, a)).collect();
    // Only rules restricted to the `cards` claim: nothing outside it gets through.
    let restricted = policy
        .rules
        .iter()
        .all(|r| r.keys_from_claim.as_deref() == Some("cards"));
    if restricted {
        let owns = |k: &str| match &claim {
            Value::String(s) => s == k,
            Value::Array(a) => a.iter().any(|v| v.as_str() == Some(k)),
            _ => false,
        };
        if allowed[0] || allowed[1] {
            assert!(key.is_some_and(owns), "{key:?} allowed with {claim}");
        }
        assert!(
            !allowed[2] && !allowed[3],
            "a scan or stream allowed under a per-entity rule"
        );
    }
});
