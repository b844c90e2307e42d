//! `CODES` against the enum and against every code written in `src/`.

use super::*;
use std::collections::BTreeSet;

/// One error of each kind; the `match` stops compiling when a variant
/// is added, so the new one gets a sample (and a `CODES` entry).
fn samples() -> Vec<ApiError> {
    let all = vec![
        ApiError::NotFound("run"),
        ApiError::invalid("x"),
        ApiError::SafeMode,
        ApiError::Conflict {
            code: "conflict",
            detail: "x".into(),
        },
        ApiError::TooLarge("x".into()),
        ApiError::MethodNotAllowed,
        ApiError::UnsupportedMediaType("x".into()),
        ApiError::QueueFull,
        ApiError::Unauthorized,
        ApiError::AdminRequired,
        ApiError::RateLimited { retry_after_s: 1 },
        ApiError::Unavailable,
        ApiError::Internal(anyhow::anyhow!("x")),
    ];
    for e in &all {
        match e {
            ApiError::NotFound(_)
            | ApiError::Invalid { .. }
            | ApiError::SafeMode
            | ApiError::Conflict { .. }
            | ApiError::TooLarge(_)
            | ApiError::MethodNotAllowed
            | ApiError::UnsupportedMediaType(_)
            | ApiError::QueueFull
            | ApiError::Unauthorized
            | ApiError::AdminRequired
            | ApiError::RateLimited { .. }
            | ApiError::Unavailable
            | ApiError::Internal(_) => {}
        }
    }
    all
}

#[test]
fn every_variant_has_its_code_listed_with_its_status() {
    for e in samples() {
        let entry = code_entry(&e.code()).unwrap_or_else(|| panic!("{} is not in CODES", e.code()));
        assert_eq!(entry.status, e.status().as_u16(), "{}", e.code());
    }
}

#[test]
fn codes_are_listed_once() {
    let unique: BTreeSet<&str> = CODES.iter().map(|c| c.code).collect();
    assert_eq!(unique.len(), CODES.len());
}

/// Codes chosen where errors are made: `NotFound("<what>")` (as
/// `<what>_not_found`), `code: "<code>"` and `ApiError::field("<code>", …)`.
fn codes_in_sources(dir: &std::path::Path, found: &mut BTreeSet<(String, u16)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            codes_in_sources(&path, found);
            continue;
        }
        if path.file_name().is_some_and(|n| n == "tests.rs") {
            continue; // this file's samples and patterns; tests make no errors
        }
        let source = std::fs::read_to_string(&path).unwrap();
        let source = source.split("#[cfg(test)]").next().unwrap();
        let conflict = |at: usize| source[..at].rfind("Conflict") > source[..at].rfind("Invalid");
        for (at, _) in source.match_indices("NotFound(\"") {
            found.insert((format!("{}_not_found", literal(&source[at + 10..])), 404));
        }
        for (at, _) in source.match_indices("code: \"") {
            let status = if conflict(at) { 409 } else { 422 };
            found.insert((literal(&source[at + 7..]), status));
        }
        for (at, _) in source.match_indices("field(") {
            if let Some(rest) = source[at + 6..].trim_start().strip_prefix('"') {
                found.insert((literal(rest), 422));
            }
        }
    }
}

fn literal(s: &str) -> String {
    s[..s.find('"').unwrap()].to_owned()
}

#[test]
fn every_code_written_in_the_sources_is_listed_with_its_status() {
    let mut found = BTreeSet::new();
    codes_in_sources(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut found,
    );
    assert!(found.len() >= 15, "the scan finds the codes: {found:?}");
    for (code, status) in found {
        let entry = code_entry(&code).unwrap_or_else(|| panic!("{code} is not in CODES"));
        assert_eq!(entry.status, status, "{code}");
    }
}
