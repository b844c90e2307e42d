//! The HTTP client: the API's base URL, the key, and replies as JSON or errors.
//!
//! Every request goes through [`Client::send`], which sends the key as a
//! Bearer token and turns anything but a 2xx into an [`ApiError`].

use crate::args::Global;
use crate::problem::{ApiError, Problem, root_cause};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;
use std::time::Duration;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the API may stay silent mid-reply (streams send a keep-alive every 15 s).
pub const READ_TIMEOUT: Duration = Duration::from_secs(45);
/// How much of an unexpected body an error shows.
const SNIPPET_CHARS: usize = 200;

/// Why the settings cannot make a client.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The URL does not parse or is not plain http.
    #[error(
        "ADE_API_URL={0:?} is not an http:// URL (this build of ade speaks plain HTTP; put a TLS proxy in front of it if needed)"
    )]
    BadUrl(String),
    /// The key cannot go into a header.
    #[error("ADE_API_KEY holds characters that cannot be sent in a header")]
    BadKey,
    /// reqwest could not start.
    #[error("cannot start the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// A client of one API.
#[derive(Clone)]
pub struct Client {
    base: String,
    key: Option<String>,
    http: reqwest::Client,
}

/// A successful reply: its status, its body as sent, and the body parsed.
#[derive(Debug)]
pub struct Reply {
    /// 200, 201 or 202.
    pub status: StatusCode,
    /// The body exactly as the API sent it.
    pub raw: String,
    /// The body as JSON.
    pub value: Value,
}

impl Client {
    /// A client from the global settings; checks the URL and the key.
    pub fn new(global: &Global) -> Result<Self, SettingsError> {
        let base = global.api_url.trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&base).map_err(|_| SettingsError::BadUrl(base.clone()))?;
        if parsed.scheme() != "http" || parsed.host().is_none() {
            return Err(SettingsError::BadUrl(base));
        }
        let key = global.api_key.clone().filter(|k| !k.is_empty());
        if let Some(key) = &key {
            reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
                .map_err(|_| SettingsError::BadKey)?;
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("ade/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { base, key, http })
    }

    /// The API's base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// A request to `path` (`/api/v1/…` or `/health/…`), with the key.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    /// Sends a request; any status but 2xx becomes an [`ApiError`].
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, ApiError> {
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(self.error_of(response).await)
        }
    }

    /// Sends a request and reads its JSON reply.
    pub async fn json(&self, request: RequestBuilder) -> Result<Reply, ApiError> {
        let response = self.send(request).await?;
        let status = response.status();
        let url = response.url().to_string();
        let raw = response.text().await.map_err(|e| self.unreachable(&e))?;
        let value = serde_json::from_str(&raw).map_err(|_| ApiError::Unexpected {
            url,
            status: status.as_u16(),
            body: snippet(&raw),
        })?;
        Ok(Reply { status, raw, value })
    }

    /// `GET path` as JSON.
    pub async fn get(&self, path: &str) -> Result<Reply, ApiError> {
        self.json(self.request(Method::GET, path)).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Reply, ApiError> {
        self.json(self.request(Method::POST, path).json(body)).await
    }

    /// `POST path` without a body (cancel).
    pub async fn post_empty(&self, path: &str) -> Result<Reply, ApiError> {
        self.json(self.request(Method::POST, path).body(Vec::new()))
            .await
    }

    /// Every item of a cursor-paged list (`{items, next_cursor}`).
    pub async fn list_all(&self, path: &str) -> Result<Vec<Value>, ApiError> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut request = self.request(Method::GET, path).query(&[("limit", "200")]);
            if let Some(cursor) = &cursor {
                request = request.query(&[("cursor", cursor)]);
            }
            let page = self.json(request).await?.value;
            items.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return Ok(items),
            }
        }
    }

    /// The error for a request that got no answer.
    pub fn unreachable(&self, error: &reqwest::Error) -> ApiError {
        let cause = if error.is_timeout() {
            "no answer in time".to_owned()
        } else {
            root_cause(error)
        };
        ApiError::Unreachable {
            base: self.base.clone(),
            cause,
        }
    }

    /// Reads an error reply into a [`Problem`] (or an unexpected answer).
    pub async fn error_of(&self, response: Response) -> ApiError {
        let status = response.status().as_u16();
        let url = response.url().to_string();
        let retry_after_s = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let body = response.text().await.unwrap_or_default();
        match serde_json::from_str::<Problem>(&body) {
            Ok(problem) => ApiError::Problem(Problem {
                retry_after_s,
                key_sent: self.key.is_some(),
                ..problem
            }),
            Err(_) => ApiError::Unexpected {
                url,
                status,
                body: snippet(&body),
            },
        }
    }
}

/// The start of a body, on one line.
fn snippet(body: &str) -> String {
    let flat: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(SNIPPET_CHARS) {
        Some((end, _)) => format!("{}…", &flat[..end]),
        None => flat,
    }
}
