//! The certificate authority: the root and per-tenant intermediate CAs kept in Postgres
//! (keys sealed), and issuance of component certificates and enrollment bundles.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, Row as _};
use sr_core::bootstrap::{ClientBootstrap, files};
use sr_pki::{CertAuthority, ComponentName, ComponentType, LeafSpec, LeafUsage, SpiffeId};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::seal::Sealer;

fn ca_error(e: impl std::fmt::Display) -> Error {
    Error::Ca(e.to_string())
}

fn aad(ca_id: Uuid) -> String {
    format!("certificate_authority:{ca_id}")
}

/// Stores a CA (root when `tenant_id` is none) with its key sealed.
async fn insert_ca(
    conn: &mut PgConnection,
    sealer: &Sealer,
    tenant_id: Option<Uuid>,
    ca: &CertAuthority,
) -> Result<()> {
    let id = Uuid::new_v4();
    let sealed = sealer.seal(ca.key_pem().as_bytes(), &aad(id))?;
    sqlx::query(
        "INSERT INTO certificate_authorities (id, tenant_id, kind, cert_pem, key_sealed, key_id, not_after)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(tenant_id)
    .bind(if tenant_id.is_some() { "tenant" } else { "root" })
    .bind(ca.cert_pem())
    .bind(sealed)
    .bind(hex::encode(ca.subject_key_id()))
    .bind(ca.not_after())
    .execute(conn)
    .await?;
    Ok(())
}

async fn load_ca(
    conn: &mut PgConnection,
    sealer: &Sealer,
    tenant_id: Option<Uuid>,
) -> Result<CertAuthority> {
    let row = match tenant_id {
        None => sqlx::query("SELECT id, cert_pem, key_sealed FROM certificate_authorities WHERE kind = 'root'")
            .fetch_optional(&mut *conn)
            .await?,
        Some(t) => sqlx::query(
            "SELECT id, cert_pem, key_sealed FROM certificate_authorities WHERE kind = 'tenant' AND tenant_id = $1",
        )
        .bind(t)
        .fetch_optional(&mut *conn)
        .await?,
    };
    let row = row.ok_or_else(|| Error::Ca(format!("no CA stored for {tenant_id:?}")))?;
    let id: Uuid = row.try_get("id")?;
    let cert_pem: String = row.try_get("cert_pem")?;
    let sealed: Vec<u8> = row.try_get("key_sealed")?;
    let key = sealer.open(&sealed, &aad(id))?;
    let key = String::from_utf8(key).map_err(ca_error)?;
    CertAuthority::from_pem(&cert_pem, &key).map_err(ca_error)
}

/// Loads the root CA.
///
/// # Errors
/// Missing root, wrong encryption key, unreadable PEM.
pub async fn root(conn: &mut PgConnection, sealer: &Sealer) -> Result<CertAuthority> {
    load_ca(conn, sealer, None).await
}

/// Loads a tenant's intermediate CA.
///
/// # Errors
/// As [`root`].
pub async fn tenant(
    conn: &mut PgConnection,
    sealer: &Sealer,
    tenant_id: Uuid,
) -> Result<CertAuthority> {
    load_ca(conn, sealer, Some(tenant_id)).await
}

/// Creates and stores the root CA.
///
/// # Errors
/// Generation or database failure.
pub async fn create_root(
    conn: &mut PgConnection,
    sealer: &Sealer,
    now: DateTime<Utc>,
) -> Result<CertAuthority> {
    let ca = CertAuthority::generate_root(
        sr_pki::ca::DEFAULT_ROOT_COMMON_NAME,
        now,
        sr_pki::ca::DEFAULT_ROOT_VALIDITY_DAYS,
    )
    .map_err(ca_error)?;
    insert_ca(conn, sealer, None, &ca).await?;
    Ok(ca)
}

/// Creates and stores the intermediate CA of a tenant, signed by the root.
///
/// # Errors
/// Generation or database failure.
pub async fn create_tenant_ca(
    conn: &mut PgConnection,
    sealer: &Sealer,
    root: &CertAuthority,
    tenant_id: Uuid,
    slug: &str,
    now: DateTime<Utc>,
) -> Result<CertAuthority> {
    let ca = CertAuthority::generate_intermediate(
        root,
        slug,
        now,
        sr_pki::ca::DEFAULT_TENANT_CA_VALIDITY_DAYS,
    )
    .map_err(ca_error)?;
    insert_ca(conn, sealer, Some(tenant_id), &ca).await?;
    Ok(ca)
}

/// What a component certificate is for.
#[derive(Debug, Clone)]
pub struct ComponentCert<'a> {
    /// CN parts.
    pub component_id: &'a str,
    /// CN partition.
    pub partition: &'a str,
    /// CN tenant slug.
    pub tenant_slug: &'a str,
    /// Platform certificates carry a SPIFFE id with this type and trust domain.
    pub spiffe: Option<(&'a str, ComponentType)>,
    /// Client, server or both.
    pub usage: LeafUsage,
    /// DNS SANs (server certificates).
    pub dns_names: Vec<String>,
    /// IP SANs (server certificates).
    pub ip_addresses: Vec<IpAddr>,
    /// Validity.
    pub validity_days: u32,
}

/// A certificate and its key, with the chain up to (not including) the root.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Leaf followed by the issuing tenant CA.
    pub chain_pem: String,
    /// The leaf's private key.
    pub key_pem: String,
}

/// Issues a component certificate from `issuer`.
///
/// # Errors
/// [`Error::Invalid`] for names that do not fit a CN, [`Error::Ca`] for generation failures.
pub fn issue(
    issuer: &CertAuthority,
    spec: &ComponentCert<'_>,
    now: DateTime<Utc>,
) -> Result<Issued> {
    let name = ComponentName::new(spec.component_id, spec.partition, spec.tenant_slug)
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let spiffe = match spec.spiffe {
        Some((trust_domain, kind)) => Some(
            SpiffeId::for_component(trust_domain, kind, &name)
                .map_err(|e| Error::Invalid(e.to_string()))?,
        ),
        None => None,
    };
    let mut leaf = LeafSpec::new(name, spec.usage, now);
    leaf.spiffe = spiffe;
    leaf.dns_names.clone_from(&spec.dns_names);
    leaf.ip_addresses.clone_from(&spec.ip_addresses);
    leaf.validity_days = spec.validity_days;
    let cert = issuer.issue_leaf(&leaf).map_err(ca_error)?;
    Ok(Issued {
        chain_pem: sr_pki::chain_pem(&cert.cert_pem, &[issuer.cert_pem()]),
        key_pem: cert.key_pem,
    })
}

/// An enrollment bundle: everything an edge sync or agent needs to reach the gateway.
#[derive(Debug, Clone, Serialize)]
pub struct Bundle {
    /// Certificate chain (`cert.pem`).
    pub certificate_pem: String,
    /// Private key (`key.pem`).
    pub private_key_pem: String,
    /// Root CA (`ca.pem`).
    pub ca_pem: String,
    /// Minimal bootstrap config (`sync.json` / `agent.json`).
    pub config: ClientBootstrap,
}

impl Bundle {
    /// Builds a bundle around an issued certificate.
    #[must_use]
    pub fn new(
        issued: Issued,
        root_pem: &str,
        component_id: &str,
        gateway_address: &str,
        server_name: &str,
    ) -> Self {
        Self {
            certificate_pem: issued.chain_pem,
            private_key_pem: issued.key_pem,
            ca_pem: root_pem.to_owned(),
            config: ClientBootstrap {
                component_id: component_id.to_owned(),
                gateway_address: gateway_address.to_owned(),
                gateway_server_name: server_name.to_owned(),
                cert_file: files::CERT.to_owned(),
                key_file: files::KEY.to_owned(),
                ca_file: files::CA.to_owned(),
            },
        }
    }
}

/// Hex key id of a tenant's CA (what its leaves carry as authority key id).
///
/// # Errors
/// Database failure.
pub async fn tenant_key_id(conn: &mut PgConnection, tenant_id: Uuid) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT key_id FROM certificate_authorities WHERE kind = 'tenant' AND tenant_id = $1",
    )
    .bind(tenant_id)
    .fetch_optional(conn)
    .await?)
}
