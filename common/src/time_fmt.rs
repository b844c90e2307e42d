//! Timestamps on the wire: RFC 3339, UTC, millisecond precision, `Z` suffix.

use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

const FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// Formats a timestamp the way every API field and event carries it.
pub fn format(ts: OffsetDateTime) -> String {
    ts.to_offset(time::UtcOffset::UTC)
        .format(FORMAT)
        .expect("a UTC timestamp always formats")
}

/// Serde adapter for `OffsetDateTime` fields.
pub mod serde_ts {
    use serde::Serializer;
    use time::OffsetDateTime;

    /// Serializes with [`super::format`].
    pub fn serialize<S: Serializer>(ts: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*ts))
    }

    /// Serde adapter for `Option<OffsetDateTime>` fields.
    pub mod option {
        use serde::Serializer;
        use time::OffsetDateTime;

        /// Serializes with [`super::super::format`], or `null`.
        pub fn serialize<S: Serializer>(
            ts: &Option<OffsetDateTime>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match ts {
                Some(ts) => s.serialize_str(&super::super::format(*ts)),
                None => s.serialize_none(),
            }
        }
    }
}
