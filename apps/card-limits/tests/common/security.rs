//! The security settings and tokens the tests sign in with: a shared JWT
//! secret, an operator API key, a revoked one, and customers' tokens
//! naming their cards.

use kappa_gateway::auth::ApiKey;
use kappa_gateway::auth::jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

const SECRET: &str = "the card-limits test secret, long enough";

pub fn token(sub: &str, roles: &[&str], cards: &[&str]) -> String {
    let claims = json!({"sub": sub, "roles": roles, "cards": cards, "aud": "card-limits",
        "iss": "https://id.example", "exp": kappa_log::now_ms() / 1000 + 600});
    let t = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    format!("Bearer {t}")
}

pub fn settings(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::write(dir.join("jwt.secret"), format!("{SECRET}\n")).unwrap();
    let mut s: Value = serde_json::from_str(include_str!("../../security.example.json")).unwrap();
    s["jwt"]["keys"] = json!([{"alg": "HS256", "secret_file": "jwt.secret"}]);
    s["api_keys"] = json!([
        {"id": "ops", "sha256": ApiKey::hash("kk_ops.operator-secret"), "subject": "ops-robot", "roles": ["operator"]},
        {"id": "old", "sha256": ApiKey::hash("kk_old.old-secret"), "subject": "old-robot", "roles": ["operator"], "revoked": true}
    ]);
    let path = dir.join("security.json");
    std::fs::write(&path, s.to_string()).unwrap();
    path
}
