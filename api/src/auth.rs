//! Who is asking: the `Authorization: Bearer <key>` of every `/api/v1`
//! request (but `openapi.json`), turned into a [`Principal`].
//!
//! Keys are looked up by hash and cached for [`CACHE_TTL`] (unknown keys
//! too, so guessing cannot hammer the database); a revoked key is refused
//! within that time on every API instance, at once on the one that revoked
//! it. Each key has a token bucket ([`crate::rate_limit`]). `last_used_at`
//! is written in the background with each database lookup, so at most once
//! per [`CACHE_TTL`] per key and instance.
//!
//! Scope is enforced by the handlers: a workspace key sees exactly its
//! workspace, and an id of another workspace is answered like an unknown id
//! (404, never 403), so existence is not disclosed.

use crate::error::ApiError;
use crate::keys::{self, Scope};
use crate::state::AppState;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;
use warp::Filter;

/// How long a key lookup (found or not) is trusted.
pub const CACHE_TTL: Duration = Duration::from_secs(10);
/// Cached lookups kept at most (the cache is emptied when full).
const CACHE_MAX: usize = 10_000;

/// The caller of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    /// The key used.
    pub key_id: Uuid,
    /// What it may see.
    pub scope: Scope,
}

impl Principal {
    /// The one workspace a workspace key sees; `None` for an admin (all).
    pub fn workspace(&self) -> Option<Uuid> {
        match self.scope {
            Scope::Admin => None,
            Scope::Workspace(ws) => Some(ws),
        }
    }

    /// True when `workspace` is visible to this caller.
    pub fn sees(&self, workspace: Uuid) -> bool {
        self.workspace().is_none_or(|ws| ws == workspace)
    }

    /// 403 `admin_required` unless this is an admin key.
    pub fn admin(&self) -> Result<(), ApiError> {
        match self.scope {
            Scope::Admin => Ok(()),
            Scope::Workspace(_) => Err(ApiError::AdminRequired),
        }
    }
}

/// The `Result<Principal, ApiError>` of a request; never rejects (handlers
/// answer 401/429 themselves, warp rejections stay for routing).
pub fn principal(
    state: AppState,
) -> impl Filter<Extract = (Result<Principal, ApiError>,), Error = Infallible> + Clone {
    warp::header::headers_cloned().then(move |headers: warp::http::HeaderMap| {
        let state = state.clone();
        async move {
            let header = headers.get("authorization").and_then(|v| v.to_str().ok());
            authenticate(&state, header).await
        }
    })
}

/// Resolves an `Authorization` header and charges the key's rate limit.
pub async fn authenticate(state: &AppState, header: Option<&str>) -> Result<Principal, ApiError> {
    let key = header
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 200)
        .ok_or(ApiError::Unauthorized)?;
    let principal = state
        .keys
        .resolve(state, keys::hash(key))
        .await?
        .ok_or(ApiError::Unauthorized)?;
    state.rate_limiter.charge(principal.key_id)?;
    Ok(principal)
}

/// Key lookups by hash, cached.
#[derive(Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<[u8; 32], Cached>>,
}

struct Cached {
    found: Option<Principal>,
    at: Instant,
}

impl KeyCache {
    async fn resolve(
        &self,
        state: &AppState,
        hash: [u8; 32],
    ) -> Result<Option<Principal>, ApiError> {
        if let Some(found) = self.cached(&hash) {
            return Ok(found);
        }
        let found = keys::find(&state.db().await?, &hash)
            .await?
            .map(|(key_id, scope)| Principal { key_id, scope });
        let mut entries = self.entries.lock().expect("key cache lock");
        if entries.len() >= CACHE_MAX {
            entries.clear();
        }
        entries.insert(
            hash,
            Cached {
                found,
                at: Instant::now(),
            },
        );
        drop(entries);
        if let Some(p) = found {
            touch(state, p.key_id);
        }
        Ok(found)
    }

    fn cached(&self, hash: &[u8; 32]) -> Option<Option<Principal>> {
        let entries = self.entries.lock().expect("key cache lock");
        let entry = entries.get(hash).filter(|e| e.at.elapsed() < CACHE_TTL)?;
        Some(entry.found)
    }

    /// Forgets every cached lookup (after a revocation here).
    pub fn forget_all(&self) {
        self.entries.lock().expect("key cache lock").clear();
    }
}

/// Refreshes a key's `last_used_at` in the background.
fn touch(state: &AppState, key_id: Uuid) {
    let pool = state.pool.clone();
    tokio::spawn(async move {
        if let Ok(db) = pool.get().await {
            let _ = keys::touch(&db, &[key_id]).await;
        }
    });
}
