//! The states of runs and builds, spelled once for SQL and JSON.
//!
//! Only [`crate::lifecycle`] moves a run or a build from one state to
//! another; everything else reads these types.

use serde::{Deserialize, Serialize};

macro_rules! spelled {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every state, in lifecycle order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The SQL and JSON spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownStatus;
            fn from_str(s: &str) -> Result<Self, UnknownStatus> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(UnknownStatus(s.chars().take(40).collect())),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl<'a> tokio_postgres::types::FromSql<'a> for $name {
            fn from_sql(
                ty: &tokio_postgres::types::Type,
                raw: &'a [u8],
            ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
                let text = <&str as tokio_postgres::types::FromSql>::from_sql(ty, raw)?;
                Ok(text.parse()?)
            }
            fn accepts(ty: &tokio_postgres::types::Type) -> bool {
                <&str as tokio_postgres::types::FromSql>::accepts(ty)
            }
        }
    };
}

spelled! {
    /// Where a run is in its lifecycle (SPEC §4).
    RunStatus {
        /// Accepted, waiting for a worker.
        Queued => "queued",
        /// Claimed; its build is not ready yet.
        WaitingForBuild => "waiting_for_build",
        /// Claimed; the engine is being prepared or runs.
        Running => "running",
        /// Ended with exit code 0.
        Succeeded => "succeeded",
        /// Ended otherwise.
        Failed => "failed",
        /// Ended by a cancel request.
        Cancelled => "cancelled",
    }
}

spelled! {
    /// Where a build is in its lifecycle.
    BuildStatus {
        /// Waiting for a builder.
        Queued => "queued",
        /// A builder is making its venv.
        Building => "building",
        /// Usable: any host can hydrate it.
        Ready => "ready",
        /// Its venv could not be made.
        Failed => "failed",
        /// Abandoned.
        Cancelled => "cancelled",
    }
}

impl RunStatus {
    /// Succeeded, failed or cancelled: written once, never changed.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// A status spelling no state has.
#[derive(Debug, thiserror::Error)]
#[error("unknown status {0:?}")]
pub struct UnknownStatus(String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_spelling() {
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>().unwrap(), *s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for s in BuildStatus::ALL {
            assert_eq!(s.as_str().parse::<BuildStatus>().unwrap(), *s);
        }
        assert!("done".parse::<RunStatus>().is_err());
        assert!(RunStatus::Cancelled.is_terminal() && !RunStatus::Running.is_terminal());
    }
}
