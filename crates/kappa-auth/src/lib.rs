//! Who may do what in a Kappa service. [`Authenticator`] says who a bearer
//! token belongs to (a JWT or a static API key); [`Policy`] says what that
//! principal may do. Pure functions over their inputs, no I/O: the gateway
//! calls them for every request, and the fuzz targets in `fuzz/` call them
//! with arbitrary input.

mod policy;
mod token;

pub use policy::{Access, Policy, Rule, decode_segment};
pub use token::{ApiKey, AuthError, Authenticator, JwtKey, KeyError, Principal};

/// The JWT library, re-exported for its `Algorithm` and for tests that make tokens.
pub use jsonwebtoken;
