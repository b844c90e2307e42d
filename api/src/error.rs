//! `ApiError`: every client-visible outcome, rendered as problem+json.
//!
//! Infrastructure errors are classified here, once: an unreachable database
//! or an exhausted pool is 503 (with `Retry-After`), a unique violation 409,
//! anything else 500 with details logged and never sent to the client.

use serde::Serialize;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Rejection, Reply};

/// One stable problem `code`: the status it comes with and what it means.
#[derive(Debug, Clone, Copy)]
pub struct Code {
    /// The `code` of the problem.
    pub code: &'static str,
    /// Its HTTP status.
    pub status: u16,
    /// What it means, for the reference and the OpenAPI document.
    pub meaning: &'static str,
}

const fn c(code: &'static str, status: u16, meaning: &'static str) -> Code {
    Code {
        code,
        status,
        meaning,
    }
}

/// Every `code` an [`ApiError`] can carry. A unit test checks it against the
/// enum and against every code written in `src/`; the OpenAPI test checks
/// that each appears in the document.
pub const CODES: &[Code] = &[
    c(
        "unauthorized",
        401,
        "no key, or an unknown or revoked one (with `WWW-Authenticate: Bearer`)",
    ),
    c("admin_required", 403, "the endpoint needs an admin key"),
    c(
        "resource_not_found",
        404,
        "no route matches (also a path id that is not a UUID)",
    ),
    c(
        "workspace_not_found",
        404,
        "no such workspace, or not this key's",
    ),
    c(
        "configuration_not_found",
        404,
        "no such configuration (in this workspace, where the path names one)",
    ),
    c(
        "document_not_found",
        404,
        "no such document in this workspace",
    ),
    c("run_not_found", 404, "no such run"),
    c("build_not_found", 404, "no such build"),
    c(
        "output_not_found",
        404,
        "the run recorded no output of this name",
    ),
    c(
        "file_not_found",
        404,
        "the stored bytes of a document or output are missing, or not a regular file",
    ),
    c("key_not_found", 404, "no such API key"),
    c(
        "method_not_allowed",
        405,
        "the path exists, but not with this method",
    ),
    c("conflict", 409, "a concurrent write won; retry the request"),
    c(
        "document_in_use",
        409,
        "a queued or running run uses the document",
    ),
    c(
        "environment_not_ready",
        409,
        "the build of the configuration's current content failed; run with `force_rebuild`",
    ),
    c(
        "idempotency_key_reused",
        409,
        "the `Idempotency-Key` was used with a different request",
    ),
    c("run_already_terminal", 409, "the run already ended"),
    c(
        "run_not_terminal",
        409,
        "the run has not ended; cancel it first",
    ),
    c(
        "payload_too_large",
        413,
        "the body, an upload or an expanded package is over its limit",
    ),
    c(
        "unsupported_media_type",
        415,
        "the request's `Content-Type` is not one the endpoint reads",
    ),
    c(
        "invalid_request",
        422,
        "bad JSON, a wrong type, an unknown or missing field, an invalid name or header",
    ),
    c(
        "invalid_query",
        422,
        "a query parameter is out of range, malformed or unknown",
    ),
    c(
        "invalid_options",
        422,
        "run options break a limit (one `errors[]` entry per problem)",
    ),
    c(
        "invalid_package",
        422,
        "the configuration package is not a valid `.zip`/`.tar.gz` `ade_config` package",
    ),
    c(
        "invalid_multipart",
        422,
        "the multipart body could not be read",
    ),
    c(
        "safe_mode_enabled",
        422,
        "`ADE_SAFE_MODE` is on: new runs are refused",
    ),
    c(
        "rate_limited",
        429,
        "this key made too many requests (with `Retry-After`)",
    ),
    c(
        "run_queue_full",
        429,
        "`ADE_MAX_QUEUED_RUNS` runs are waiting (with `Retry-After`)",
    ),
    c(
        "internal_error",
        500,
        "an unexpected failure; details are logged, never sent",
    ),
    c(
        "service_unavailable",
        503,
        "PostgreSQL is unreachable (with `Retry-After`)",
    ),
];

/// The entry of [`CODES`] for `code`.
pub fn code_entry(code: &str) -> Option<&'static Code> {
    CODES.iter().find(|c| c.code == code)
}

/// One invalid field, in the `errors` array of a 422.
#[derive(Debug, Clone, Serialize)]
pub struct FieldError {
    /// JSON path or parameter name.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// Every error the API answers with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 404: `<what>_not_found`.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 422: the request is well-formed HTTP but its content is invalid.
    #[error("{detail}")]
    Invalid {
        /// Stable code, e.g. `invalid_request`.
        code: &'static str,
        /// Human-readable explanation.
        detail: String,
        /// Per-field errors, possibly empty.
        errors: Vec<FieldError>,
    },
    /// 422: `ADE_SAFE_MODE` refuses new runs.
    #[error("safe mode is enabled: new runs are refused")]
    SafeMode,
    /// 409: the request conflicts with the current state.
    #[error("{detail}")]
    Conflict {
        /// Stable code, e.g. `idempotency_key_reused`.
        code: &'static str,
        /// Human-readable explanation.
        detail: String,
    },
    /// 413: the body or upload is larger than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// 405: the path exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 415: the body's `Content-Type` is missing or not one the endpoint reads.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 429: too many runs are queued.
    #[error("too many queued runs; try again later")]
    QueueFull,
    /// 401: no key, or an unknown or revoked one.
    #[error("a valid API key is required: send `Authorization: Bearer <key>`")]
    Unauthorized,
    /// 403: the endpoint needs an admin key.
    #[error("this needs an admin key")]
    AdminRequired,
    /// 429: this key made too many requests.
    #[error("too many requests with this key; retry after {retry_after_s} s")]
    RateLimited {
        /// Seconds to wait.
        retry_after_s: u64,
    },
    /// 503: a dependency the request needs is down.
    #[error("the service is temporarily unavailable; try again shortly")]
    Unavailable,
    /// 500: a bug or an unexpected failure; details are logged only.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// A 422 with code `invalid_request`.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::Invalid {
            code: "invalid_request",
            detail: detail.into(),
            errors: vec![],
        }
    }

    /// A 422 with a code and one field error.
    pub fn field(code: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        let message = message.into();
        let errors = vec![FieldError {
            field: field.into(),
            message: message.clone(),
        }];
        Self::Invalid {
            code,
            detail: message,
            errors,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Invalid { .. } | Self::SafeMode => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::QueueFull | Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::AdminRequired => StatusCode::FORBIDDEN,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable problem+json `code`.
    pub fn code(&self) -> String {
        match self {
            Self::NotFound(what) => format!("{what}_not_found"),
            Self::Invalid { code, .. } | Self::Conflict { code, .. } => (*code).to_owned(),
            Self::SafeMode => "safe_mode_enabled".into(),
            Self::TooLarge(_) => "payload_too_large".into(),
            Self::MethodNotAllowed => "method_not_allowed".into(),
            Self::UnsupportedMediaType(_) => "unsupported_media_type".into(),
            Self::QueueFull => "run_queue_full".into(),
            Self::Unauthorized => "unauthorized".into(),
            Self::AdminRequired => "admin_required".into(),
            Self::RateLimited { .. } => "rate_limited".into(),
            Self::Unavailable => "service_unavailable".into(),
            Self::Internal(_) => "internal_error".into(),
        }
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [FieldError]>,
}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(e) = &self {
            tracing::error!(error = ?e, "internal error");
        }
        let status = self.status();
        let code = self.code();
        let errors = match &self {
            Self::Invalid { errors, .. } if !errors.is_empty() => Some(errors.as_slice()),
            _ => None,
        };
        let errors: Option<Vec<FieldError>> = errors.map(|errors| {
            errors
                .iter()
                .take(MAX_FIELD_ERRORS)
                .map(|e| FieldError {
                    field: bounded(&e.field),
                    message: bounded(&e.message),
                })
                .collect()
        });
        let problem = Problem {
            kind: format!("https://ade.dev/problems/{code}"),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: bounded(&self.to_string()),
            code,
            errors: errors.as_deref(),
        };
        let body = serde_json::to_vec(&problem).expect("a problem always serializes");
        let mut res = Response::new(body.into());
        *res.status_mut() = status;
        let headers = res.headers_mut();
        headers.insert(
            "content-type",
            "application/problem+json".parse().expect("valid header"),
        );
        match &self {
            Self::Unavailable | Self::QueueFull => {
                headers.insert("retry-after", "5".parse().expect("valid header"));
            }
            Self::RateLimited { retry_after_s } => {
                headers.insert("retry-after", (*retry_after_s).into());
            }
            Self::Unauthorized => {
                headers.insert("www-authenticate", "Bearer".parse().expect("valid header"));
            }
            _ => {}
        }
        res
    }
}

/// Longest text of a problem field: details never echo more than about 200
/// characters of what a client sent.
pub const MAX_PROBLEM_TEXT: usize = 300;
/// Most entries in a problem's `errors`.
pub const MAX_FIELD_ERRORS: usize = 16;

/// `text`, cut at [`MAX_PROBLEM_TEXT`] characters.
fn bounded(text: &str) -> String {
    match text.char_indices().nth(MAX_PROBLEM_TEXT) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        tracing::warn!(error = %e, "database unavailable");
        Self::Unavailable
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        let unavailable = ade_common::db::is_unavailable(&e);
        if unavailable {
            tracing::warn!(error = %e, "database unavailable");
            return Self::Unavailable;
        }
        match e.code() {
            Some(&SqlState::UNIQUE_VIOLATION) => Self::Conflict {
                code: "conflict",
                detail: "the resource changed concurrently; retry the request".into(),
            },
            _ => Self::Internal(e.into()),
        }
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        Self::Internal(e.into())
    }
}

/// A `Content-Type` that a multipart route could not read (missing, or
/// without a boundary): the only filters here that look at it.
fn bad_content_type(rejection: &Rejection) -> bool {
    let missing = rejection
        .find::<warp::reject::MissingHeader>()
        .map(|e| e.name());
    let invalid = rejection
        .find::<warp::reject::InvalidHeader>()
        .map(|e| e.name());
    [missing, invalid]
        .into_iter()
        .flatten()
        .any(|name| name.eq_ignore_ascii_case("content-type"))
}

/// Turns warp's own rejections (routing, methods, bodies) into problem+json.
pub async fn recover(rejection: Rejection) -> Result<Response, Rejection> {
    let error = if rejection.is_not_found() {
        ApiError::NotFound("resource")
    } else if let Some(e) = rejection.find::<warp::reject::InvalidQuery>() {
        ApiError::field("invalid_query", "query", e.to_string())
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::TooLarge("the request body is too large".into())
    } else if let Some(e) = rejection.find::<warp::reject::LengthRequired>() {
        // Before 415: a JSON body without `Content-Length` to a route that
        // also reads multipart is refused for its length, not its type.
        ApiError::invalid(e.to_string())
    } else if bad_content_type(&rejection) {
        // Before 405: the route matched, a sibling with another method did not.
        ApiError::UnsupportedMediaType(
            "this endpoint reads `multipart/form-data` (with a boundary); send that `Content-Type`"
                .into(),
        )
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::MethodNotAllowed
    } else if let Some(e) = rejection.find::<warp::reject::InvalidHeader>() {
        ApiError::invalid(e.to_string())
    } else if let Some(e) = rejection.find::<warp::reject::MissingHeader>() {
        ApiError::invalid(e.to_string())
    } else if let Some(e) = rejection.find::<warp::reject::UnsupportedMediaType>() {
        ApiError::UnsupportedMediaType(e.to_string())
    } else {
        ApiError::Internal(anyhow::anyhow!("unhandled rejection: {rejection:?}"))
    };
    Ok(error.into_response())
}

#[cfg(test)]
mod tests;
