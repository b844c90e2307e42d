//! Run options, statuses and failures: the parts of a run that the API
//! accepts and the worker acts on.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Most documents one run may take.
pub const MAX_DOCUMENTS: usize = 50;
/// Most sheet names one run may name.
pub const MAX_SHEETS: usize = 20;
/// Most metadata entries per run.
pub const MAX_METADATA: usize = 32;

/// What a client asks a run to do. Unknown fields are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct RunOptions {
    /// Do everything but write outputs.
    pub dry_run: bool,
    /// Only validate the inputs; write no outputs.
    pub validate_only: bool,
    /// Build a fresh environment even if one is ready.
    pub force_rebuild: bool,
    /// The input documents, in order: 1 to 50, no repeats.
    #[cfg_attr(feature = "openapi", schema(required = true, schema_with = schema::document_ids))]
    pub document_ids: Vec<Uuid>,
    /// Sheets to read from workbook inputs: at most 20 names of 1 to 255 characters.
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::input_sheet_names))]
    pub input_sheet_names: Vec<String>,
    /// Free-form labels kept with the run: at most 32, keys of 1 to 64
    /// characters, values of at most 1024.
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::metadata))]
    pub metadata: BTreeMap<String, String>,
}

/// One reason options are invalid: the field and what is wrong.
pub type OptionError = (String, String);

impl RunOptions {
    /// Checks the limits and shapes the type system does not.
    pub fn check(&self) -> Result<(), Vec<OptionError>> {
        let mut errors = Vec::new();
        let mut err = |field: &str, msg: String| errors.push((format!("options.{field}"), msg));
        if self.document_ids.is_empty() {
            err("document_ids", "at least one document is required".into());
        }
        if self.document_ids.len() > MAX_DOCUMENTS {
            err("document_ids", format!("at most {MAX_DOCUMENTS} documents"));
        }
        let mut unique = self.document_ids.clone();
        unique.sort();
        unique.dedup();
        if unique.len() != self.document_ids.len() {
            err("document_ids", "documents must not repeat".into());
        }
        if self.input_sheet_names.len() > MAX_SHEETS {
            err(
                "input_sheet_names",
                format!("at most {MAX_SHEETS} sheet names"),
            );
        }
        if self.input_sheet_names.iter().any(|s| !is_label(s, 255)) {
            err(
                "input_sheet_names",
                "sheet names are 1 to 255 printable characters".into(),
            );
        }
        if self.metadata.len() > MAX_METADATA {
            err("metadata", format!("at most {MAX_METADATA} entries"));
        }
        if self
            .metadata
            .iter()
            .any(|(k, v)| !is_label(k, 64) || v.chars().count() > 1024 || v.contains('\0'))
        {
            // NUL too: PostgreSQL cannot store it in the run's options.
            err(
                "metadata",
                "keys are 1 to 64 printable characters, values at most 1024 characters without NUL"
                    .into(),
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

fn is_label(s: &str, max: usize) -> bool {
    let n = s.chars().count();
    n > 0 && n <= max && !s.chars().any(char::is_control)
}

/// JSON schemas of the option limits that `check` enforces, from the same constants.
#[cfg(feature = "openapi")]
mod schema {
    use super::{MAX_DOCUMENTS, MAX_METADATA, MAX_SHEETS};
    use serde_json::json;
    use utoipa::openapi::schema::Schema;

    /// A string without control characters (what `is_label` accepts).
    pub const NO_CONTROLS: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";

    fn from(value: serde_json::Value) -> Schema {
        serde_json::from_value(value).expect("a valid schema")
    }

    pub fn document_ids() -> Schema {
        from(json!({
            "description": "The input documents, in order: 1 to 50, no repeats.",
            "type": "array", "items": {"type": "string", "format": "uuid"},
            "minItems": 1, "maxItems": MAX_DOCUMENTS, "uniqueItems": true,
        }))
    }

    pub fn input_sheet_names() -> Schema {
        from(json!({
            "description": "Sheets to read from workbook inputs.",
            "type": "array", "maxItems": MAX_SHEETS,
            "items": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": NO_CONTROLS},
        }))
    }

    pub fn metadata() -> Schema {
        from(json!({
            "description": "Free-form labels kept with the run.",
            "type": "object", "maxProperties": MAX_METADATA,
            "propertyNames": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": NO_CONTROLS},
            "additionalProperties": {"type": "string", "maxLength": 1024, "pattern": "^[^\\u0000]*$"},
        }))
    }
}

/// Where a run failed, why, in a stable code, and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Failure {
    /// `build`, `run` or `worker`.
    pub stage: String,
    /// Stable code, e.g. `engine_failed`, `environment_unavailable`.
    pub code: String,
    /// What happened.
    pub message: String,
}

impl Failure {
    /// A failure at `stage` with `code`.
    pub fn new(stage: &str, code: &str, message: impl Into<String>) -> Self {
        Self {
            stage: stage.into(),
            code: code.into(),
            message: message.into(),
        }
    }
}

/// One output file of a run, as recorded when the run completed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutputFile {
    /// A plain file name (see [`crate::storage::is_safe_file_name`]).
    pub name: String,
    /// From a fixed table of extensions.
    pub content_type: String,
    /// Its size when the run completed.
    pub byte_size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked() {
        let ok = RunOptions {
            document_ids: vec![Uuid::now_v7()],
            ..Default::default()
        };
        assert!(ok.check().is_ok());
        assert!(RunOptions::default().check().is_err());
        let id = Uuid::now_v7();
        let dup = RunOptions {
            document_ids: vec![id, id],
            ..Default::default()
        };
        assert!(dup.check().is_err());
        let mut meta = ok.clone();
        meta.metadata.insert(String::new(), "x".into());
        assert!(meta.check().is_err());
        let mut nul = ok.clone();
        nul.metadata.insert("k".into(), "a\0b".into());
        assert!(nul.check().is_err());
    }

    #[test]
    fn unknown_option_fields_are_refused() {
        assert!(serde_json::from_str::<RunOptions>(r#"{"dry_run": true, "colour": 1}"#).is_err());
        assert!(serde_json::from_str::<RunOptions>(r#"{"dry_run": "yes"}"#).is_err());
    }
}
