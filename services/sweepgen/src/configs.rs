//! Compiled sweep configs: one in-memory [`SweepIndex`] per (tenant, partition), loaded from
//! Postgres on first use, and a cache of compiled configs per agent that a change invalidates
//! only for the agents it affects.
//!
//! **Replicas.** Every replica shares the durable consumer, so each change is written to
//! Postgres by exactly one replica; every write that changes a partition's content bumps that
//! partition's generation in the same transaction. Before answering, a replica reads the
//! partition's generation (one indexed row); when its index is behind, it fetches only the rows
//! written after its generation (one consistent snapshot) and applies them incrementally,
//! invalidating the affected agents. The replica that applied a change catches up right after
//! the commit. So every replica answers from the state Postgres holds at the time of the
//! request, and `config_timestamp` comes from the shared `agent_configs` record: two replicas
//! answer identically.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::value::RawValue;
use sr_core::TenantId;
use sr_sweep::{
    Affected, CompileOptions, CompiledSweep, SourcePolicies, SweepDevice, SweepIndex, Target,
    Warning,
};
use tokio::sync::{OwnedRwLockReadGuard, RwLock};

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::store::{Delta, Store};

/// The `SweepConfig` body as JSON, borrowing the compiled targets (field names of
/// `sr_core::rpc::SweepConfigBody` and the proto `SweepConfig`).
#[derive(Serialize)]
pub struct BodyRef<'a> {
    /// Exact minimal CIDR cover.
    pub networks: &'a [String],
    /// One per address.
    pub device_targets: &'a [Cow<'a, Target>],
    /// Union of the targets' modes.
    pub sweep_modes: &'a [String],
    /// Sweep interval, seconds.
    pub sweep_interval_sec: i32,
    /// Union of the targets' ports.
    pub ports: &'a [i32],
}

impl<'a> BodyRef<'a> {
    /// The body of a compiled config.
    #[must_use]
    pub fn of(c: &'a CompiledSweep<'a>) -> Self {
        Self {
            networks: &c.networks,
            device_targets: &c.device_targets,
            sweep_modes: &c.sweep_modes,
            sweep_interval_sec: c.sweep_interval_sec,
            ports: &c.ports,
        }
    }
}

/// One agent's compiled config, as cached.
#[derive(Debug)]
pub struct CompiledEntry {
    /// Content hash.
    pub config_version: String,
    /// Unix seconds since this version is answered (set by the store; 0 until then).
    pub config_timestamp: i64,
    /// Targets in the config.
    pub target_count: usize,
    /// What the compiler dropped.
    pub warnings: Arc<Vec<Warning>>,
    /// The `SweepConfig` body as JSON; `None` when it is larger than the reply limit.
    pub body: Option<Box<RawValue>>,
    /// The partition generation it was compiled at.
    pub generation: i64,
}

/// A writer that refuses to grow beyond a limit (so an oversized config costs one limit's
/// worth of serialisation, not the whole config).
struct Capped {
    buf: Vec<u8>,
    limit: usize,
}

impl std::io::Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            return Err(std::io::Error::other("reply limit reached"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Serialises a body within `limit` bytes.
fn body_json(compiled: &CompiledSweep<'_>, limit: usize) -> Option<Box<RawValue>> {
    let mut w = Capped {
        buf: Vec::with_capacity(limit.min(64 * 1024)),
        limit,
    };
    serde_json::to_writer(&mut w, &BodyRef::of(compiled)).ok()?;
    w.flush().ok()?;
    let text = String::from_utf8(w.buf).ok()?;
    RawValue::from_string(text).ok()
}

/// The in-memory state of one (tenant, partition): its index, the generation it reflects,
/// and the compiled configs of its agents. Pure: no I/O (the benchmark drives it directly).
#[derive(Debug)]
pub struct PartitionState {
    index: SweepIndex,
    generation: i64,
    configs: Mutex<HashMap<String, Arc<CompiledEntry>>>,
}

impl PartitionState {
    /// A state holding `devices` as of `generation`.
    #[must_use]
    pub fn load(
        generation: i64,
        devices: Vec<SweepDevice>,
        policies: SourcePolicies,
        options: CompileOptions,
    ) -> Self {
        Self {
            index: SweepIndex::from_devices(devices, policies, options),
            generation,
            configs: Mutex::new(HashMap::new()),
        }
    }

    /// The generation the state reflects.
    #[must_use]
    pub fn generation(&self) -> i64 {
        self.generation
    }

    /// Devices held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no device is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Applies changes (`None` = removed) and the current policies, moves to `generation`,
    /// and drops the cached configs of the affected agents only. Returns how many cached
    /// configs were dropped.
    pub fn apply<I>(&mut self, generation: i64, changes: I, policies: SourcePolicies) -> usize
    where
        I: IntoIterator<Item = (String, Option<SweepDevice>)>,
    {
        let mut all = matches!(self.index.set_policies(policies), Affected::AllAgents);
        let mut agents = std::collections::BTreeSet::new();
        for (uid, device) in changes {
            let affected = match device {
                Some(d) => self.index.upsert(d),
                None => self.index.remove(&uid),
            };
            match affected {
                Affected::Nothing => {}
                Affected::AllAgents => all = true,
                Affected::Agents(a) => agents.extend(a),
            }
        }
        self.generation = generation;
        let configs = self
            .configs
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        let before = configs.len();
        if all {
            configs.clear();
        } else {
            for agent in &agents {
                configs.remove(agent);
            }
        }
        before - configs.len()
    }

    /// The cached config of `agent_id`, if any.
    #[must_use]
    pub fn cached(&self, agent_id: &str) -> Option<Arc<CompiledEntry>> {
        self.configs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(agent_id.trim())
            .cloned()
    }

    /// Compiles `agent_id`'s config (not cached yet: see [`PartitionState::insert`]), with its
    /// body serialised when it fits in `body_limit` bytes.
    #[must_use]
    pub fn compile(&self, agent_id: &str, body_limit: usize) -> CompiledEntry {
        let compiled = self.index.compile_for(agent_id);
        let body = body_json(&compiled, body_limit);
        let CompiledSweep {
            device_targets,
            config_version,
            warnings,
            ..
        } = compiled;
        CompiledEntry {
            config_version,
            config_timestamp: 0,
            target_count: device_targets.len(),
            warnings: Arc::new(warnings),
            body,
            generation: self.generation,
        }
    }

    /// Serialises `agent_id`'s whole config (no size limit) with `f`, borrowing the index.
    pub fn with_compiled<T>(&self, agent_id: &str, f: impl FnOnce(&CompiledSweep<'_>) -> T) -> T {
        f(&self.index.compile_for(agent_id))
    }

    /// Caches `entry` for `agent_id` when it was compiled at the current generation (an
    /// entry compiled before a change may be stale and is only used once).
    pub fn insert(&self, agent_id: &str, entry: Arc<CompiledEntry>) -> bool {
        if entry.generation != self.generation {
            return false;
        }
        self.configs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(agent_id.trim().to_owned(), entry);
        true
    }

    /// Cached configs.
    #[must_use]
    pub fn cached_count(&self) -> usize {
        self.configs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

type PartitionKey = (TenantId, String);

type StateLock = Arc<RwLock<Option<PartitionState>>>;

/// One partition's slot: `None` until first loaded.
#[derive(Debug, Default)]
struct Slot {
    state: StateLock,
}

/// What a catch-up needs, detached from `Configs` so it can run as its own task.
#[derive(Debug, Clone)]
struct Loader {
    store: Store,
    options: CompileOptions,
    metrics: Metrics,
}

/// Every loaded partition of every tenant, kept fresh from Postgres.
#[derive(Debug)]
pub struct Configs {
    loader: Loader,
    body_limit: usize,
    wait: Duration,
    slots: Mutex<HashMap<PartitionKey, Arc<Slot>>>,
}

impl Configs {
    /// Configs compiled with `options`, bodies kept up to `body_limit` bytes; a request waits
    /// at most `wait` for a partition being loaded (then it is told to retry).
    #[must_use]
    pub fn new(
        store: Store,
        options: CompileOptions,
        body_limit: usize,
        wait: Duration,
        metrics: Metrics,
    ) -> Self {
        Self {
            loader: Loader {
                store,
                options,
                metrics,
            },
            body_limit,
            wait,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The largest body kept for a reply, bytes.
    #[must_use]
    pub fn body_limit(&self) -> usize {
        self.body_limit
    }

    fn slot(&self, tenant: TenantId, partition: &str) -> Arc<Slot> {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((tenant, partition.to_owned()))
            .or_default()
            .clone()
    }

    fn loaded_slot(&self, tenant: TenantId, partition: &str) -> Option<Arc<Slot>> {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(tenant, partition.to_owned()))
            .cloned()
    }

    /// A read guard on the slot, waiting at most `wait` (a load holds the write lock).
    async fn read(
        &self,
        slot: &Slot,
        tenant: TenantId,
        partition: &str,
    ) -> Result<OwnedRwLockReadGuard<Option<PartitionState>>> {
        tokio::time::timeout(self.wait, slot.state.clone().read_owned())
            .await
            .map_err(|_| Error::Loading {
                tenant,
                partition: partition.to_owned(),
            })
    }

    /// The config of `agent_id` in (tenant, partition), current as of this call: from the
    /// cache when the partition did not change for this agent, compiled otherwise.
    ///
    /// # Errors
    /// Database failure; [`Error::Loading`] when the partition is still being loaded after
    /// the configured wait (the load carries on).
    pub async fn entry(
        &self,
        tenant: TenantId,
        partition: &str,
        agent_id: &str,
    ) -> Result<Arc<CompiledEntry>> {
        let slot = self.slot(tenant, partition);
        let current = self
            .loader
            .store
            .generation(tenant, partition)
            .await?
            .current;
        let fresh = {
            let guard = self.read(&slot, tenant, partition).await?;
            match guard.as_ref() {
                Some(state) if state.generation() >= current => {
                    if let Some(hit) = state.cached(agent_id) {
                        self.loader.metrics.cache_hits.inc();
                        return Ok(hit);
                    }
                    true
                }
                _ => false,
            }
        };
        if !fresh {
            self.catch_up_bounded(&slot, tenant, partition, current)
                .await?;
        }
        let guard = self.read(&slot, tenant, partition).await?;
        if let Some(hit) = guard.as_ref().and_then(|s| s.cached(agent_id)) {
            self.loader.metrics.cache_hits.inc();
            return Ok(hit);
        }
        // Compiling a large partition takes a while: off the async workers.
        let (agent, limit) = (agent_id.to_owned(), self.body_limit);
        let started = Instant::now();
        let compiled =
            tokio::task::spawn_blocking(move || guard.as_ref().map(|s| s.compile(&agent, limit)))
                .await
                .map_err(|e| Error::Internal(format!("compile task failed: {e}")))?;
        let Some(mut entry) = compiled else {
            return Err(Error::Internal("partition state missing after load".into()));
        };
        let m = &self.loader.metrics;
        m.compiles.inc();
        m.compile_seconds.observe(started.elapsed().as_secs_f64());
        let since = self
            .loader
            .store
            .record_version(
                tenant,
                partition,
                agent_id.trim(),
                &entry.config_version,
                entry.generation,
            )
            .await?;
        entry.config_timestamp = since.timestamp();
        let entry = Arc::new(entry);
        if let Some(state) = self.read(&slot, tenant, partition).await?.as_ref() {
            state.insert(agent_id, entry.clone());
        }
        Ok(entry)
    }

    /// Runs `f` on the whole compiled config of `agent_id` (for the read API, whose answer has
    /// no size limit), after [`Configs::entry`] made the partition current.
    ///
    /// # Errors
    /// [`Error::Loading`] as for [`Configs::entry`].
    pub async fn with_full_config<T, F>(
        &self,
        tenant: TenantId,
        partition: &str,
        agent_id: &str,
        f: F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&CompiledSweep<'_>) -> T + Send + 'static,
    {
        let slot = self.slot(tenant, partition);
        let guard = self.read(&slot, tenant, partition).await?;
        let agent = agent_id.to_owned();
        tokio::task::spawn_blocking(move || guard.as_ref().map(|s| s.with_compiled(&agent, f)))
            .await
            .map_err(|e| Error::Internal(format!("compile task failed: {e}")))?
            .ok_or_else(|| Error::Internal("partition not loaded".into()))
    }

    /// Brings a loaded partition up to Postgres (after this replica committed a change to it);
    /// a partition never requested stays unloaded.
    ///
    /// # Errors
    /// Database failure.
    pub async fn refresh(&self, tenant: TenantId, partition: &str, generation: i64) -> Result<()> {
        let Some(slot) = self.loaded_slot(tenant, partition) else {
            return Ok(());
        };
        if slot.state.read().await.is_none() {
            return Ok(());
        }
        let lock = slot.state.clone();
        self.loader
            .catch_up(lock, tenant, partition.to_owned(), generation)
            .await
    }

    /// Runs the catch-up as its own task and waits for it at most `wait`: a long load goes on
    /// after the request is told to retry, and the next request finds it done.
    async fn catch_up_bounded(
        &self,
        slot: &Slot,
        tenant: TenantId,
        partition: &str,
        generation: i64,
    ) -> Result<()> {
        let (loader, lock, p) = (
            self.loader.clone(),
            slot.state.clone(),
            partition.to_owned(),
        );
        let task = tokio::spawn(async move { loader.catch_up(lock, tenant, p, generation).await });
        match tokio::time::timeout(self.wait, task).await {
            Ok(joined) => joined.map_err(|e| Error::Internal(format!("load task failed: {e}")))?,
            Err(_) => Err(Error::Loading {
                tenant,
                partition: partition.to_owned(),
            }),
        }
    }

    /// The generation a loaded partition reflects (tests).
    pub async fn loaded_generation(&self, tenant: TenantId, partition: &str) -> Option<i64> {
        let slot = self.loaded_slot(tenant, partition)?;
        slot.state
            .read()
            .await
            .as_ref()
            .map(PartitionState::generation)
    }
}

impl Loader {
    /// Makes the state reflect at least `generation`: a full load when there is none (or
    /// tombstones it may have missed were purged), otherwise the changed rows only.
    async fn catch_up(
        &self,
        lock: StateLock,
        tenant: TenantId,
        partition: String,
        generation: i64,
    ) -> Result<()> {
        let mut guard = lock.write_owned().await;
        if let Some(state) = guard.as_mut() {
            if state.generation() >= generation {
                return Ok(());
            }
            match self
                .store
                .delta(tenant, &partition, state.generation())
                .await?
            {
                Delta::Changes {
                    generation,
                    changes,
                    policies,
                } => {
                    let dropped = state.apply(generation, changes, policies);
                    self.metrics.catch_ups.inc();
                    tracing::debug!(%tenant, partition, generation, dropped, "Partition caught up");
                    return Ok(());
                }
                Delta::Reload => {}
            }
        }
        let started = Instant::now();
        let snapshot = self.store.load(tenant, &partition).await?;
        let (devices, generation) = (snapshot.devices.len(), snapshot.generation);
        let options = self.options.clone();
        // Building the index of a large partition takes seconds: off the async workers.
        let state = tokio::task::spawn_blocking(move || {
            PartitionState::load(
                snapshot.generation,
                snapshot.devices,
                snapshot.policies,
                options,
            )
        })
        .await
        .map_err(|e| Error::Internal(format!("index build failed: {e}")))?;
        *guard = Some(state);
        self.metrics.partition_loads.inc();
        tracing::info!(
            %tenant,
            partition,
            generation,
            devices,
            took_ms = duration_ms(started.elapsed()),
            "Partition loaded"
        );
        Ok(())
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
