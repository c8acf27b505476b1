//! Any `Authorization` value: authentication never panics, and only the
//! configured API key (its exact text) or a JWT signed with the secret gets in.
#![no_main]

use std::sync::LazyLock;

use kappa_auth::jsonwebtoken::Algorithm;
use kappa_auth::{ApiKey, Authenticator, JwtKey};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"the fuzzing secret, long enough for HS256";

static AUTH: LazyLock<Authenticator> = LazyLock::new(|| {
    let key = JwtKey::hmac(Algorithm::HS256, SECRET).unwrap_or_else(|e| panic!("{e}"));
    Authenticator::new()
        .jwt_key(key)
        .audience("fuzz")
        .api_key(ApiKey::from_secret(
            "ops",
            "kk_ops.the-secret",
            "ops",
            &["operator"],
        ))
        .api_key(ApiKey::from_secret("old", "kk_old.revoked", "old", &[]).revoked())
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for header in [
        text.to_owned(),
        format!("Bearer {text}"),
        format!("Bearer kk_{text}"),
    ] {
        if let Ok(p) = AUTH.authenticate(Some(&header)) {
            // Random input forging an HMAC signature is out of reach: the
            // only way in is the API key itself.
            assert_eq!(
                header.trim_end(),
                "Bearer kk_ops.the-secret",
                "let in: {header:?}"
            );
            assert_eq!(p.subject, "ops");
        }
    }
});
