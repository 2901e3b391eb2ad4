//! Starts, stops and restarts source loops so that exactly the desired sources run: a source
//! whose config changed in any field is restarted, an unchanged one keeps running untouched
//! (its schedule and token cache intact), a removed one is stopped, and an empty set stops all.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use sr_core::syncconfig::SourceConfig;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::source::{Shared, SourceLoop};
use crate::state::SourceKey;

struct Running {
    config: SourceConfig,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// What [`Supervisor::apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// New sources.
    pub started: Vec<SourceKey>,
    /// Sources whose config changed.
    pub restarted: Vec<SourceKey>,
    /// Sources no longer configured.
    pub stopped: Vec<SourceKey>,
}

impl Changes {
    /// Whether nothing changed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.started.is_empty() && self.restarted.is_empty() && self.stopped.is_empty()
    }
}

/// Owns the source loops.
pub struct Supervisor {
    shared: Arc<Shared>,
    root: CancellationToken,
    loops: HashMap<SourceKey, Running>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("sources", &self.loops.len())
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    /// No loops yet; every loop is a child of `root`.
    #[must_use]
    pub fn new(shared: Arc<Shared>, root: CancellationToken) -> Self {
        Self {
            shared,
            root,
            loops: HashMap::new(),
        }
    }

    /// Makes the running loops match `desired`.
    pub fn apply(&mut self, desired: &BTreeMap<SourceKey, SourceConfig>) -> Changes {
        let mut changes = Changes::default();
        let gone: Vec<SourceKey> = self
            .loops
            .keys()
            .filter(|k| !desired.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(r) = self.loops.remove(&key) {
                r.cancel.cancel();
            }
            changes.stopped.push(key);
        }
        for (key, config) in desired {
            let previous = match self.loops.get(key) {
                Some(r) if r.config == *config => continue,
                Some(_) => {
                    let r = self.loops.remove(key);
                    r.map(|r| {
                        r.cancel.cancel();
                        r.task
                    })
                }
                None => None,
            };
            if previous.is_some() {
                changes.restarted.push(key.clone());
            } else {
                changes.started.push(key.clone());
            }
            let cancel = self.root.child_token();
            let source_loop = SourceLoop::new(self.shared.clone(), key.clone(), config.clone());
            let task = tokio::spawn(source_loop.run(cancel.clone(), previous));
            self.loops.insert(
                key.clone(),
                Running {
                    config: config.clone(),
                    cancel,
                    task,
                },
            );
        }
        self.shared
            .metrics
            .active_sources
            .set(i64::try_from(self.loops.len()).unwrap_or(i64::MAX));
        if !changes.is_empty() {
            tracing::info!(
                started = changes.started.len(),
                restarted = changes.restarted.len(),
                stopped = changes.stopped.len(),
                running = self.loops.len(),
                "Source loops updated"
            );
        }
        changes
    }

    /// Keys of the running loops, sorted.
    #[must_use]
    pub fn running(&self) -> Vec<SourceKey> {
        let mut keys: Vec<SourceKey> = self.loops.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Stops every loop and waits for them, at most `drain`.
    pub async fn stop_all(&mut self, drain: Duration) {
        let all: Vec<Running> = self.loops.drain().map(|(_, r)| r).collect();
        for r in &all {
            r.cancel.cancel();
        }
        let wait = futures::future::join_all(all.into_iter().map(|r| r.task));
        if tokio::time::timeout(drain, wait).await.is_err() {
            tracing::warn!("Source loops did not stop within the drain time");
        }
        self.shared.metrics.active_sources.set(0);
    }
}
