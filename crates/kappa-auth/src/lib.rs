//! Who may do what in a Kappa service. [`Authenticator`] says who a bearer
//! token belongs to (a JWT or a static API key); [`Policy`] says what that
//! principal may do. Both are pure functions over their inputs: the gateway
//! calls them for every request. [`config::load`] reads a deployment's
//! settings file.

pub mod config;
mod policy;
mod token;

pub use policy::{Access, Policy, Rule, TopicOperation, TopicRights, decode_segment};
pub use token::{ApiKey, AuthError, Authenticator, JwtKey, KeyError, Principal};

/// The JWT library, re-exported for its `Algorithm` and for tests that make tokens.
pub use jsonwebtoken;
