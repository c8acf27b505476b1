//! The problem types a Kappa service answers with: stable names a client
//! can act on (retry later, fix the input, ask for rights) beyond the HTTP
//! status, each served as a page of its own at `/problems/{name}`.

/// One kind of problem: its name (the last segment of its URI), title,
/// usual HTTP status and what a client should do about it.
///
/// ```
/// use kappa_service::problem_type::{ProblemType, DISK_FULL};
/// assert_eq!(DISK_FULL.uri(), "/problems/disk-full");
/// assert_eq!(ProblemType::named("disk-full"), Some(&DISK_FULL));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProblemType {
    /// The name, kebab-case; the type URI is `/problems/{name}`.
    pub name: &'static str,
    /// The problem's title (the same for every occurrence).
    pub title: &'static str,
    /// The HTTP status it is answered with.
    pub status: u16,
    /// What it means and what a client should do.
    pub description: &'static str,
}

impl ProblemType {
    /// The type URI, relative to the service (`/problems/{name}`), which
    /// the service serves.
    pub fn uri(&self) -> String {
        format!("{PREFIX}{}", self.name)
    }

    /// The type of this name.
    pub fn named(name: &str) -> Option<&'static ProblemType> {
        ALL.iter().find(|t| t.name == name)
    }
}

/// Where the types are served.
pub const PREFIX: &str = "/problems/";

/// A command breaks its action's rules.
pub const INVALID_COMMAND: ProblemType = ProblemType {
    name: "invalid-command",
    title: "The command breaks its action's rules",
    status: 422,
    description: "The action is unknown, or the key or the data break its rules. `violations` lists each rule broken with the JSON pointer of what broke it. Nothing was written; fix the command before sending it again.",
};

/// An idempotency key was used for a different command.
pub const IDEMPOTENCY_KEY_REUSED: ProblemType = ProblemType {
    name: "idempotency-key-reused",
    title: "The idempotency key was used for another command",
    status: 422,
    description: "A command with this idempotency key was already written, with a different action, key, data or sender (`id` names it). Nothing was written; use a new key for a new command.",
};

/// The first request with an idempotency key is still being handled.
pub const IDEMPOTENCY_KEY_IN_FLIGHT: ProblemType = ProblemType {
    name: "idempotency-key-in-flight",
    title: "A request with this idempotency key is still being handled",
    status: 409,
    description: "Another request with the same idempotency key has not finished. Retry after `Retry-After`: the retry gets the first request's answer.",
};

/// The disk is short of space: writes are refused until it is freed.
pub const DISK_FULL: ProblemType = ProblemType {
    name: "disk-full",
    title: "The log's disk is short of space",
    status: 507,
    description: "The log's disk is below its free-space floor, so the service takes no new writes; reads go on. Nothing was written. Retry after `Retry-After`: writes are taken again by themselves once space is freed.",
};

/// The log cannot take the write now.
pub const LOG_UNAVAILABLE: ProblemType = ProblemType {
    name: "log-unavailable",
    title: "The log cannot take writes now",
    status: 503,
    description: "Writing the command failed; it is not in the log. Retry after `Retry-After`; if `/health` answers 503 the service needs a restart.",
};

/// No outcome came within the wait.
pub const OUTCOME_TIMEOUT: ProblemType = ProblemType {
    name: "outcome-timeout",
    title: "No outcome within the wait",
    status: 504,
    description: "The command is in the log (`location`, `position`) but no outcome event came within the wait. Do not send it again: poll `location`, or send it with its idempotency key.",
};

/// The credentials are missing or not valid.
pub const UNAUTHENTICATED: ProblemType = ProblemType {
    name: "unauthenticated",
    title: "Credentials are missing or not valid",
    status: 401,
    description: "The request has no credentials, or they are malformed, expired, revoked or not trusted (`reason` says which). Send a valid bearer token or API key.",
};

/// The policy does not allow this principal to do this.
pub const FORBIDDEN: ProblemType = ProblemType {
    name: "forbidden",
    title: "The policy does not allow this",
    status: 403,
    description: "The credentials are valid, but the service's policy does not allow this principal this action, entity, view, stream or route. Nothing was written.",
};

/// The principal is over its request budget.
pub const RATE_LIMITED: ProblemType = ProblemType {
    name: "rate-limited",
    title: "Too many requests from this principal",
    status: 429,
    description: "The principal sent more requests than its budget allows. Retry after `Retry-After`.",
};

/// The service has not caught up with its log yet.
pub const NOT_READY: ProblemType = ProblemType {
    name: "not-ready",
    title: "The service is still catching up with its log",
    status: 503,
    description: "The service is restoring its index or views from the log, or the index is far behind it. Retry after `Retry-After`; `/ready` answers 200 once it has caught up.",
};

/// A read's `min_position` was not reached within the wait.
pub const POSITION_NOT_REACHED: ProblemType = ProblemType {
    name: "position-not-reached",
    title: "The view has not reached the position yet",
    status: 503,
    description: "The records named in `min_position` are written but the view had not processed them within `wait_ms`. Retry after `Retry-After`, or wait longer.",
};

/// A position or cursor names a record nobody wrote.
pub const POSITION_NOT_WRITTEN: ProblemType = ProblemType {
    name: "position-not-written",
    title: "No record was written at that position",
    status: 404,
    description: "A `min_position` or a live stream's cursor is past the end of its partition, so this service gave no such position; waiting would not help.",
};

/// Too many live streams are open.
pub const TOO_MANY_STREAMS: ProblemType = ProblemType {
    name: "too-many-streams",
    title: "Too many live streams are open",
    status: 503,
    description: "The service has as many live streams open as it allows. Retry after `Retry-After`, or close streams no longer read.",
};

/// Every type, as `/problems` lists them.
pub const ALL: [ProblemType; 13] = [
    INVALID_COMMAND,
    IDEMPOTENCY_KEY_REUSED,
    IDEMPOTENCY_KEY_IN_FLIGHT,
    DISK_FULL,
    LOG_UNAVAILABLE,
    OUTCOME_TIMEOUT,
    UNAUTHENTICATED,
    FORBIDDEN,
    RATE_LIMITED,
    NOT_READY,
    POSITION_NOT_REACHED,
    POSITION_NOT_WRITTEN,
    TOO_MANY_STREAMS,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_kebab_case_and_statuses_are_errors() {
        let mut names: Vec<&str> = ALL.iter().map(|t| t.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "a name is used twice");
        for t in ALL {
            assert!(
                crate::is_action_name(t.name),
                "{} is not kebab-case",
                t.name
            );
            assert!((400..600).contains(&t.status), "{}", t.name);
            assert!(http::StatusCode::from_u16(t.status).is_ok(), "{}", t.name);
        }
    }

    #[test]
    fn the_docs_list_every_type() {
        let docs = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/gateway.md"),
        )
        .unwrap();
        for t in ALL {
            assert!(
                docs.contains(&format!("| `{}` | {} | {} |", t.uri(), t.status, t.title)),
                "docs/gateway.md's table of problem types misses or misstates {}",
                t.name
            );
        }
    }
}
