//! Who is asking: a bearer token is a JWT (HS256/384/512 with a shared
//! secret; RS*, PS*, ES256/384 with public keys from PEM or a JWKS
//! document) or a static API key (`kk_<id>.<secret>`, stored only as its
//! SHA-256).
//!
//! ```
//! use kappa_auth::{ApiKey, Authenticator, JwtKey};
//! use kappa_auth::jsonwebtoken::Algorithm;
//! let auth = Authenticator::new()
//!     .jwt_key(JwtKey::hmac(Algorithm::HS256, b"a shared secret of 32 bytes or more!")?)
//!     .audience("card-limits")
//!     .api_key(ApiKey::from_secret("ops", "kk_ops.s3cret-s3cret", "ops-robot", &["operator"]));
//! let who = auth.authenticate(Some("Bearer kk_ops.s3cret-s3cret"))?;
//! assert_eq!(who.subject, "ops-robot");
//! assert!(auth.authenticate(None).is_err());
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The authenticated caller.
#[derive(Clone, Debug, PartialEq)]
pub struct Principal {
    /// Who: a JWT's `sub`, or the subject an API key was issued to.
    pub subject: String,
    /// Roles: a JWT's `roles` claim (strings), or the API key's.
    pub roles: Vec<String>,
    /// Every claim of a JWT (empty for API keys).
    pub claims: Map<String, Value>,
    /// `jwt`, `api-key`, or `sasl` (a Kafka client of a Kappa node).
    pub scheme: &'static str,
}

/// Why a request was not authenticated (every one is a 401).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("an Authorization: Bearer token is required")]
    Missing,
    /// The header is not `Bearer <token>`, or the token is not a JWT or API key.
    #[error("malformed credentials: {0}")]
    Malformed(String),
    /// The JWT's `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// The JWT's `nbf` is still to come.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// No configured key verifies the signature.
    #[error("the token's signature does not verify")]
    BadSignature,
    /// The JWT is for another audience.
    #[error("the token is for another audience")]
    WrongAudience,
    /// The JWT comes from another issuer.
    #[error("the token comes from another issuer")]
    WrongIssuer,
    /// No key for the token's algorithm (or `kid`), or an unknown API key.
    #[error("no key accepts this token")]
    UnknownKey,
    /// The API key was revoked.
    #[error("the API key was revoked")]
    Revoked,
}

impl Principal {
    /// A principal with no claims (an API key's, or one made in a test).
    pub fn new(subject: &str, roles: &[&str]) -> Self {
        Self {
            subject: subject.to_owned(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            claims: Map::new(),
            scheme: "api-key",
        }
    }

    /// The same principal with one more claim.
    pub fn with_claim(mut self, name: &str, value: Value) -> Self {
        self.claims.insert(name.to_owned(), value);
        self
    }
}

impl AuthError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed(_) => "malformed",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not-yet-valid",
            AuthError::BadSignature => "bad-signature",
            AuthError::WrongAudience => "wrong-audience",
            AuthError::WrongIssuer => "wrong-issuer",
            AuthError::UnknownKey => "unknown-key",
            AuthError::Revoked => "revoked",
        }
    }
}

/// A key that verifies JWTs.
#[derive(Clone)]
pub struct JwtKey {
    /// Matches the token header's `kid`, when both have one.
    pub kid: Option<String>,
    /// The one algorithm this key accepts (no algorithm confusion).
    pub algorithm: Algorithm,
    key: DecodingKey,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Why a key (or the settings holding it) could not be configured.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

impl KeyError {
    pub(crate) fn new(message: String) -> Self {
        Self(message)
    }
}

impl JwtKey {
    /// A shared secret for HS256, HS384 or HS512 (at least 32 bytes).
    ///
    /// # Errors
    ///
    /// Another algorithm, or a short secret.
    pub fn hmac(algorithm: Algorithm, secret: &[u8]) -> Result<Self, KeyError> {
        if !matches!(
            algorithm,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(KeyError(format!("{algorithm:?} is not an HMAC algorithm")));
        }
        if secret.len() < 32 {
            return Err(KeyError(
                "an HMAC secret must be at least 32 bytes".to_owned(),
            ));
        }
        Ok(Self {
            kid: None,
            algorithm,
            key: DecodingKey::from_secret(secret),
        })
    }

    /// A public key in PEM for RS*/PS* (RSA) or ES256/ES384 (EC).
    ///
    /// # Errors
    ///
    /// The PEM does not hold a key of the algorithm's kind.
    pub fn public_pem(algorithm: Algorithm, pem: &[u8]) -> Result<Self, KeyError> {
        use Algorithm::*;
        let key = match algorithm {
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => DecodingKey::from_rsa_pem(pem),
            ES256 | ES384 => DecodingKey::from_ec_pem(pem),
            other => {
                return Err(KeyError(format!(
                    "{other:?} does not use a public key in PEM"
                )));
            }
        }
        .map_err(|e| KeyError(format!("reading the {algorithm:?} key: {e}")))?;
        Ok(Self {
            kid: None,
            algorithm,
            key,
        })
    }

    /// Every key of a JWKS document (`{"keys": [...]}`) that names its
    /// algorithm (`alg`).
    ///
    /// # Errors
    ///
    /// Not a JWKS document, a key that cannot be used, or no usable key.
    pub fn from_jwks(json: &str) -> Result<Vec<Self>, KeyError> {
        let set: JwkSet = serde_json::from_str(json)
            .map_err(|e| KeyError(format!("not a JWKS document: {e}")))?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            let Some(alg) = jwk.common.key_algorithm else {
                continue;
            };
            let algorithm: Algorithm = alg
                .to_string()
                .parse()
                .map_err(|e| KeyError(format!("key algorithm {alg}: {e}")))?;
            let key = DecodingKey::from_jwk(jwk)
                .map_err(|e| KeyError(format!("key {:?}: {e}", jwk.common.key_id)))?;
            keys.push(Self {
                kid: jwk.common.key_id.clone(),
                algorithm,
                key,
            });
        }
        if keys.is_empty() {
            return Err(KeyError(
                "the JWKS document has no key with an algorithm".to_owned(),
            ));
        }
        Ok(keys)
    }

    /// The same key, matched to tokens by `kid`.
    pub fn with_kid(mut self, kid: &str) -> Self {
        self.kid = Some(kid.to_owned());
        self
    }
}

/// A static API key: only its SHA-256 is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    /// The id in the key (`kk_<id>.<secret>`).
    pub id: String,
    /// SHA-256 of the whole key.
    pub sha256: [u8; 32],
    /// Who it was issued to.
    pub subject: String,
    /// Its roles.
    pub roles: Vec<String>,
    /// A revoked key is refused (kept so the refusal says why).
    pub revoked: bool,
}

impl ApiKey {
    /// The SHA-256 of a key, as stored in configuration (hex).
    pub fn hash(key: &str) -> String {
        Sha256::digest(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// A key from its full text (hashed at once; the text is not kept).
    pub fn from_secret(id: &str, key: &str, subject: &str, roles: &[&str]) -> Self {
        Self {
            id: id.to_owned(),
            sha256: Sha256::digest(key.as_bytes()).into(),
            subject: subject.to_owned(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            revoked: false,
        }
    }

    /// A key from its stored hash (64 hex digits).
    ///
    /// # Errors
    ///
    /// The hash is not 64 hex digits.
    pub fn from_hash(
        id: &str,
        sha256_hex: &str,
        subject: &str,
        roles: &[&str],
    ) -> Result<Self, KeyError> {
        let bad = || KeyError(format!("API key {id:?}: the hash must be 64 hex digits"));
        if sha256_hex.len() != 64 {
            return Err(bad());
        }
        let mut sha256 = [0u8; 32];
        for (i, byte) in sha256.iter_mut().enumerate() {
            *byte = u8::from_str_radix(sha256_hex.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
                .map_err(|_| bad())?;
        }
        Ok(Self {
            id: id.to_owned(),
            sha256,
            subject: subject.to_owned(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            revoked: false,
        })
    }

    /// The same key, revoked.
    pub fn revoked(mut self) -> Self {
        self.revoked = true;
        self
    }
}

/// Checks bearer tokens against the configured keys.
#[derive(Clone, Debug, Default)]
pub struct Authenticator {
    jwt_keys: Vec<JwtKey>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    leeway_s: u64,
    api_keys: Vec<ApiKey>,
}

/// Longest token accepted, in bytes.
const TOKEN_BYTES_MAX: usize = 16 * 1024;

impl Authenticator {
    /// Accepts nothing until keys are added.
    pub fn new() -> Self {
        Self {
            leeway_s: 30,
            ..Self::default()
        }
    }

    /// Accepts JWTs this key verifies.
    pub fn jwt_key(mut self, key: JwtKey) -> Self {
        self.jwt_keys.push(key);
        self
    }

    /// Requires JWTs from this issuer (`iss`); several calls accept any of them.
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.issuers.push(issuer.to_owned());
        self
    }

    /// Requires JWTs for this audience (`aud`); several calls accept any of them.
    pub fn audience(mut self, audience: &str) -> Self {
        self.audiences.push(audience.to_owned());
        self
    }

    /// Clock skew allowed on `exp` and `nbf`, in seconds (default 30).
    pub fn leeway(mut self, seconds: u64) -> Self {
        self.leeway_s = seconds;
        self
    }

    /// Accepts this API key (or refuses it as revoked).
    pub fn api_key(mut self, key: ApiKey) -> Self {
        self.api_keys.push(key);
        self
    }

    /// Who the `Authorization` header's value says is asking.
    ///
    /// # Errors
    ///
    /// Why the credentials are refused.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        let header = authorization.ok_or(AuthError::Missing)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| AuthError::Malformed("expected `Bearer <token>`".to_owned()))?;
        if token.len() > TOKEN_BYTES_MAX {
            return Err(AuthError::Malformed("the token is too long".to_owned()));
        }
        match token.strip_prefix("kk_") {
            Some(rest) => self.api_key_principal(token, rest),
            None => self.jwt_principal(token),
        }
    }

    fn api_key_principal(&self, token: &str, rest: &str) -> Result<Principal, AuthError> {
        let (id, _) = rest
            .split_once('.')
            .ok_or_else(|| AuthError::Malformed("an API key is kk_<id>.<secret>".to_owned()))?;
        let key = self
            .api_keys
            .iter()
            .find(|k| k.id == id)
            .ok_or(AuthError::UnknownKey)?;
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Both sides are digests: comparing them reveals nothing about the secret.
        if presented != key.sha256 {
            return Err(AuthError::UnknownKey);
        }
        if key.revoked {
            return Err(AuthError::Revoked);
        }
        Ok(Principal {
            subject: key.subject.clone(),
            roles: key.roles.clone(),
            claims: Map::new(),
            scheme: "api-key",
        })
    }

    fn jwt_principal(&self, token: &str) -> Result<Principal, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Malformed(format!("not a JWT: {e}")))?;
        let candidates: Vec<&JwtKey> = self
            .jwt_keys
            .iter()
            .filter(|k| k.algorithm == header.alg)
            .filter(|k| match (&header.kid, &k.kid) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            })
            .collect();
        if candidates.is_empty() {
            return Err(AuthError::UnknownKey);
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway_s;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        if self.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.audiences);
        }
        if !self.issuers.is_empty() {
            validation.set_issuer(&self.issuers);
        }
        let mut last = AuthError::BadSignature;
        for key in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
                Ok(data) => return principal_of(data.claims),
                Err(e) => {
                    last = match e.kind() {
                        ErrorKind::InvalidSignature => AuthError::BadSignature,
                        ErrorKind::ExpiredSignature => return Err(AuthError::Expired),
                        ErrorKind::ImmatureSignature => return Err(AuthError::NotYetValid),
                        ErrorKind::InvalidAudience => return Err(AuthError::WrongAudience),
                        ErrorKind::InvalidIssuer => return Err(AuthError::WrongIssuer),
                        other => AuthError::Malformed(format!("{other:?}")),
                    }
                }
            }
        }
        Err(last)
    }
}

fn principal_of(claims: Map<String, Value>) -> Result<Principal, AuthError> {
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| AuthError::Malformed("the token has no subject (sub)".to_owned()))?
        .to_owned();
    let roles = claims
        .get("roles")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok(Principal {
        subject,
        roles,
        claims,
        scheme: "jwt",
    })
}
