//! Platform bootstrap: on first start creates the platform tenant (random non-nil id), the
//! root and platform CAs, the platform sync record and the admin token; on every start
//! verifies that state against the configuration and (re)writes the output directory:
//! gateway TLS files, the platform sync bundle and the admin token. Idempotent, and safe
//! with several replicas starting at once (a transaction-scoped advisory lock).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rand::RngCore as _;
use sha2::Digest as _;
use sqlx::{PgPool, Row as _};
use sr_core::TenantId;
use sr_core::bootstrap::files;
use sr_pki::{CertAuthority, ComponentType, LeafUsage};
use uuid::Uuid;

use crate::ca::{self, ComponentCert};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::seal::Sealer;

/// Component id of the platform sync.
pub const PLATFORM_SYNC_COMPONENT: &str = "platform-sync";
/// Partition of platform components.
pub const PLATFORM_PARTITION: &str = "platform";
/// Component id of the gateway's server certificate.
pub const GATEWAY_COMPONENT: &str = "gateway";

/// Paths inside the output directory.
pub mod paths {
    /// Admin API token.
    pub const ADMIN_TOKEN: &str = "admin-token";
    /// Root CA certificate.
    pub const ROOT_CA: &str = "root-ca.pem";
    /// Generated encryption key (dev mode only).
    pub const DEV_ENCRYPTION_KEY: &str = "encryption.key";
    /// Gateway TLS directory.
    pub const GATEWAY_DIR: &str = "gateway";
    /// Gateway server certificate chain.
    pub const GATEWAY_CERT: &str = "server.pem";
    /// Gateway server key.
    pub const GATEWAY_KEY: &str = "server-key.pem";
    /// CA the gateway verifies clients against (the root).
    pub const GATEWAY_CLIENT_CA: &str = "client-ca.pem";
    /// Platform sync bundle directory.
    pub const PLATFORM_SYNC_DIR: &str = "platform-sync";
}

/// The platform as bootstrapped.
#[derive(Debug, Clone)]
pub struct Platform {
    /// Platform tenant id.
    pub tenant_id: TenantId,
    /// Reserved slug.
    pub slug: String,
    /// SPIFFE trust domain.
    pub trust_domain: String,
    /// sha256 hex of the admin tokens accepted.
    pub admin_token_hashes: Vec<String>,
    /// Root CA certificate PEM.
    pub root_pem: String,
}

fn sha256_hex(text: &str) -> String {
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// sha256 hex of a bearer token, as stored.
#[must_use]
pub fn token_hash(token: &str) -> String {
    sha256_hex(token)
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Writes `contents` to `path` atomically (temp file + rename), mode 0600 for secrets.
pub(crate) fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    let tmp = path.with_extension(format!("tmp-{}", Uuid::new_v4().simple()));
    std::fs::write(&tmp, contents)
        .map_err(|e| Error::io(format!("cannot write {}", tmp.display()), e))?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(format!("cannot restrict {}", tmp.display()), e))?;
    }
    #[cfg(not(unix))]
    let _ = secret;
    std::fs::rename(&tmp, path)
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}

/// Resolves the encryption key: configured, from a file, or (dev mode) generated once into
/// the output directory.
///
/// # Errors
/// [`Error::Startup`] when no key is available or it is malformed.
pub fn sealer(cfg: &Config) -> Result<Sealer> {
    let s = &cfg.secrets;
    let key = if !s.encryption_key.is_empty() {
        s.encryption_key.clone()
    } else if !s.encryption_key_file.is_empty() {
        std::fs::read_to_string(&s.encryption_key_file).map_err(|e| {
            Error::io(
                format!("cannot read encryption key file {}", s.encryption_key_file),
                e,
            )
        })?
    } else if s.dev_mode {
        let path = cfg.bootstrap.output_dir.join(paths::DEV_ENCRYPTION_KEY);
        match std::fs::read_to_string(&path) {
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let k = Sealer::generate_key();
                write_file(&path, k.as_bytes(), true)?;
                tracing::warn!(path = %path.display(), "Dev mode: generated an encryption key; never use this in production");
                k
            }
            Err(e) => return Err(Error::io(format!("cannot read {}", path.display()), e)),
        }
    } else {
        return Err(Error::Startup(
            "no encryption key configured and dev mode is off".to_owned(),
        ));
    };
    Sealer::from_base64(&key).map_err(|e| Error::Startup(e.to_string()))
}

/// Runs the bootstrap.
///
/// # Errors
/// [`Error::Startup`] when the stored platform disagrees with the configuration, the
/// encryption key cannot open the stored CA keys, or the output cannot be written.
pub async fn run(
    pool: &PgPool,
    sealer: &Sealer,
    cfg: &Config,
    now: DateTime<Utc>,
) -> Result<Platform> {
    let b = &cfg.bootstrap;
    let mut tx = pool.begin().await?;
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':sr-identity-bootstrap'))",
    )
    .execute(&mut *tx)
    .await?;
    let existing = sqlx::query(
        "SELECT p.platform_tenant_id, p.trust_domain, p.admin_token_sha256, t.slug
         FROM platform_state p JOIN tenants t ON t.id = p.platform_tenant_id",
    )
    .fetch_optional(&mut *tx)
    .await?;
    let configured_id: Option<TenantId> = if b.platform_tenant_id.is_empty() {
        None
    } else {
        Some(
            b.platform_tenant_id
                .parse()
                .map_err(|e| Error::Startup(format!("bootstrap.platform_tenant_id: {e}")))?,
        )
    };

    let mut new_token = None;
    let (tenant_id, trust_domain, stored_hash, root, platform_ca) = match existing {
        Some(row) => {
            let id: Uuid = row.try_get("platform_tenant_id")?;
            let tenant_id = TenantId::new(id)
                .map_err(|e| Error::Startup(format!("stored platform tenant id: {e}")))?;
            let slug: String = row.try_get("slug")?;
            if let Some(c) = configured_id
                && c != tenant_id
            {
                return Err(Error::Startup(format!(
                    "bootstrap.platform_tenant_id is {c} but the platform tenant was created as {tenant_id}"
                )));
            }
            if slug != b.platform_slug {
                return Err(Error::Startup(format!(
                    "bootstrap.platform_slug is {:?} but the platform tenant was created with slug {slug:?}",
                    b.platform_slug
                )));
            }
            let root = ca::root(&mut tx, sealer).await.map_err(|e| {
                Error::Startup(format!("cannot open the stored root CA (is this the encryption key it was created with?): {e}"))
            })?;
            let platform_ca = ca::tenant(&mut tx, sealer, id).await?;
            (
                tenant_id,
                row.try_get::<String, _>("trust_domain")?,
                row.try_get::<String, _>("admin_token_sha256")?,
                root,
                platform_ca,
            )
        }
        None => {
            let tenant_id = configured_id.unwrap_or_else(TenantId::random);
            let clash: Option<String> =
                sqlx::query_scalar("SELECT slug FROM tenants WHERE lower(slug) = lower($1)")
                    .bind(&b.platform_slug)
                    .fetch_optional(&mut *tx)
                    .await?;
            if clash.is_some() {
                return Err(Error::Startup(format!(
                    "a tenant already uses the reserved slug {:?}",
                    b.platform_slug
                )));
            }
            sqlx::query("INSERT INTO tenants (id, slug, name, is_platform) VALUES ($1, $2, 'Platform', TRUE)")
                .bind(tenant_id.as_uuid())
                .bind(&b.platform_slug)
                .execute(&mut *tx)
                .await?;
            let root = ca::create_root(&mut tx, sealer, now).await?;
            let platform_ca = ca::create_tenant_ca(
                &mut tx,
                sealer,
                &root,
                tenant_id.as_uuid(),
                &b.platform_slug,
                now,
            )
            .await?;
            let token = if cfg.secrets.admin_token.is_empty() {
                let t = random_token();
                new_token = Some(t.clone());
                t
            } else {
                cfg.secrets.admin_token.clone()
            };
            let hash = token_hash(&token);
            sqlx::query("INSERT INTO platform_state (platform_tenant_id, trust_domain, admin_token_sha256) VALUES ($1, $2, $3)")
                .bind(tenant_id.as_uuid())
                .bind(&b.trust_domain)
                .bind(&hash)
                .execute(&mut *tx)
                .await?;
            tracing::info!(platform_tenant_id = %tenant_id, "Platform bootstrapped");
            (tenant_id, b.trust_domain.clone(), hash, root, platform_ca)
        }
    };

    if b.platform_sync {
        sqlx::query(
            "INSERT INTO sync_services (id, tenant_id, component_id, partition, name, service_type, is_platform_sync, capabilities)
             VALUES ($1, $2, $3, $4, 'Platform Sync', 'saas', TRUE, ARRAY['sync'])
             ON CONFLICT (tenant_id, component_id) DO NOTHING",
        )
        .bind(Uuid::new_v4())
        .bind(tenant_id.as_uuid())
        .bind(PLATFORM_SYNC_COMPONENT)
        .bind(PLATFORM_PARTITION)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;

    let out = &b.output_dir;
    if let Some(token) = &new_token {
        write_file(&out.join(paths::ADMIN_TOKEN), token.as_bytes(), true)?;
    } else if !out.join(paths::ADMIN_TOKEN).exists() && cfg.secrets.admin_token.is_empty() {
        tracing::warn!(
            path = %out.join(paths::ADMIN_TOKEN).display(),
            "The admin token file is missing; set secrets.admin_token to regain admin access"
        );
    }
    write_file(&out.join(paths::ROOT_CA), root.cert_pem().as_bytes(), false)?;
    write_gateway_files(cfg, &trust_domain, &root, &platform_ca, now)?;
    if b.platform_sync {
        write_platform_sync_bundle(cfg, &trust_domain, &root, &platform_ca, now)?;
    }

    let mut hashes = vec![stored_hash];
    if !cfg.secrets.admin_token.is_empty() {
        hashes.push(token_hash(&cfg.secrets.admin_token));
    }
    Ok(Platform {
        tenant_id,
        slug: b.platform_slug.clone(),
        trust_domain,
        admin_token_hashes: hashes,
        root_pem: root.cert_pem().to_owned(),
    })
}

/// Whether the chain at `cert_path` (with its key) can be kept: present, issued by `issuer`,
/// and not within the renewal window.
fn reusable(
    cert_path: &Path,
    key_path: &Path,
    issuer: &CertAuthority,
    cfg: &Config,
    now: DateTime<Utc>,
) -> bool {
    let (Ok(chain), true) = (std::fs::read_to_string(cert_path), key_path.exists()) else {
        return false;
    };
    if !chain.contains(issuer.cert_pem().trim()) {
        return false;
    }
    let Some(end) = chain.find("-----END CERTIFICATE-----") else {
        return false;
    };
    let leaf = &chain[..end + "-----END CERTIFICATE-----".len()];
    matches!(
        sr_pki::needs_reissue(leaf, now, cfg.bootstrap.renew_before_days),
        Ok(false)
    )
}

fn write_gateway_files(
    cfg: &Config,
    trust_domain: &str,
    root: &CertAuthority,
    platform_ca: &CertAuthority,
    now: DateTime<Utc>,
) -> Result<()> {
    let b = &cfg.bootstrap;
    let dir = b.output_dir.join(paths::GATEWAY_DIR);
    let cert_path = dir.join(paths::GATEWAY_CERT);
    let key_path = dir.join(paths::GATEWAY_KEY);
    write_file(
        &dir.join(paths::GATEWAY_CLIENT_CA),
        root.cert_pem().as_bytes(),
        false,
    )?;
    if reusable(&cert_path, &key_path, platform_ca, cfg, now) {
        return Ok(());
    }
    let ips = b
        .gateway_ip_addresses
        .iter()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    let issued = ca::issue(
        platform_ca,
        &ComponentCert {
            component_id: GATEWAY_COMPONENT,
            partition: PLATFORM_PARTITION,
            tenant_slug: &b.platform_slug,
            spiffe: Some((trust_domain, ComponentType::Gateway)),
            usage: LeafUsage::Server,
            dns_names: b.gateway_dns_names.clone(),
            ip_addresses: ips,
            validity_days: b.leaf_validity_days,
        },
        now,
    )?;
    write_file(&key_path, issued.key_pem.as_bytes(), true)?;
    write_file(&cert_path, issued.chain_pem.as_bytes(), false)?;
    tracing::info!(path = %cert_path.display(), "Gateway server certificate issued");
    Ok(())
}

/// Writes a bundle directory: `cert.pem`, `key.pem`, `ca.pem` and the bootstrap config.
pub(crate) fn write_bundle(dir: &Path, bundle: &ca::Bundle, config_name: &str) -> Result<()> {
    write_file(
        &dir.join(files::KEY),
        bundle.private_key_pem.as_bytes(),
        true,
    )?;
    write_file(
        &dir.join(files::CERT),
        bundle.certificate_pem.as_bytes(),
        false,
    )?;
    write_file(&dir.join(files::CA), bundle.ca_pem.as_bytes(), false)?;
    let json =
        serde_json::to_vec_pretty(&bundle.config).map_err(|e| Error::Startup(e.to_string()))?;
    write_file(&dir.join(config_name), &json, false)
}

fn write_platform_sync_bundle(
    cfg: &Config,
    trust_domain: &str,
    root: &CertAuthority,
    platform_ca: &CertAuthority,
    now: DateTime<Utc>,
) -> Result<()> {
    let b = &cfg.bootstrap;
    let dir: PathBuf = b.output_dir.join(paths::PLATFORM_SYNC_DIR);
    if reusable(
        &dir.join(files::CERT),
        &dir.join(files::KEY),
        platform_ca,
        cfg,
        now,
    ) && dir.join(files::SYNC_CONFIG).exists()
    {
        return Ok(());
    }
    let issued = ca::issue(
        platform_ca,
        &ComponentCert {
            component_id: PLATFORM_SYNC_COMPONENT,
            partition: PLATFORM_PARTITION,
            tenant_slug: &b.platform_slug,
            spiffe: Some((trust_domain, ComponentType::Sync)),
            usage: LeafUsage::Client,
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            validity_days: b.leaf_validity_days,
        },
        now,
    )?;
    let bundle = ca::Bundle::new(
        issued,
        root.cert_pem(),
        PLATFORM_SYNC_COMPONENT,
        &b.gateway_address,
        &b.gateway_server_name,
    );
    write_bundle(&dir, &bundle, files::SYNC_CONFIG)?;
    tracing::info!(path = %dir.display(), "Platform sync bundle issued");
    Ok(())
}
