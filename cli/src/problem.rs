//! Failed requests turned into messages that say what to do.
//!
//! The API answers errors as problem+json with a stable `code`; each code
//! gets a hint here, in one place, so every command words them alike.

use serde::Deserialize;
use std::fmt;

/// Why a request to the API did not give the answer asked for.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No HTTP answer at all (connection refused, reset, timed out).
    #[error("cannot reach the API at {base}: {cause}. Is it running? ADE_API_URL sets its address")]
    Unreachable {
        /// The API base URL.
        base: String,
        /// The innermost cause, for people.
        cause: String,
    },
    /// The API answered with a problem+json error.
    #[error("{0}")]
    Problem(Problem),
    /// Something answered, but not the way the API does.
    #[error("unexpected answer from {url}: HTTP {status}: {body}")]
    Unexpected {
        /// The request URL.
        url: String,
        /// Its status.
        status: u16,
        /// The start of its body.
        body: String,
    },
}

impl ApiError {
    /// The problem `code`, when the API sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Problem(p) => Some(&p.code),
            _ => None,
        }
    }

    /// True for outages worth retrying (no answer, 429, 502, 503, 504).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Problem(p) => matches!(p.status, 429 | 502..=504),
            Self::Unexpected { status, .. } => matches!(status, 502..=504),
        }
    }
}

/// One problem+json error, with what the caller needs to word a hint.
#[derive(Debug, Clone, Deserialize)]
pub struct Problem {
    /// HTTP status.
    pub status: u16,
    /// Stable code, e.g. `run_not_found`.
    pub code: String,
    /// The API's explanation.
    #[serde(default)]
    pub detail: String,
    /// Per-field errors of a 422.
    #[serde(default)]
    pub errors: Vec<FieldError>,
    /// `Retry-After`, in seconds.
    #[serde(skip)]
    pub retry_after_s: Option<u64>,
    /// Whether the request carried a key (changes the 401 hint).
    #[serde(skip)]
    pub key_sent: bool,
}

/// One invalid field of a 422.
#[derive(Debug, Clone, Deserialize)]
pub struct FieldError {
    /// JSON path or parameter name.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl Problem {
    /// What the user can do about it.
    pub fn hint(&self) -> String {
        let retry = self
            .retry_after_s
            .map_or("shortly".to_owned(), |s| format!("in {s} s"));
        match self.code.as_str() {
            "unauthorized" if self.key_sent => {
                "The key in ADE_API_KEY was refused (unknown or revoked): set ADE_API_KEY to a \
                 valid key (`ade-api keys create`)."
                    .into()
            }
            "unauthorized" => "The API needs a key: set ADE_API_KEY to a key made with \
                               `ade-api keys create --workspace <id>` (or `--admin`)."
                .into(),
            "admin_required" => "This needs an admin key: set ADE_API_KEY to a key made with \
                                 `ade-api keys create --admin`."
                .into(),
            "resource_not_found" | "method_not_allowed" => {
                "This API has no such route: is ADE_API_URL the ADE Runs API, and is it up to date?"
                    .into()
            }
            code if code.ends_with("_not_found") => {
                "Check the id (a workspace key sees only its own workspace).".into()
            }
            "environment_not_ready" => {
                "The last build of this configuration failed: see why with `ade builds get <id>`, \
                 or retry with --force-rebuild."
                    .into()
            }
            "idempotency_key_reused" => {
                "Use another --idempotency-key, or the options of the first request.".into()
            }
            "safe_mode_enabled" => "The API runs with ADE_SAFE_MODE=true: new runs are refused \
                                    until an operator turns it off."
                .into(),
            "run_queue_full" => format!("Too many runs are queued: retry {retry}."),
            "rate_limited" => format!("Too many requests with this key: retry {retry}."),
            "service_unavailable" => format!("The API cannot reach its database: retry {retry}."),
            "payload_too_large" => "Send less: the limits are in docs/api.md.".into(),
            "conflict" => "A concurrent request won: retry.".into(),
            "internal_error" => "The API failed unexpectedly; its log has the details.".into(),
            _ => String::new(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let detail = if self.detail.is_empty() {
            "the API refused the request"
        } else {
            self.detail.trim_end_matches('.')
        };
        write!(f, "{detail} ({} {})", self.status, self.code)?;
        for error in &self.errors {
            if !self.detail.contains(&error.message) {
                write!(f, "\n  {}: {}", error.field, error.message)?;
            }
        }
        match self.hint() {
            hint if hint.is_empty() => Ok(()),
            hint => write!(f, ". {hint}"),
        }
    }
}

/// The innermost cause of an error chain: the part a person can act on.
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(status: u16, code: &str, key_sent: bool) -> Problem {
        Problem {
            status,
            code: code.into(),
            detail: "the detail".into(),
            errors: vec![],
            retry_after_s: Some(5),
            key_sent,
        }
    }

    #[test]
    fn auth_errors_say_which_key_to_set() {
        assert!(
            problem(401, "unauthorized", false)
                .to_string()
                .contains("set ADE_API_KEY")
        );
        assert!(
            problem(401, "unauthorized", true)
                .to_string()
                .contains("was refused")
        );
        assert!(
            problem(403, "admin_required", true)
                .to_string()
                .contains("keys create --admin")
        );
    }

    #[test]
    fn messages_carry_detail_status_code_and_hint() {
        let text = problem(429, "run_queue_full", true).to_string();
        assert_eq!(
            text,
            "the detail (429 run_queue_full). Too many runs are queued: retry in 5 s."
        );
        let generic = problem(404, "resource_not_found", true).to_string();
        assert!(generic.contains("no such route"), "{generic}");
        let specific = problem(404, "run_not_found", true).to_string();
        assert!(specific.contains("Check the id"), "{specific}");
    }

    #[test]
    fn field_errors_are_listed_unless_the_detail_has_them() {
        let mut p = problem(422, "invalid_options", true);
        p.errors = vec![FieldError {
            field: "options.document_ids".into(),
            message: "at most 50".into(),
        }];
        assert!(
            p.to_string()
                .contains("\n  options.document_ids: at most 50")
        );
        p.detail = "options.document_ids: at most 50".into();
        assert!(!p.to_string().contains('\n'));
    }
}
