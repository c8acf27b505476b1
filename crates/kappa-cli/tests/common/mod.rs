//! What the binary's suites share: the seeded generator the crash tests
//! draw kill moments from, and reading what a command printed.

#![allow(dead_code)]

/// What a command printed, once it succeeded; what it complained of if not.
pub fn stdout_of_success(out: std::process::Output) -> Vec<u8> {
    let complaint = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{complaint}");
    out.stdout
}

/// xorshift64: small, seeded, reproducible.
pub struct Rng(pub u64);

impl Rng {
    /// Seeded from `KAPPA_CRASH_SEED`, else from the clock; prints the seed
    /// so a failing run can be replayed.
    pub fn from_env(what: &str) -> Self {
        let seed: u64 = std::env::var("KAPPA_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| kappa_log::now_ms() as u64 | 1);
        eprintln!("{what} seed: {seed} (replay with KAPPA_CRASH_SEED={seed})");
        Self(seed)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
