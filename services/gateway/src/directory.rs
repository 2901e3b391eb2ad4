//! What the gateway asks identity over NATS (tenants, enrolled components, platform
//! assignments), with short-lived caches so a busy gateway does not ask for every call.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sr_core::rpc::{
    ComponentInfo, ComponentLookupRequest, PlatformAssignment, PlatformAssignmentRequest,
    RpcErrorCode, TenantInfo, TenantLookupRequest,
};
use sr_core::subjects::identity_ops;
use sr_core::{Subjects, TenantId};
use sr_runtime::rpc::{CallError, call};

/// Largest number of entries a cache keeps before it starts over.
const CACHE_CAP: usize = 50_000;

struct Cache<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Hash + Eq + Clone, V: Clone> Cache<K, V> {
    fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, key: &K) -> Option<V> {
        let map = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    fn put(&self, key: K, value: V, ttl: Option<Duration>) {
        let mut map = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= CACHE_CAP {
            map.clear();
        }
        // A shorter ttl is expressed by back-dating the entry.
        let at = match ttl {
            Some(t) if t < self.ttl => Instant::now()
                .checked_sub(self.ttl - t)
                .unwrap_or_else(Instant::now),
            _ => Instant::now(),
        };
        map.insert(key, (at, value));
    }
}

/// Lookup failures.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// Identity does not know it.
    #[error("{0}")]
    NotFound(String),
    /// Identity did not answer in time or failed.
    #[error("identity service unavailable: {0}")]
    Unavailable(String),
}

impl From<CallError> for LookupError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Remote(r) if r.code == RpcErrorCode::NotFound => Self::NotFound(r.message),
            other => Self::Unavailable(other.to_string()),
        }
    }
}

/// Cached view of identity's answers.
pub struct Directory {
    nats: async_nats::Client,
    subjects: Subjects,
    timeout: Duration,
    negative_ttl: Duration,
    tenants: Cache<String, TenantInfo>,
    tenants_by_id: Cache<TenantId, TenantInfo>,
    components: Cache<(TenantId, String), Option<String>>,
    assignments: Cache<(String, TenantId), bool>,
}

impl Directory {
    /// A directory asking identity over `nats`.
    #[must_use]
    pub fn new(
        nats: async_nats::Client,
        subjects: Subjects,
        timeout: Duration,
        ttl: Duration,
        negative_ttl: Duration,
    ) -> Self {
        Self {
            nats,
            subjects,
            timeout,
            negative_ttl,
            tenants: Cache::new(ttl),
            tenants_by_id: Cache::new(ttl),
            components: Cache::new(ttl),
            assignments: Cache::new(ttl),
        }
    }

    /// The NATS client.
    #[must_use]
    pub fn nats(&self) -> &async_nats::Client {
        &self.nats
    }

    /// The subject names.
    #[must_use]
    pub fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    /// Request timeout.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn lookup(&self, req: TenantLookupRequest) -> Result<TenantInfo, LookupError> {
        let info: TenantInfo = call(
            &self.nats,
            self.subjects.identity_rpc(identity_ops::TENANT_LOOKUP),
            &req,
            self.timeout,
        )
        .await?;
        self.tenants.put(info.slug.clone(), info.clone(), None);
        self.tenants_by_id.put(info.tenant_id, info.clone(), None);
        Ok(info)
    }

    /// Tenant by slug.
    ///
    /// # Errors
    /// [`LookupError`].
    pub async fn tenant_by_slug(&self, slug: &str) -> Result<TenantInfo, LookupError> {
        if let Some(t) = self.tenants.get(&slug.to_owned()) {
            return Ok(t);
        }
        self.lookup(TenantLookupRequest {
            slug: slug.to_owned(),
            tenant_id: None,
        })
        .await
    }

    /// Tenant by id.
    ///
    /// # Errors
    /// [`LookupError`].
    pub async fn tenant_by_id(&self, id: TenantId) -> Result<TenantInfo, LookupError> {
        if let Some(t) = self.tenants_by_id.get(&id) {
            return Ok(t);
        }
        self.lookup(TenantLookupRequest {
            slug: String::new(),
            tenant_id: Some(id),
        })
        .await
    }

    /// Type of an enrolled component (`sync`, `agent`) or none.
    ///
    /// # Errors
    /// [`LookupError::Unavailable`].
    pub async fn component_type(
        &self,
        tenant: TenantId,
        component_id: &str,
    ) -> Result<Option<String>, LookupError> {
        let key = (tenant, component_id.to_owned());
        if let Some(t) = self.components.get(&key) {
            return Ok(t);
        }
        let info: ComponentInfo = call(
            &self.nats,
            self.subjects.identity_rpc(identity_ops::COMPONENT_LOOKUP),
            &ComponentLookupRequest {
                tenant_id: tenant,
                component_id: component_id.to_owned(),
            },
            self.timeout,
        )
        .await?;
        let ttl = info.component_type.is_none().then_some(self.negative_ttl);
        self.components.put(key, info.component_type.clone(), ttl);
        Ok(info.component_type)
    }

    /// Whether `tenant` has an enabled source assigned to platform sync `sync_component_id`.
    ///
    /// # Errors
    /// [`LookupError::Unavailable`].
    pub async fn platform_assigned(
        &self,
        sync_component_id: &str,
        tenant: TenantId,
    ) -> Result<bool, LookupError> {
        let key = (sync_component_id.to_owned(), tenant);
        if let Some(a) = self.assignments.get(&key) {
            return Ok(a);
        }
        let a: PlatformAssignment = call(
            &self.nats,
            self.subjects
                .identity_rpc(identity_ops::PLATFORM_ASSIGNMENT),
            &PlatformAssignmentRequest {
                sync_component_id: sync_component_id.to_owned(),
                tenant_id: tenant,
            },
            self.timeout,
        )
        .await?;
        let ttl = (!a.assigned).then_some(self.negative_ttl);
        self.assignments.put(key, a.assigned, ttl);
        Ok(a.assigned)
    }
}
