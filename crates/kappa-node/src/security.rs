//! Who a Kafka client is, and what it may do: TLS, SASL (PLAIN,
//! SCRAM-SHA-256, SCRAM-SHA-512) and the policy of the service's security
//! settings.
//!
//! Passwords are turned into SCRAM credentials (RFC 5802: salt, 4096
//! PBKDF2 iterations, stored key, server key) once, when the node starts;
//! a SCRAM exchange never sees a password, and PLAIN compares in constant
//! time. An unknown user gets a made-up salt and keys, so the exchange
//! does not say which names exist (and costs no key derivation).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use kappa_auth::config::KafkaUser;
use kappa_auth::{Access, Policy, Principal};
use ring::rand::SecureRandom as _;
use ring::{digest, hmac, pbkdf2};

/// SCRAM iterations for credentials made here (Kafka's default).
const SCRAM_ITERATIONS: u32 = 4096;

/// What a node asks of its clients: every client authenticates with SASL
/// as one of the users (none configured: nobody gets in), and may do what
/// the policy allows its principal. Without it every client may do
/// everything, which the node allows on loopback addresses only.
#[derive(Clone)]
pub struct NodeSecurity {
    /// TLS for every connection, when set.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    users: HashMap<String, User>,
    policy: Policy,
}

impl std::fmt::Debug for NodeSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeSecurity")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct User {
    password: String,
    roles: Vec<String>,
    sha256: Credentials,
    sha512: Credentials,
}

/// One user's SCRAM credentials for one hash.
#[derive(Clone)]
pub(crate) struct Credentials {
    salt: Vec<u8>,
    iterations: u32,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

/// The SASL mechanisms served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl Mechanism {
    pub(crate) const ALL: [Self; 3] = [Self::Plain, Self::ScramSha256, Self::ScramSha512];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    pub(crate) fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    fn hash(
        self,
    ) -> (
        pbkdf2::Algorithm,
        hmac::Algorithm,
        &'static digest::Algorithm,
    ) {
        match self {
            Self::ScramSha512 => (
                pbkdf2::PBKDF2_HMAC_SHA512,
                hmac::HMAC_SHA512,
                &digest::SHA512,
            ),
            Self::Plain | Self::ScramSha256 => (
                pbkdf2::PBKDF2_HMAC_SHA256,
                hmac::HMAC_SHA256,
                &digest::SHA256,
            ),
        }
    }
}

fn random(bytes: usize) -> Vec<u8> {
    let mut out = vec![0u8; bytes];
    // The system's generator failing leaves zeros; a salt or nonce of
    // zeros weakens nothing the password does not already decide, and a
    // node that cannot read /dev/urandom has worse problems to report.
    if ring::rand::SystemRandom::new().fill(&mut out).is_err() {
        tracing::error!("the system's random generator failed");
    }
    out
}

fn credentials(mechanism: Mechanism, password: &[u8], salt: Vec<u8>) -> Credentials {
    let (kdf, mac, hash) = mechanism.hash();
    let mut salted = vec![0u8; hash.output_len()];
    let iterations = NonZeroU32::new(SCRAM_ITERATIONS).unwrap_or(NonZeroU32::MIN);
    pbkdf2::derive(kdf, iterations, &salt, password, &mut salted);
    let key = hmac::Key::new(mac, &salted);
    let client_key = hmac::sign(&key, b"Client Key");
    Credentials {
        salt,
        iterations: SCRAM_ITERATIONS,
        stored_key: digest::digest(hash, client_key.as_ref()).as_ref().to_vec(),
        server_key: hmac::sign(&key, b"Server Key").as_ref().to_vec(),
    }
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl NodeSecurity {
    /// Security from the service's settings: SASL users (see
    /// `kappa_auth::config::load_kafka`), their policy, and TLS if given
    /// (the HTTP side's certificate may be shared: its ALPN offer is
    /// dropped here, as Kafka clients ask for none).
    pub fn new(
        users: Vec<KafkaUser>,
        policy: Policy,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Self {
        let tls = tls.map(|config| {
            let mut kafka = (*config).clone();
            kafka.alpn_protocols.clear();
            Arc::new(kafka)
        });
        let users = users
            .into_iter()
            .map(|u| {
                let user = User {
                    sha256: credentials(Mechanism::ScramSha256, u.password.as_bytes(), random(24)),
                    sha512: credentials(Mechanism::ScramSha512, u.password.as_bytes(), random(24)),
                    password: u.password,
                    roles: u.roles,
                };
                (u.name, user)
            })
            .collect();
        Self { tls, users, policy }
    }

    /// How many SASL users may authenticate.
    pub fn users(&self) -> usize {
        self.users.len()
    }

    pub(crate) fn allows(&self, principal: Option<&Principal>, access: &Access<'_>) -> bool {
        principal.is_some_and(|p| self.policy.allows(p, access))
    }

    fn principal(&self, name: &str) -> Option<Principal> {
        let user = self.users.get(name)?;
        let roles: Vec<&str> = user.roles.iter().map(String::as_str).collect();
        let mut p = Principal::new(name, &roles);
        p.scheme = "sasl";
        Some(p)
    }
}

/// Why an authentication failed; its text goes to the client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refused(pub String);

/// One connection's SASL exchange.
pub(crate) enum Exchange {
    /// The mechanism chosen by SaslHandshake; nothing received yet.
    Started(Mechanism),
    /// SCRAM: the server-first message was sent.
    ScramChallenged {
        mechanism: Mechanism,
        user: String,
        credentials: Credentials,
        /// Client-first-message-bare, server-first-message.
        first: String,
        server_first: String,
        nonce: String,
        gs2_header: String,
    },
}

/// What one SaslAuthenticate step answered.
pub(crate) enum Step {
    /// Send these bytes and wait for the next step.
    Continue(Vec<u8>, Exchange),
    /// Authenticated as this principal; send these bytes (may be empty).
    Done(Vec<u8>, Principal),
}

impl Exchange {
    /// Takes the client's next SASL message.
    pub(crate) fn step(self, security: &NodeSecurity, message: &[u8]) -> Result<Step, Refused> {
        let failed = || Refused("Authentication failed: invalid credentials".into());
        match self {
            Self::Started(Mechanism::Plain) => {
                let text = std::str::from_utf8(message).map_err(|_| failed())?;
                let mut parts = text.split('\0');
                let (Some(authzid), Some(user), Some(password), None) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Err(Refused(
                        "PLAIN: expected authzid NUL user NUL password".into(),
                    ));
                };
                if !authzid.is_empty() && authzid != user {
                    return Err(Refused(
                        "PLAIN: acting as another user is not supported".into(),
                    ));
                }
                let known = security.users.get(user);
                // The comparison runs against something either way.
                let expected = known.map_or("\u{0}unknown", |u| u.password.as_str());
                if !same(expected.as_bytes(), password.as_bytes()) || known.is_none() {
                    return Err(failed());
                }
                let principal = security.principal(user).ok_or_else(failed)?;
                Ok(Step::Done(Vec::new(), principal))
            }
            Self::Started(mechanism) => {
                let text = std::str::from_utf8(message).map_err(|_| failed())?;
                let (gs2_header, first) = split_gs2(text)?;
                let mut user = None;
                let mut client_nonce = None;
                for attr in first.split(',') {
                    if let Some(v) = attr.strip_prefix("n=") {
                        user = Some(v.replace("=2C", ",").replace("=3D", "="));
                    } else if let Some(v) = attr.strip_prefix("r=") {
                        client_nonce = Some(v.to_string());
                    }
                }
                let (Some(user), Some(client_nonce)) = (user, client_nonce) else {
                    return Err(Refused("SCRAM: the first message needs n= and r=".into()));
                };
                let credentials = match security.users.get(&user) {
                    Some(u) if mechanism == Mechanism::ScramSha512 => u.sha512.clone(),
                    Some(u) => u.sha256.clone(),
                    // Random keys no proof matches: the stranger is answered
                    // like a user, without a PBKDF2 run per attempt.
                    None => {
                        let len = mechanism.hash().2.output_len();
                        Credentials {
                            salt: random(24),
                            iterations: SCRAM_ITERATIONS,
                            stored_key: random(len),
                            server_key: random(len),
                        }
                    }
                };
                let nonce = format!("{client_nonce}{}", BASE64.encode(random(18)));
                let server_first = format!(
                    "r={nonce},s={},i={}",
                    BASE64.encode(&credentials.salt),
                    credentials.iterations
                );
                Ok(Step::Continue(
                    server_first.clone().into_bytes(),
                    Self::ScramChallenged {
                        mechanism,
                        user,
                        credentials,
                        first: first.to_string(),
                        server_first,
                        nonce,
                        gs2_header: gs2_header.to_string(),
                    },
                ))
            }
            Self::ScramChallenged {
                mechanism,
                user,
                credentials,
                first,
                server_first,
                nonce,
                gs2_header,
            } => {
                let text = std::str::from_utf8(message).map_err(|_| failed())?;
                let (without_proof, proof) = text
                    .rsplit_once(",p=")
                    .ok_or_else(|| Refused("SCRAM: the final message has no proof".into()))?;
                let mut channel = None;
                let mut final_nonce = None;
                for attr in without_proof.split(',') {
                    if let Some(v) = attr.strip_prefix("c=") {
                        channel = Some(v);
                    } else if let Some(v) = attr.strip_prefix("r=") {
                        final_nonce = Some(v);
                    }
                }
                if channel != Some(BASE64.encode(gs2_header.as_bytes()).as_str()) {
                    return Err(Refused("SCRAM: channel binding does not match".into()));
                }
                if final_nonce != Some(nonce.as_str()) {
                    return Err(Refused("SCRAM: the nonce does not match".into()));
                }
                let proof = BASE64.decode(proof).map_err(|_| failed())?;
                let (_, mac, hash) = mechanism.hash();
                let auth_message = format!("{first},{server_first},{without_proof}");
                let signature = hmac::sign(
                    &hmac::Key::new(mac, &credentials.stored_key),
                    auth_message.as_bytes(),
                );
                if proof.len() != signature.as_ref().len() {
                    return Err(failed());
                }
                let client_key: Vec<u8> = proof
                    .iter()
                    .zip(signature.as_ref())
                    .map(|(a, b)| a ^ b)
                    .collect();
                let stored = digest::digest(hash, &client_key);
                if !same(stored.as_ref(), &credentials.stored_key) {
                    return Err(failed());
                }
                let principal = security.principal(&user).ok_or_else(failed)?;
                let server_signature = hmac::sign(
                    &hmac::Key::new(mac, &credentials.server_key),
                    auth_message.as_bytes(),
                );
                let server_final = format!("v={}", BASE64.encode(server_signature.as_ref()));
                Ok(Step::Done(server_final.into_bytes(), principal))
            }
        }
    }
}

/// Splits SCRAM's client-first message into its GS2 header (`n,,`) and
/// the bare message; channel binding (`p=`) is refused.
fn split_gs2(text: &str) -> Result<(&str, &str), Refused> {
    let mut comma = text.match_indices(',').map(|(i, _)| i);
    let (Some(_), Some(second)) = (comma.next(), comma.next()) else {
        return Err(Refused("SCRAM: the first message has no GS2 header".into()));
    };
    let (header, bare) = text.split_at(second + 1);
    match header.as_bytes().first() {
        Some(b'n' | b'y') => Ok((header, bare)),
        _ => Err(Refused("SCRAM: channel binding is not supported".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn security() -> NodeSecurity {
        let users = vec![KafkaUser {
            name: "user".into(),
            password: "pencil".into(),
            roles: vec!["r".into()],
        }];
        NodeSecurity::new(users, Policy::default(), None)
    }

    /// A SCRAM client per RFC 5802, to drive the server's side.
    fn scram(
        security: &NodeSecurity,
        mechanism: Mechanism,
        user: &str,
        password: &str,
    ) -> Result<Principal, Refused> {
        let first = format!("n={user},r=fyko+d2lbbFgONRv9qkxdawL");
        let Step::Continue(challenge, exchange) =
            Exchange::Started(mechanism).step(security, format!("n,,{first}").as_bytes())?
        else {
            panic!("SCRAM continues after the first message");
        };
        let challenge = String::from_utf8(challenge).unwrap();
        let mut nonce = "";
        let mut salt = Vec::new();
        let mut iterations = 0;
        for attr in challenge.split(',') {
            match attr.split_at(2) {
                ("r=", v) => nonce = v,
                ("s=", v) => salt = BASE64.decode(v).unwrap(),
                ("i=", v) => iterations = v.parse().unwrap(),
                _ => {}
            }
        }
        assert!(
            nonce.starts_with("fyko+d2lbbFgONRv9qkxdawL"),
            "the server extends the client's nonce"
        );
        assert_eq!(iterations, SCRAM_ITERATIONS);
        let c = credentials(mechanism, password.as_bytes(), salt.clone());
        let (kdf, mac, _) = mechanism.hash();
        let mut salted = vec![0u8; c.stored_key.len()];
        pbkdf2::derive(
            kdf,
            NonZeroU32::new(iterations).unwrap(),
            &salt,
            password.as_bytes(),
            &mut salted,
        );
        let client_key = hmac::sign(&hmac::Key::new(mac, &salted), b"Client Key");
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{first},{challenge},{without_proof}");
        let signature = hmac::sign(&hmac::Key::new(mac, &c.stored_key), auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(signature.as_ref())
            .map(|(a, b)| a ^ b)
            .collect();
        let last = format!("{without_proof},p={}", BASE64.encode(proof));
        match exchange.step(security, last.as_bytes())? {
            Step::Done(server_final, principal) => {
                let expected =
                    hmac::sign(&hmac::Key::new(mac, &c.server_key), auth_message.as_bytes());
                assert_eq!(
                    String::from_utf8(server_final).unwrap(),
                    format!("v={}", BASE64.encode(expected.as_ref()))
                );
                Ok(principal)
            }
            Step::Continue(..) => panic!("SCRAM ends after the final message"),
        }
    }

    #[test]
    fn scram_accepts_the_password_and_refuses_others_and_strangers() {
        let s = security();
        for m in [Mechanism::ScramSha256, Mechanism::ScramSha512] {
            let p = scram(&s, m, "user", "pencil").unwrap();
            assert_eq!(
                (p.subject.as_str(), p.roles.as_slice()),
                ("user", &["r".to_string()][..])
            );
            assert!(scram(&s, m, "user", "pen").is_err(), "{m:?} wrong password");
            assert!(
                scram(&s, m, "nobody", "pencil").is_err(),
                "{m:?} unknown user"
            );
        }
    }

    #[test]
    fn plain_accepts_the_password_only() {
        let s = security();
        let plain = |msg: &[u8]| Exchange::Started(Mechanism::Plain).step(&s, msg);
        assert!(matches!(plain(b"\0user\0pencil"), Ok(Step::Done(_, p)) if p.subject == "user"));
        assert!(matches!(plain(b"user\0user\0pencil"), Ok(Step::Done(..))));
        assert!(plain(b"\0user\0pencil2").is_err());
        assert!(plain(b"\0nobody\0pencil").is_err());
        assert!(
            plain(b"other\0user\0pencil").is_err(),
            "no acting as another"
        );
        assert!(plain(b"\0user").is_err());
        assert!(plain(&[0xff, 0, 0]).is_err());
    }

    #[test]
    fn scram_refuses_channel_binding_and_a_changed_nonce() {
        let s = security();
        assert!(
            Exchange::Started(Mechanism::ScramSha256)
                .step(&s, b"p=tls-unique,,n=user,r=x")
                .is_err()
        );
        assert!(
            Exchange::Started(Mechanism::ScramSha256)
                .step(&s, b"n=user,r=x")
                .is_err()
        );
        let Ok(Step::Continue(_, exchange)) =
            Exchange::Started(Mechanism::ScramSha256).step(&s, b"n,,n=user,r=abc")
        else {
            panic!("a first message is answered");
        };
        assert!(exchange.step(&s, b"c=biws,r=abcOTHER,p=AAAA").is_err());
    }
}
