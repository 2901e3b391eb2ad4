//! Postgres: one pool per service, confined to the service's own schema.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection as _, PgPool};

/// Database settings of a service.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `postgres://…` URL (`DATABASE_URL`).
    pub url: String,
    /// Schema the service owns; created if missing, and the pool's `search_path`.
    pub schema: String,
    /// Pool size.
    pub max_connections: u32,
    /// How long to wait for a pooled connection, in seconds.
    pub acquire_timeout_secs: u64,
}

impl DatabaseConfig {
    /// Defaults for a service owning `schema`.
    #[must_use]
    pub fn for_schema(schema: &str) -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/postgres".to_owned(),
            schema: schema.to_owned(),
            max_connections: 8,
            acquire_timeout_secs: 10,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self::for_schema("public")
    }
}

impl std::fmt::Debug for DatabaseConfig {
    // The URL may carry a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
            .field("schema", &self.schema)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

/// The URL with any password replaced by `***`.
#[must_use]
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Database failures at start.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// Schema name unusable as an identifier.
    #[error("invalid schema name {0:?}: use lower-case letters, digits and underscores")]
    InvalidSchema(String),
    /// Bad URL.
    #[error("invalid database URL: {0}")]
    Url(#[source] sqlx::Error),
    /// Could not connect or query.
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

fn valid_schema(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

/// Connects a pool whose connections use `cfg.schema`, creating the schema if needed, and
/// applies `migrator` inside it.
///
/// # Errors
/// [`DbError`] for a bad schema name or URL, an unreachable server, or a failed migration.
pub async fn connect_and_migrate(
    cfg: &DatabaseConfig,
    migrator: &sqlx::migrate::Migrator,
) -> Result<PgPool, DbError> {
    if !valid_schema(&cfg.schema) {
        return Err(DbError::InvalidSchema(cfg.schema.clone()));
    }
    let base: PgConnectOptions = cfg.url.parse().map_err(DbError::Url)?;
    let base = base.log_statements(tracing::log::LevelFilter::Trace);
    {
        let mut conn = base.connect().await?;
        // Two replicas starting together may race on CREATE SCHEMA; the loser sees a
        // duplicate error even with IF NOT EXISTS, which is harmless.
        if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(format!(
            // The name was checked by `valid_schema`, so quoting it is safe.
            "CREATE SCHEMA IF NOT EXISTS \"{}\"",
            cfg.schema
        )))
        .execute(&mut conn)
        .await
        {
            let duplicate = e
                .as_database_error()
                .and_then(|d| d.code())
                .is_some_and(|c| c == "23505" || c == "42P06");
            if !duplicate {
                return Err(e.into());
            }
        }
    }
    // JIT compilation is for long analytic queries; the services' statements are short, and
    // compiling one of them (a scan of a million rows, say) took longer than running it.
    let opts = base.options([("search_path", cfg.schema.as_str()), ("jit", "off")]);
    let pool = PgPoolOptions::new()
        .max_connections(cfg.max_connections.max(1))
        .acquire_timeout(Duration::from_secs(cfg.acquire_timeout_secs.max(1)))
        // A connection keeps its protocol buffers at the size of the largest message it has
        // sent or received (a batch statement binding arrays of thousands of rows is several
        // megabytes), and the pool hands its idle connections out in turn, so every one of them
        // would grow to that size and stay there. Released connections give the excess back.
        .after_release(|conn, _| {
            Box::pin(async move {
                conn.shrink_buffers();
                Ok(true)
            })
        })
        .connect_with(opts)
        .await?;
    migrator.run(&pool).await?;
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_appear_in_debug_output() {
        let mut cfg = DatabaseConfig::for_schema("identity");
        cfg.url = "postgres://app:s3cret@db:5432/sr".into();
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("postgres://app:***@db:5432/sr"), "{shown}");
        assert_eq!(
            redact_url("postgres://postgres@h/db"),
            "postgres://postgres@h/db"
        );
    }

    #[test]
    fn schema_names_are_checked() {
        assert!(valid_schema("identity"));
        assert!(valid_schema("t_identity_0af3"));
        for bad in ["", "Identity", "a-b", "1abc", "x;drop", &"a".repeat(64)] {
            assert!(!valid_schema(bad), "{bad}");
        }
    }
}
