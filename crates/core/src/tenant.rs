//! Tenant identifiers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A tenant id: a UUID that is never the nil UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "Uuid", into = "Uuid")]
pub struct TenantId(Uuid);

/// Why a value is not a tenant id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantIdError {
    /// Not a UUID at all.
    #[error("tenant id is not a UUID: {0}")]
    NotAUuid(String),
    /// The nil UUID, which would make every tenant look alike.
    #[error("the nil UUID is not a valid tenant id")]
    Nil,
}

impl TenantId {
    /// Wraps a UUID.
    ///
    /// # Errors
    /// [`TenantIdError::Nil`] for the nil UUID.
    pub fn new(id: Uuid) -> Result<Self, TenantIdError> {
        if id.is_nil() {
            Err(TenantIdError::Nil)
        } else {
            Ok(Self(id))
        }
    }

    /// A fresh random tenant id.
    #[must_use]
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }

    /// The UUID inside.
    #[must_use]
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl TryFrom<Uuid> for TenantId {
    type Error = TenantIdError;
    fn try_from(id: Uuid) -> Result<Self, Self::Error> {
        Self::new(id)
    }
}

impl From<TenantId> for Uuid {
    fn from(id: TenantId) -> Self {
        id.0
    }
}

impl FromStr for TenantId {
    type Err = TenantIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let id = Uuid::parse_str(s.trim()).map_err(|_| TenantIdError::NotAUuid(s.to_owned()))?;
        Self::new(id)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn nil_uuid_is_rejected_as_tenant_id() {
        assert_eq!(TenantId::new(Uuid::nil()), Err(TenantIdError::Nil));
        assert_eq!(
            "00000000-0000-0000-0000-000000000000".parse::<TenantId>(),
            Err(TenantIdError::Nil)
        );
        assert!(
            serde_json::from_str::<TenantId>("\"00000000-0000-0000-0000-000000000000\"").is_err()
        );
    }

    #[test]
    fn tenant_id_round_trips_through_text_and_json() {
        let id = TenantId::random();
        assert_eq!(id.to_string().parse::<TenantId>().unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<TenantId>(&json).unwrap(), id);
        assert!(matches!(
            "nope".parse::<TenantId>(),
            Err(TenantIdError::NotAUuid(_))
        ));
    }
}
