//! `card-limits`: serve the service.

fn main() {}
