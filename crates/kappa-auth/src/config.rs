//! A deployment's security settings, from a JSON file: token keys, API
//! keys (hashed) and the policy.
//!
//! ```json
//! {
//!   "jwt": {
//!     "keys": [
//!       {"alg": "HS256", "secret_env": "CARD_LIMITS_JWT_SECRET", "kid": "k1"},
//!       {"alg": "RS256", "pem_file": "idp-public.pem"}
//!     ],
//!     "jwks_file": "jwks.json",
//!     "issuers": ["https://id.example"],
//!     "audiences": ["card-limits"],
//!     "leeway_s": 30
//!   },
//!   "api_keys": [
//!     {"id": "ops", "sha256": "<64 hex digits>", "subject": "ops-robot", "roles": ["operator"]}
//!   ],
//!   "policy": {"rules": [{"roles": ["operator"], "commands": ["*"], "views": ["*"], "streams": ["*"], "routes": ["/**"]}]}
//! }
//! ```
//!
//! Files are relative to the settings file. HMAC secrets come from the
//! environment (`secret_env`) or a file of their own (`secret_file`, as
//! mounted secrets are), never from the settings file itself.

use std::path::Path;

use serde::Deserialize;

use crate::policy::Policy;
use crate::token::{ApiKey, Authenticator, JwtKey, KeyError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    jwt: Option<Jwt>,
    #[serde(default)]
    api_keys: Vec<ApiKeyEntry>,
    policy: Policy,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Jwt {
    #[serde(default)]
    keys: Vec<KeyEntry>,
    #[serde(default)]
    jwks_file: Option<String>,
    #[serde(default)]
    issuers: Vec<String>,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    leeway_s: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    secret_env: Option<String>,
    #[serde(default)]
    secret_file: Option<String>,
    #[serde(default)]
    pem_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiKeyEntry {
    id: String,
    sha256: String,
    subject: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    revoked: bool,
}

/// Loads the settings file at `path`; secrets are read with `env`.
///
/// # Errors
///
/// An unreadable or invalid file, a missing secret, an unusable key.
pub fn load(
    path: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(Authenticator, Policy), KeyError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| KeyError::new(format!("reading {}: {e}", path.display())))?;
    let file: File = serde_json::from_str(&text)
        .map_err(|e| KeyError::new(format!("{}: {e}", path.display())))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let read = |name: &str| {
        std::fs::read(dir.join(name))
            .map_err(|e| KeyError::new(format!("reading {}: {e}", dir.join(name).display())))
    };
    let mut auth = Authenticator::new();
    if let Some(jwt) = file.jwt {
        for k in jwt.keys {
            let alg = k
                .alg
                .parse()
                .map_err(|e| KeyError::new(format!("key algorithm {:?}: {e}", k.alg)))?;
            let mut key = match (&k.secret_env, &k.secret_file, &k.pem_file) {
                (Some(var), None, None) => {
                    let secret = env(var).ok_or_else(|| {
                        KeyError::new(format!("the environment variable {var} is not set"))
                    })?;
                    JwtKey::hmac(alg, secret.trim().as_bytes())?
                }
                (None, Some(file), None) => JwtKey::hmac(alg, read(file)?.trim_ascii())?,
                (None, None, Some(file)) => JwtKey::public_pem(alg, &read(file)?)?,
                _ => {
                    return Err(KeyError::new(format!(
                        "a {} key needs exactly one of secret_env, secret_file and pem_file",
                        k.alg
                    )));
                }
            };
            if let Some(kid) = &k.kid {
                key = key.with_kid(kid);
            }
            auth = auth.jwt_key(key);
        }
        if let Some(file) = &jwt.jwks_file {
            let text = String::from_utf8(read(file)?)
                .map_err(|_| KeyError::new(format!("{file} is not UTF-8")))?;
            for key in JwtKey::from_jwks(&text)? {
                auth = auth.jwt_key(key);
            }
        }
        for i in &jwt.issuers {
            auth = auth.issuer(i);
        }
        for a in &jwt.audiences {
            auth = auth.audience(a);
        }
        if let Some(l) = jwt.leeway_s {
            auth = auth.leeway(l);
        }
    }
    for k in file.api_keys {
        let roles: Vec<&str> = k.roles.iter().map(String::as_str).collect();
        let mut key = ApiKey::from_hash(&k.id, &k.sha256, &k.subject, &roles)?;
        if k.revoked {
            key = key.revoked();
        }
        auth = auth.api_key(key);
    }
    Ok((auth, file.policy))
}
