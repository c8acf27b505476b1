//! Card spending limits: the article's banking example as a Kappa service.
//!
//! A customer sets a spending limit on a card; each authorization is decided
//! against the card's spending — settled transactions over the limit's
//! period and approved, unsettled authorizations of the last 7 days — and a
//! notification event goes out when spending reaches 80% and 100% of the
//! limit. Commands come through the gateway (`POST /commands`, key = card);
//! one topology decides them; the card views answer `GET /cards/...`.
//! The shell (`shell`) notifies a webhook of thresholds and keeps tables in
//! PostgreSQL and a full-text index of authorizations; its parts also run
//! as services of their own on the shared log (`services`).

pub mod model;
pub mod processor;
pub mod service;
pub mod services;
pub mod shell;
pub mod traffic;
