//! Schemas written from the constants the handlers check, where a literal
//! in a derive attribute could drift from the code.

use serde_json::{Value, json};
use utoipa::openapi::schema::Schema;

/// Longest display name, in characters (after trimming).
pub const MAX_NAME_CHARS: usize = 200;

/// A schema from its JSON form.
pub fn from(value: Value) -> Schema {
    serde_json::from_value(value).expect("a valid schema")
}

/// A display name, as `routes::workspaces::checked_name` accepts it: 1 to
/// 200 characters, no control characters, not only spaces.
pub fn name() -> Schema {
    let pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$";
    from(json!({
        "type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS, "pattern": pattern,
    }))
}

/// A file part of a multipart form.
pub fn binary() -> Schema {
    from(json!({"type": "string", "format": "binary"}))
}
