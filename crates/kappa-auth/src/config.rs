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
//!   "kafka_users": [
//!     {"name": "notifier", "password_env": "NOTIFIER_KAFKA_PASSWORD", "roles": ["notifier"]}
//!   ],
//!   "policy": {"rules": [
//!     {"roles": ["operator"], "commands": ["*"], "views": ["*"], "streams": ["*"], "routes": ["/**"]},
//!     {"roles": ["notifier"], "topics": {"read": ["events"]}, "groups": ["notifier"]}
//!   ]}
//! }
//! ```
//!
//! Files are relative to the settings file. HMAC secrets and Kafka users'
//! passwords come from the environment (`secret_env`, `password_env`) or a
//! file of their own (`secret_file`, `password_file`, as mounted secrets
//! are), never from the settings file itself. `kafka_users` are the SASL
//! users (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) of a Kappa node serving its
//! log over the Kafka protocol; the same policy says what they may do.

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
    #[serde(default)]
    kafka_users: Vec<KafkaUserEntry>,
    policy: Policy,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KafkaUserEntry {
    name: String,
    #[serde(default)]
    password_env: Option<String>,
    #[serde(default)]
    password_file: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
}

/// A SASL user of a Kappa node: its name, password and roles.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaUser {
    /// The SASL user name, which is the principal's subject.
    pub name: String,
    /// The password, from the environment or a secret file.
    pub password: String,
    /// The principal's roles, for the policy.
    pub roles: Vec<String>,
}

impl std::fmt::Debug for KafkaUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaUser")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .field("roles", &self.roles)
            .finish()
    }
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
    load_all(path, env).map(|(auth, policy, _)| (auth, policy))
}

/// Loads the settings file at `path` for a Kafka-protocol node: its SASL
/// users and the policy; passwords are read with `env`.
///
/// # Errors
///
/// As [`load`]; also a user without exactly one of `password_env` and
/// `password_file`, an empty password, or a name given twice.
pub fn load_kafka(
    path: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(Vec<KafkaUser>, Policy), KeyError> {
    load_all(path, env).map(|(_, policy, users)| (users, policy))
}

fn load_all(
    path: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(Authenticator, Policy, Vec<KafkaUser>), KeyError> {
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
    let mut users: Vec<KafkaUser> = Vec::with_capacity(file.kafka_users.len());
    for u in file.kafka_users {
        let password = match (&u.password_env, &u.password_file) {
            (Some(var), None) => env(var).ok_or_else(|| {
                KeyError::new(format!(
                    "Kafka user {:?}: the environment variable {var} is not set",
                    u.name
                ))
            })?,
            (None, Some(f)) => String::from_utf8(read(f)?)
                .map_err(|_| KeyError::new(format!("{f} is not UTF-8")))?,
            _ => {
                return Err(KeyError::new(format!(
                    "Kafka user {:?} needs exactly one of password_env and password_file",
                    u.name
                )));
            }
        };
        let password = password.trim().to_owned();
        if u.name.is_empty() || password.is_empty() {
            return Err(KeyError::new(format!(
                "Kafka user {:?}: the name and the password must not be empty",
                u.name
            )));
        }
        if users.iter().any(|known| known.name == u.name) {
            return Err(KeyError::new(format!(
                "Kafka user {:?} is given twice",
                u.name
            )));
        }
        users.push(KafkaUser {
            name: u.name,
            password,
            roles: u.roles,
        });
    }
    Ok((auth, file.policy, users))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("kappa-auth-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("security.json");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn kafka_users_take_their_passwords_from_the_environment_or_a_file() {
        let path = write(
            "users",
            r#"{"kafka_users": [
                {"name": "n", "password_env": "N_PASSWORD", "roles": ["notifier"]},
                {"name": "v", "password_file": "v.secret"}
            ], "policy": {"rules": []}}"#,
        );
        std::fs::write(path.with_file_name("v.secret"), "s3cret\n").unwrap();
        let env = |k: &str| (k == "N_PASSWORD").then(|| "p4ss".to_string());
        let (users, _) = load_kafka(&path, env).unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(
            (users[0].name.as_str(), users[0].password.as_str()),
            ("n", "p4ss")
        );
        assert_eq!(users[0].roles, ["notifier"]);
        assert_eq!(users[1].password, "s3cret", "trimmed as secrets files are");
        assert!(
            !format!("{users:?}").contains("p4ss"),
            "passwords stay out of logs"
        );
        assert!(
            load_kafka(&path, |_| None).is_err(),
            "a missing variable is refused"
        );
        // The gateway's loader reads the same file.
        assert!(load(&path, env).is_ok());
    }

    #[test]
    fn a_kafka_user_given_twice_or_without_a_password_is_refused() {
        for (name, users) in [
            (
                "twice",
                r#"[{"name": "n", "password_env": "P"}, {"name": "n", "password_env": "P"}]"#,
            ),
            ("none", r#"[{"name": "n"}]"#),
            (
                "both",
                r#"[{"name": "n", "password_env": "P", "password_file": "f"}]"#,
            ),
        ] {
            let path = write(
                name,
                &format!(r#"{{"kafka_users": {users}, "policy": {{"rules": []}}}}"#),
            );
            let refused = load_kafka(&path, |_| Some("p".into()));
            assert!(refused.is_err(), "{name}");
        }
    }
}
