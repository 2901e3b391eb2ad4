//! Who is calling: the client certificate (already chain-verified against the root by TLS)
//! is parsed and classified with the pure `sr-pki` rules, its issuing CA is checked against
//! the tenant named in its CN, and its component type is resolved.

use chrono::Utc;
use rustls::pki_types::CertificateDer;
use sr_core::TenantId;
use sr_core::rpc::{CallerIdentity, IdentityKind};
use sr_pki::{ClassifyContext, ComponentType, PeerCertificate};
use tonic::{Code, Status};

use crate::config::IdentityConfig;
use crate::directory::{Directory, LookupError};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Identity as handed to other services.
    pub identity: CallerIdentity,
    /// `sync` or `agent`.
    pub component_type: ComponentType,
    /// The certificate CN, for logs and events.
    pub cn: String,
}

impl Caller {
    /// Whether this is the platform sync.
    #[must_use]
    pub fn is_platform(&self) -> bool {
        self.identity.kind == IdentityKind::Platform
    }
}

/// Why a caller was refused: the status to return, and what to log and report.
#[derive(Debug)]
pub struct Refusal {
    /// gRPC status for the client.
    pub status: Status,
    /// Tenant to file the event under, when known.
    pub tenant: Option<TenantId>,
    /// Certificate subject, or a description when there is none.
    pub identity: String,
}

impl Refusal {
    fn new(
        code: Code,
        message: impl Into<String>,
        tenant: Option<TenantId>,
        identity: impl Into<String>,
    ) -> Self {
        Self {
            status: Status::new(code, message.into()),
            tenant,
            identity: identity.into(),
        }
    }

    /// A refusal of an authenticated caller.
    pub fn for_caller(caller: &Caller, code: Code, message: impl Into<String>) -> Self {
        Self::new(
            code,
            message,
            Some(caller.identity.tenant_id),
            caller.cn.clone(),
        )
    }
}

fn unavailable(e: &LookupError) -> Status {
    Status::unavailable(e.to_string())
}

/// Authenticates the peer of a request.
///
/// # Errors
/// [`Refusal`] with `UNAUTHENTICATED` for certificate problems, `PERMISSION_DENIED` for
/// components that may not call the gateway, `UNAVAILABLE` when identity does not answer.
pub async fn authenticate(
    certs: Option<&[CertificateDer<'static>]>,
    directory: &Directory,
    rules: &IdentityConfig,
) -> Result<Caller, Refusal> {
    let Some(leaf) = certs.and_then(|c| c.first()) else {
        return Err(Refusal::new(
            Code::Unauthenticated,
            "client certificate required",
            None,
            "anonymous",
        ));
    };
    let peer = PeerCertificate::from_der(leaf.as_ref()).map_err(|e| {
        Refusal::new(
            Code::Unauthenticated,
            format!("invalid client certificate: {e}"),
            None,
            "unparseable certificate",
        )
    })?;
    let cn = peer.name.to_cn();
    peer.check_validity(Utc::now()).map_err(|e| {
        Refusal::new(
            Code::Unauthenticated,
            format!("invalid client certificate: {e}"),
            None,
            cn.clone(),
        )
    })?;
    let tenant = match directory.tenant_by_slug(&peer.name.tenant_slug).await {
        Ok(t) => t,
        Err(LookupError::NotFound(_)) => {
            return Err(Refusal::new(
                Code::Unauthenticated,
                format!(
                    "unknown tenant {:?} in client certificate",
                    peer.name.tenant_slug
                ),
                None,
                cn,
            ));
        }
        Err(e) => {
            return Err(Refusal {
                status: unavailable(&e),
                tenant: None,
                identity: cn,
            });
        }
    };
    let ca_key = hex_decode(&tenant.ca_key_id);
    let issued_by_tenant_ca = sr_pki::issued_by(&peer, &ca_key);
    if !issued_by_tenant_ca {
        return Err(Refusal::new(
            Code::Unauthenticated,
            format!(
                "client certificate was not issued by the CA of tenant {}",
                tenant.slug
            ),
            Some(tenant.tenant_id),
            cn,
        ));
    }
    let ctx = ClassifyContext {
        platform_slug: rules.platform_slug.clone(),
        trust_domain: rules.trust_domain.clone(),
        issued_by_platform_ca: tenant.is_platform,
    };
    let id = sr_pki::classify(&peer, &ctx).map_err(|e| {
        Refusal::new(
            Code::Unauthenticated,
            format!("client certificate refused: {e}"),
            Some(tenant.tenant_id),
            cn.clone(),
        )
    })?;
    let kind = match id.kind {
        sr_pki::IdentityKind::Platform => IdentityKind::Platform,
        sr_pki::IdentityKind::Tenant => IdentityKind::Tenant,
    };
    let component_type = match id.component_type {
        Some(t) => t,
        None => match directory
            .component_type(tenant.tenant_id, &id.component_id)
            .await
        {
            Ok(Some(t)) => t.parse().map_err(|_| {
                Refusal::new(
                    Code::PermissionDenied,
                    format!("component type {t:?} is unknown"),
                    Some(tenant.tenant_id),
                    cn.clone(),
                )
            })?,
            Ok(None) => {
                return Err(Refusal::new(
                    Code::PermissionDenied,
                    format!(
                        "component {:?} is not enrolled in tenant {}",
                        id.component_id, tenant.slug
                    ),
                    Some(tenant.tenant_id),
                    cn,
                ));
            }
            Err(e) => {
                return Err(Refusal {
                    status: unavailable(&e),
                    tenant: Some(tenant.tenant_id),
                    identity: cn,
                });
            }
        },
    };
    if !matches!(component_type, ComponentType::Sync | ComponentType::Agent) {
        return Err(Refusal::new(
            Code::PermissionDenied,
            format!(
                "component type {} may not call the gateway",
                component_type.as_str()
            ),
            Some(tenant.tenant_id),
            cn,
        ));
    }
    Ok(Caller {
        identity: CallerIdentity {
            kind,
            tenant_id: tenant.tenant_id,
            tenant_slug: tenant.slug,
            component_id: id.component_id,
            partition: id.partition,
        },
        component_type,
        cn,
    })
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// Checks a request's `agent_id` against the certificate.
///
/// # Errors
/// `PERMISSION_DENIED "component_id mismatch"`.
pub fn check_agent_id(caller: &Caller, agent_id: &str) -> Result<(), Refusal> {
    if agent_id == caller.identity.component_id {
        Ok(())
    } else {
        Err(Refusal::for_caller(
            caller,
            Code::PermissionDenied,
            format!(
                "component_id mismatch: request agent_id {agent_id:?} but certificate names {:?}",
                caller.identity.component_id
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::hex_decode;

    #[test]
    fn key_ids_decode_from_hex() {
        assert_eq!(hex_decode("00ff10"), vec![0, 255, 16]);
        assert_eq!(hex_decode(""), Vec::<u8>::new());
    }
}
