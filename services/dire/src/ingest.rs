//! The device-update consumer: pulls bounded batches from the durable JetStream consumer,
//! decodes each message (one tenant's JSON array of DeviceUpdate), reconciles the updates per
//! (tenant, partition) in one transaction each, and acknowledges a message only after every
//! transaction holding its updates committed.
//!
//! Dispositions: an undecodable message (not a JSON array, a subject without a tenant, a
//! tenant header that contradicts the subject) is terminated at once, counted and reported as
//! an OCSF event. A transient database failure naks with a delay, without limit. Any other
//! failure is isolated to its message (its group is retried message by message) and naks
//! until the message's `max_deliver`-th delivery, which terminates and reports it.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{self, AckKind};
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use sqlx::PgPool;
use sr_core::{Subjects, TenantId};
use sr_reconcile::{
    Claim, ContentDigest, DeviceUid, Key, KeyFilter, KnownState, Lookups, Memo, Observation,
    Outcome, ReconcileConfig, Settled, claim, decode_updates, demote_touched, plan_skips_claims,
    reconcile, required_lookups, required_lookups_claimed, settled_by,
};
use sr_runtime::jetstream::headers;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::config::{ConsumerConfig, OutboxConfig};
use crate::error::{Error, Result};
use crate::inventory::{self, EVENT_KIND};
use crate::metrics::Metrics;
use crate::store::{self, Revisions};

/// Everything the consumer needs.
pub struct Ingest {
    /// Pool on the `dire` schema.
    pub pool: PgPool,
    /// Consumer settings.
    pub consumer: ConsumerConfig,
    /// Outbox settings (message size).
    pub outbox: OutboxConfig,
    /// Subject names.
    pub subjects: Subjects,
    /// Reconciliation tunables.
    pub reconcile: ReconcileConfig,
    /// Metrics.
    pub metrics: Metrics,
    /// Woken after each commit that wrote outbox rows.
    pub outbox_notify: Arc<Notify>,
    /// Rows inserted since the planner statistics were last refreshed.
    pub analyze: Arc<std::sync::Mutex<Growth>>,
    /// Skip updates that settled devices already reflect (`reconcile.skip_settled`).
    pub skip_settled: bool,
    /// Decide a scope's next group while one is written (`reconcile.decide_ahead`).
    pub decide_ahead: bool,
    /// Keys the scopes' [`KeyFilter`]s may hold together (`reconcile.key_filter_max_keys`).
    pub key_filters: KeyBudget,
    /// Settled devices per (tenant, partition) scope.
    pub memos: Arc<std::sync::Mutex<HashMap<(TenantId, String), ScopeMemo>>>,
}

/// What this replica remembers of a scope's settled devices (see [`sr_reconcile::Memo`]).
#[derive(Debug)]
pub struct ScopeMemo {
    /// The scope epoch after this replica's last transaction there: while the stored epoch is
    /// still this, nobody else wrote the scope and the memo is exact.
    epoch: i64,
    /// True when the memo holds every settled device of the scope (loaded whole, then kept up
    /// to date); false after another writer was seen, when a device the memo does not know is
    /// looked up in Postgres.
    complete: bool,
    memo: Memo,
    /// Every key the scope's devices may hold, while this replica has seen every write to the
    /// scope since it was empty (and the filters are within their budget); else `None`.
    keys: Option<ScopeKeys>,
}

impl ScopeMemo {
    /// Learns a decided outcome: the devices it leaves `settled`, and the keys it writes. The
    /// key filter is dropped when the filters of all scopes would hold more than `max` keys.
    fn learn(
        &mut self,
        outcome: &Outcome,
        settled: Vec<(DeviceUid, Settled)>,
        max: usize,
        (tenant, partition): &(TenantId, String),
    ) {
        self.memo.record(outcome, settled);
        let Some(keys) = &mut self.keys else {
            return;
        };
        let before = keys.filter.len();
        keys.filter.record(outcome);
        let added = keys.filter.len() - before;
        let used = keys.used.fetch_add(added, Ordering::Relaxed) + added;
        if used > max {
            tracing::info!(
                tenant_id = %tenant,
                partition,
                keys = keys.filter.len(),
                budget = max,
                "Key filters are over budget: this scope's new devices are looked up in Postgres from now on"
            );
            // Dropping it gives its keys back to the budget.
            self.keys = None;
        }
    }
}

impl Preload {
    /// What the load found, if it is what loading `lookups` finds now, with the scope at
    /// `epoch` (the epoch the write left, and nobody wrote the scope since).
    async fn found(self, lookups: &Lookups, epoch: i64) -> Option<KnownState> {
        let snapshot = match self.loading.await {
            Ok(Ok(snapshot)) => snapshot,
            Ok(Err(e)) => {
                // The transaction loads them itself.
                tracing::debug!(error = %e, "Cannot load the next group's devices ahead");
                return None;
            }
            Err(e) => {
                tracing::error!(error = %e, "Loading the next group's devices ahead panicked");
                return None;
            }
        };
        // Loaded after the write's commit, or before it where the write changed nothing.
        let valid = snapshot.epoch == epoch
            || (Some(snapshot.epoch) == self.before
                && lookups.unaffected_by(&self.written, &snapshot.state));
        valid.then_some(snapshot.state)
    }
}

/// How many keys the [`KeyFilter`]s of all scopes may hold together, and how many they hold.
#[derive(Debug, Clone, Default)]
pub struct KeyBudget {
    max: usize,
    used: Arc<AtomicUsize>,
}

impl KeyBudget {
    /// A budget of `max` keys (0: no filters).
    #[must_use]
    pub fn new(max: usize) -> Self {
        Self {
            max,
            used: Arc::default(),
        }
    }

    /// Keys held by the live filters.
    #[must_use]
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn filter(&self) -> Option<ScopeKeys> {
        (self.max > 0).then(|| ScopeKeys {
            filter: KeyFilter::default(),
            used: self.used.clone(),
        })
    }
}

/// A scope's key filter, counted in its [`KeyBudget`] while it lives.
#[derive(Debug)]
struct ScopeKeys {
    filter: KeyFilter,
    used: Arc<AtomicUsize>,
}

impl Drop for ScopeKeys {
    fn drop(&mut self) {
        self.used.fetch_sub(self.filter.len(), Ordering::Relaxed);
    }
}

/// Growth of the inventory tables since the last `ANALYZE`.
///
/// The load and update statements join batch arrays against `devices` and `identifiers` with
/// plans cached per connection; with no statistics, or statistics from when the tables were
/// small, Postgres may scan instead of probing the right index. Autovacuum normally refreshes
/// them, but it may be off (as on the development machines) and it comes too late after a
/// first large batch, so DIRE analyzes its tables ([`crate::store::analyze`]) after a commit
/// whenever they have doubled since the last time (at least every 1000 rows).
#[derive(Debug, Default)]
pub struct Growth {
    since: u64,
    at_last: u64,
}

impl Growth {
    /// Adds inserted rows; true when the tables should be analyzed now.
    pub fn add(&mut self, rows: u64) -> bool {
        self.since += rows;
        if self.since >= self.at_last.max(1_000) {
            self.at_last += self.since;
            self.since = 0;
            true
        } else {
            false
        }
    }
}

/// A pulled message, decoded.
#[derive(Debug)]
pub enum Decoded {
    /// Valid: the tenant (from the subject) and its updates by partition.
    Updates {
        /// Tenant of the subject.
        tenant: TenantId,
        /// Valid updates, by normalised partition.
        by_partition: BTreeMap<String, Vec<Observation>>,
        /// Elements rejected on their own (no IP, bad timestamp, not an object).
        rejected: usize,
    },
    /// Undecodable: terminate and report.
    Poison {
        /// Tenant to report to, when one can be told.
        tenant: Option<TenantId>,
        /// Why.
        reason: String,
    },
}

/// What one committed group did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GroupReport {
    /// New devices.
    pub created: usize,
    /// Devices rewritten in place.
    pub updated: usize,
    /// Devices merged away.
    pub merged: usize,
    /// Devices reported without any change.
    pub unchanged: usize,
    /// Merges refused (MAC-only evidence).
    pub blocked: usize,
    /// IPs that moved.
    pub churn: usize,
    /// Conflicting identifier claims.
    pub conflicts: usize,
}

impl GroupReport {
    fn of(o: &Outcome) -> Self {
        Self {
            created: o.inserts.len(),
            updated: o.updates.len(),
            merged: o.merges.len(),
            unchanged: o.unchanged,
            blocked: o.blocked_merges.len(),
            churn: o.churn(),
            conflicts: o.conflicts.len(),
        }
    }
}

/// How a message ends this round (later variants win when several groups disagree).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Fate {
    Ack,
    /// Failed for a non-transient reason.
    Fail(String),
    /// Retry later.
    Nak,
    /// Already terminated.
    Done,
}

struct Group {
    tenant: TenantId,
    updates: Arc<GroupUpdates>,
    members: Vec<usize>,
    /// What was decided of it while the scope's group before it was written.
    speculation: Option<Speculation>,
}

/// The updates of one (tenant, partition) group, with what skipping needs of them; shared
/// with the thread that decides them ahead ([`Speculation`]).
#[derive(Default)]
pub struct GroupUpdates {
    updates: Vec<Observation>,
    /// Empty when settled devices are not skipped.
    skip: SkipKeys,
}

/// What a group's transaction decided: which updates were skipped, the stored state the rest
/// were reconciled against, the outcome, and the devices it leaves settled.
struct Decision {
    skip: Vec<bool>,
    state: KnownState,
    outcome: Outcome,
    settled: Vec<(DeviceUid, Settled)>,
    /// Lookup keys the scope's filter left out.
    left_out: usize,
}

/// What was decided of a group ahead of its transaction, from the scope's memo and key filter
/// as this replica's previous transaction there left them. The transaction uses it only when
/// the scope's epoch, read under the scope lock, is still `epoch`: nobody wrote the scope
/// since, so the memo and filter are the ones the transaction would use itself.
pub struct Speculation {
    epoch: i64,
    progress: Progress,
}

/// How far a group was decided ahead.
enum Progress {
    /// Decided, assuming that no stored device holds the keys in `absent`: the lookup keys the
    /// scope's filter could not rule out, when it ruled out more than it kept (a group of
    /// mostly new devices; the rest are the filter's false positives). Used only if looking
    /// `absent` up finds nothing: then it is the decision the transaction would take.
    Decided {
        absent: Lookups,
        decision: Box<Decision>,
    },
    /// Only the updates to skip and the stored state to look up first: the group's devices are
    /// mostly stored ones. `preload` loads that lookup on another connection from the moment
    /// the group was planned (see [`Preload`]).
    Planned {
        skip: Vec<bool>,
        lookups: Lookups,
        left_out: usize,
        preload: Option<Preload>,
    },
}

/// The first lookup of a planned group, loading on another connection since the group was
/// planned, while the scope's group before it was written. What it found is used only when
/// its snapshot saw that write's commit, or saw the scope before the write and the write
/// cannot have changed it ([`Lookups::unaffected_by`]); else the rows are loaded under the
/// scope lock.
struct Preload {
    loading: tokio::task::JoinHandle<Result<store::Snapshot>>,
    /// The outcome written meanwhile, and the scope's epoch before it.
    written: Arc<Outcome>,
    before: Option<i64>,
}

/// A group decided (or planned) ahead by [`Ingest::apply_group_ahead`].
pub struct Speculated {
    updates: Arc<GroupUpdates>,
    speculation: Speculation,
}

/// The batch pulled after the one being processed, once ready: the group of it whose scope is
/// being written is decided (or planned) meanwhile, on another thread ([`Speculation`]).
#[derive(Default)]
pub struct Ahead {
    fetch: Option<Fetch>,
    ready: Option<Prepared>,
}

/// A pull of the next batch and its preparation, in progress.
pub type Fetch = tokio::task::JoinHandle<Result<Option<Prepared>, async_nats::Error>>;

impl Ahead {
    /// Waits for the fetch in progress, if any, and keeps the batch it prepared. Cancel-safe:
    /// dropped before the fetch ends, it leaves the fetch in place.
    async fn wait(&mut self) {
        let Some(fetch) = self.fetch.as_mut() else {
            return;
        };
        let fetched = fetch.await;
        self.fetch = None;
        match fetched {
            Ok(Ok(next)) => self.ready = next,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "Pull from the devices stream failed; retrying");
            }
            Err(e) => tracing::error!(error = %e, "Preparing a pulled batch failed"),
        }
    }
}

/// What skipping settled devices needs of a group's updates, computed with its decoding: their
/// memo keys and their claims (IPs and identifiers), in the updates' order.
#[derive(Default)]
struct SkipKeys {
    keys: Vec<Key>,
    claims: Vec<Claim>,
}

impl SkipKeys {
    fn extend(&mut self, updates: &[Observation]) {
        for o in updates {
            let c = claim(o);
            self.keys.push(Key::claimed(o, &c.1));
            self.claims.push(c);
        }
    }
}

/// A pulled batch, decoded and grouped by (tenant, partition), with the memo keys of its
/// updates: the part of a round that needs no database, done while the round before it is
/// still being written (see [`run`]).
pub struct Prepared {
    msgs: Vec<jetstream::Message>,
    /// Undecodable messages: index, tenant to report to, reason.
    poison: Vec<(usize, Option<TenantId>, String)>,
    groups: BTreeMap<(TenantId, String), Group>,
}

fn received_at(msg: &jetstream::Message) -> DateTime<Utc> {
    msg.info()
        .ok()
        .and_then(|i| {
            let nanos = i.published.unix_timestamp_nanos();
            i64::try_from(nanos)
                .ok()
                .map(DateTime::from_timestamp_nanos)
        })
        .unwrap_or_else(Utc::now)
}

impl Ingest {
    /// Decodes one message. The tenant comes from the subject; a `sr-tenant-id` header that
    /// names another tenant makes the message poison.
    #[must_use]
    pub fn decode(&self, msg: &jetstream::Message) -> Decoded {
        let subject = msg.subject.as_str();
        let header_tenant = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(headers::TENANT_ID))
            .map(|v| v.as_str().trim().to_owned());
        let tenant = self
            .subjects
            .tenant_of(subject)
            .filter(|t| self.subjects.device_updates(*t) == subject);
        let Some(tenant) = tenant else {
            return Decoded::Poison {
                tenant: header_tenant.and_then(|h| h.parse().ok()),
                reason: format!("subject {subject} does not name a tenant"),
            };
        };
        if let Some(h) = header_tenant
            && h.parse::<TenantId>().ok() != Some(tenant)
        {
            return Decoded::Poison {
                tenant: Some(tenant),
                reason: format!(
                    "header {} {h:?} does not match the subject's tenant {tenant}",
                    headers::TENANT_ID
                ),
            };
        }
        let elements = match decode_updates(&msg.payload) {
            Ok(e) => e,
            Err(e) => {
                return Decoded::Poison {
                    tenant: Some(tenant),
                    reason: e.to_string(),
                };
            }
        };
        let at = received_at(msg);
        let mut by_partition: BTreeMap<String, Vec<Observation>> = BTreeMap::new();
        let mut rejected = 0;
        for element in elements {
            match element.and_then(|fields| Observation::from_owned_update_at(fields, at)) {
                Ok(obs) => by_partition
                    .entry(obs.partition.clone())
                    .or_default()
                    .push(obs),
                Err(reason) => {
                    tracing::debug!(%tenant, %reason, "Device update rejected");
                    rejected += 1;
                }
            }
        }
        Decoded::Updates {
            tenant,
            by_partition,
            rejected,
        }
    }

    /// Decodes and groups a pulled batch (CPU only; see [`Prepared`]).
    #[must_use]
    pub fn prepare(&self, msgs: Vec<jetstream::Message>) -> Prepared {
        let mut poison = Vec::new();
        let mut groups: BTreeMap<(TenantId, String), (GroupUpdates, Vec<usize>)> = BTreeMap::new();
        for (i, msg) in msgs.iter().enumerate() {
            match self.decode(msg) {
                Decoded::Poison { tenant, reason } => poison.push((i, tenant, reason)),
                Decoded::Updates {
                    tenant,
                    by_partition,
                    rejected,
                } => {
                    self.metrics.updates_rejected.inc_by(rejected as u64);
                    for (partition, updates) in by_partition {
                        let (g, members) = groups.entry((tenant, partition)).or_default();
                        if self.skip_settled {
                            g.skip.extend(&updates);
                        }
                        g.updates.extend(updates);
                        members.push(i);
                    }
                }
            }
        }
        let groups = groups
            .into_iter()
            .map(|(key, (updates, members))| {
                let group = Group {
                    tenant: key.0,
                    updates: Arc::new(updates),
                    members,
                    speculation: None,
                };
                (key, group)
            })
            .collect();
        Prepared {
            msgs,
            poison,
            groups,
        }
    }

    /// Processes one pulled batch to the end: every message is acked, nak'd or terminated.
    pub async fn process(&self, msgs: Vec<jetstream::Message>) {
        let prepared = self.prepare(msgs);
        self.process_prepared(prepared, &mut Ahead::default()).await;
    }

    /// Processes a prepared batch to the end (see [`Ingest::process`]). While a group is
    /// written, the group of the same scope in the batch `ahead`, if it is ready, is decided
    /// ([`Speculation`]).
    pub async fn process_prepared(&self, prepared: Prepared, ahead: &mut Ahead) {
        let started = Instant::now();
        let Prepared {
            msgs,
            poison,
            groups,
        } = prepared;
        let mut fates = vec![Fate::Ack; msgs.len()];
        for (i, tenant, reason) in poison {
            fates[i] = self.poison(&msgs[i], tenant, &reason).await;
        }
        // Freed on another thread: dropping thousands of decoded updates takes a while.
        let mut spent = Vec::with_capacity(groups.len());
        for ((_, partition), group) in groups {
            let Group {
                tenant,
                updates,
                members,
                speculation,
            } = group;
            let first = members.first().copied().unwrap_or_default();
            let result = self
                .apply_traced(
                    tenant,
                    &partition,
                    &updates,
                    speculation,
                    Some(&mut *ahead),
                    &msgs[first],
                )
                .await;
            let Err(e) = result else {
                spent.push(updates);
                continue;
            };
            if e.is_transient() || members.len() == 1 {
                let fate = if e.is_transient() {
                    tracing::warn!(tenant_id = %tenant, %partition, error = %e, "Batch failed; will retry");
                    Fate::Nak
                } else {
                    tracing::error!(tenant_id = %tenant, %partition, error = %e, "Batch failed");
                    Fate::Fail(e.to_string())
                };
                for &i in &members {
                    fates[i] = fates[i].clone().max(fate.clone());
                }
                continue;
            }
            // Isolate: the other messages of the group must not pay for one bad message.
            drop(updates);
            for &i in &members {
                let Decoded::Updates {
                    tenant,
                    mut by_partition,
                    ..
                } = self.decode(&msgs[i])
                else {
                    continue;
                };
                let updates =
                    self.group_updates(by_partition.remove(&partition).unwrap_or_default());
                let fate = match self
                    .apply_traced(tenant, &partition, &updates, None, None, &msgs[i])
                    .await
                {
                    Ok(()) => Fate::Ack,
                    Err(e) if e.is_transient() => Fate::Nak,
                    Err(e) => {
                        tracing::error!(tenant_id = %tenant, %partition, error = %e, "Message failed");
                        Fate::Fail(e.to_string())
                    }
                };
                fates[i] = fates[i].clone().max(fate);
            }
        }
        if !spent.is_empty() {
            free_later(Box::new(spent));
        }
        self.settle(&msgs, fates).await;
        self.metrics.batches.inc();
        self.metrics
            .batch_latency
            .observe(started.elapsed().as_secs_f64());
        if let Some(info) = msgs.last().and_then(|m| m.info().ok()) {
            self.metrics
                .consumer_lag
                .set(i64::try_from(info.pending).unwrap_or(i64::MAX));
        }
    }

    async fn settle(&self, msgs: &[jetstream::Message], fates: Vec<Fate>) {
        let nak = AckKind::Nak(Some(Duration::from_millis(self.consumer.nak_delay_ms)));
        for (msg, fate) in msgs.iter().zip(fates) {
            let result = match fate {
                Fate::Ack => msg.ack().await,
                Fate::Done => Ok(()),
                Fate::Nak => {
                    self.metrics.naks.inc();
                    msg.ack_with(nak).await
                }
                Fate::Fail(reason) => {
                    let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
                    if delivered >= self.consumer.max_deliver {
                        let tenant = self.subjects.tenant_of(msg.subject.as_str());
                        let reason =
                            format!("failed on {delivered} deliveries; last error: {reason}");
                        self.poison(msg, tenant, &reason).await;
                        Ok(())
                    } else {
                        self.metrics.naks.inc();
                        msg.ack_with(nak).await
                    }
                }
            };
            if let Err(e) = result {
                // The server redelivers after ack_wait; processing is idempotent.
                tracing::warn!(error = %e, "Cannot settle message");
            }
        }
    }

    /// Reports and terminates an undecodable message. When the report cannot be stored the
    /// message is nak'd instead, so no poison message disappears unreported. Either way the
    /// message is settled here ([`Fate::Done`]).
    async fn poison(
        &self,
        msg: &jetstream::Message,
        tenant: Option<TenantId>,
        reason: &str,
    ) -> Fate {
        let seq = msg.info().map(|i| i.stream_sequence).unwrap_or_default();
        let subject = msg.subject.as_str();
        tracing::warn!(%subject, stream_sequence = seq, %reason, "Terminating poison message");
        if let Some(tenant) = tenant {
            let event = inventory::poison_event(tenant, subject, seq, reason, Utc::now());
            let stored = async {
                let mut conn = self.pool.acquire().await?;
                store::enqueue_events(&mut conn, tenant, EVENT_KIND, &[event]).await
            }
            .await;
            if let Err(e) = stored {
                tracing::warn!(error = %e, "Cannot store the poison report; will retry");
                let delay = Duration::from_millis(self.consumer.nak_delay_ms);
                self.metrics.naks.inc();
                let _ = msg.ack_with(AckKind::Nak(Some(delay))).await;
                return Fate::Done;
            }
            self.outbox_notify.notify_one();
        }
        self.metrics.poison_messages.inc();
        if let Err(e) = msg.ack_with(AckKind::Term).await {
            tracing::warn!(error = %e, "Cannot terminate message");
        }
        Fate::Done
    }

    /// A group of `updates`, with what skipping needs of them when settled devices are skipped.
    fn group_updates(&self, updates: Vec<Observation>) -> Arc<GroupUpdates> {
        let mut skip = SkipKeys::default();
        if self.skip_settled {
            skip.extend(&updates);
        }
        Arc::new(GroupUpdates { updates, skip })
    }

    async fn apply_traced(
        &self,
        tenant: TenantId,
        partition: &str,
        group: &Arc<GroupUpdates>,
        speculation: Option<Speculation>,
        ahead: Option<&mut Ahead>,
        parent: &jetstream::Message,
    ) -> Result<()> {
        let span = tracing::info_span!("dire.reconcile", tenant_id = %tenant, partition, updates = group.updates.len());
        sr_runtime::telemetry::set_parent_from_nats(&span, parent.headers.as_ref());
        let report = self
            .apply_keyed(tenant, partition, group, speculation, ahead)
            .instrument(span)
            .await?;
        let m = &self.metrics;
        m.transactions.inc();
        m.count_devices("created", report.created);
        m.count_devices("updated", report.updated);
        m.count_devices("merged", report.merged);
        m.count_devices("unchanged", report.unchanged);
        m.merges_blocked.inc_by(report.blocked as u64);
        m.ip_churn.inc_by(report.churn as u64);
        m.identifier_conflicts.inc_by(report.conflicts as u64);
        Ok(())
    }

    /// Reconciles one (tenant, partition) group in one transaction: scope lock, load, decide,
    /// write, outbox rows, commit.
    ///
    /// # Errors
    /// Database failure (see [`Error::is_transient`]) or an inconsistent stored state.
    pub async fn apply_group(
        &self,
        tenant: TenantId,
        partition: &str,
        updates: &[Observation],
    ) -> Result<GroupReport> {
        let group = self.group_updates(updates.to_vec());
        self.apply_keyed(tenant, partition, &group, None, None)
            .await
    }

    /// [`Ingest::apply_group`], deciding the scope's next group, `next`, while this one is
    /// written, as the consumer does with the batch it pulled ahead. Returns the decision taken
    /// ahead, if one could be (see [`Speculation`]); [`Ingest::apply_speculated`] applies it.
    ///
    /// # Errors
    /// As [`Ingest::apply_group`].
    pub async fn apply_group_ahead(
        &self,
        tenant: TenantId,
        partition: &str,
        updates: &[Observation],
        next: &[Observation],
    ) -> Result<(GroupReport, Option<Speculated>)> {
        let group = self.group_updates(updates.to_vec());
        let next = Group {
            tenant,
            updates: self.group_updates(next.to_vec()),
            members: Vec::new(),
            speculation: None,
        };
        let key = (tenant, partition.to_owned());
        let mut ahead = Ahead {
            fetch: None,
            ready: Some(Prepared {
                msgs: Vec::new(),
                poison: Vec::new(),
                groups: BTreeMap::from([(key.clone(), next)]),
            }),
        };
        let report = self
            .apply_keyed(tenant, partition, &group, None, Some(&mut ahead))
            .await?;
        let speculated = ahead
            .ready
            .and_then(|mut p| p.groups.remove(&key))
            .and_then(|g| {
                let speculation = g.speculation?;
                Some(Speculated {
                    updates: g.updates,
                    speculation,
                })
            });
        Ok((report, speculated))
    }

    /// Applies the group a decision was taken ahead for ([`Ingest::apply_group_ahead`]), with
    /// that decision while the scope is as it was left then.
    ///
    /// # Errors
    /// As [`Ingest::apply_group`].
    pub async fn apply_speculated(
        &self,
        tenant: TenantId,
        partition: &str,
        speculated: Speculated,
    ) -> Result<GroupReport> {
        let Speculated {
            updates,
            speculation,
        } = speculated;
        self.apply_keyed(tenant, partition, &updates, Some(speculation), None)
            .await
    }

    /// [`Ingest::apply_group`] of a prepared group, with its decision taken ahead if any; while
    /// it is written, the scope's group in the batch `ahead` is decided or planned.
    async fn apply_keyed(
        &self,
        tenant: TenantId,
        partition: &str,
        group: &GroupUpdates,
        speculation: Option<Speculation>,
        ahead: Option<&mut Ahead>,
    ) -> Result<GroupReport> {
        if group.updates.is_empty() {
            return Ok(GroupReport::default());
        }
        debug_assert_eq!(
            group.skip.keys.len(),
            if self.skip_settled {
                group.updates.len()
            } else {
                0
            }
        );
        let mut tx = self.pool.begin().await?;
        store::lock_scope(&mut tx, tenant, partition).await?;
        // The scope's memo is taken out while the transaction runs and put back only after a
        // commit: a failure anywhere forgets it (it is loaded again on the next use).
        let mut scope = if self.skip_settled {
            Some(
                self.scope_memo(&mut tx, tenant, partition, &group.skip.keys)
                    .await?,
            )
        } else {
            None
        };
        let epoch = scope.as_ref().map(|s| s.epoch);
        let mut planned = None;
        let decided = match speculation {
            Some(s) if Some(s.epoch) == epoch => match s.progress {
                Progress::Decided { absent, decision } => {
                    let found = !absent.is_empty()
                        && store::load_state(&mut tx, tenant, partition, &absent).await?
                            != KnownState::new(partition);
                    self.metrics
                        .speculated(if found { "found" } else { "decided" });
                    (!found).then_some(*decision)
                }
                Progress::Planned {
                    skip,
                    lookups,
                    left_out,
                    preload,
                } => {
                    let found = match preload {
                        Some(p) => p.found(&lookups, s.epoch).await,
                        None => None,
                    };
                    self.metrics.speculated(if found.is_some() {
                        "preloaded"
                    } else {
                        "planned"
                    });
                    planned = Some((skip, (lookups, found), left_out));
                    None
                }
            },
            Some(_) => {
                self.metrics.speculated("stale");
                None
            }
            None => None,
        };
        let decision = match decided {
            Some(decision) => decision,
            None => {
                let (mut skip, mut first, mut left_out) = match planned {
                    Some((skip, lookups, left_out)) => (skip, Some(lookups), left_out),
                    None => (first_skips(scope.as_ref(), group), None, 0),
                };
                loop {
                    let (lookups, found) = match first.take() {
                        Some(planned) => planned,
                        None => {
                            let (lookups, narrowed) = lookups(scope.as_ref(), group, &skip);
                            left_out += narrowed;
                            (lookups, None)
                        }
                    };
                    // Nothing left to look up: none of the updates' devices is stored yet.
                    let state = match found {
                        Some(found) => found,
                        None if lookups.is_empty() => KnownState::new(partition),
                        None => store::load_state(&mut tx, tenant, partition, &lookups).await?,
                    };
                    if let Some(d) =
                        decide(scope.as_ref(), group, &mut skip, state, &self.reconcile)?
                    {
                        break Decision { left_out, ..d };
                    }
                }
            }
        };
        let Decision {
            skip,
            state,
            outcome,
            settled,
            left_out,
        } = decision;
        self.metrics.lookup_keys_skipped.inc_by(left_out as u64);
        let skipped = skip.iter().filter(|s| **s).count();
        let mut report = GroupReport::of(&outcome);
        report.unchanged += skipped;
        self.metrics.updates_skipped.inc_by(skipped as u64);
        let digests: HashMap<_, _> = settled.iter().map(|(uid, s)| (*uid, s.digest)).collect();
        let key = (tenant, partition.to_owned());
        let max_keys = self.key_filters.max;
        if !outcome.has_writes() {
            tx.commit().await?;
            if let Some(mut scope) = scope {
                scope.learn(&outcome, settled, max_keys, &key);
                self.put_scope_memo(tenant, partition, scope);
            }
            return Ok(report);
        }
        let outcome = Arc::new(outcome);
        // Statistics are refreshed after the commit whenever the tables have doubled (see
        // [`Growth`]).
        let inserted = (outcome.inserts.len() + outcome.identifier_inserts.len()) as u64;
        let analyze = self
            .analyze
            .lock()
            .map(|mut g| g.add(inserted))
            .unwrap_or(false);
        let mut ahead =
            ahead.filter(|_| self.decide_ahead && scope.as_ref().is_some_and(|s| s.complete));
        // Shared with the write, so that they can be freed off this task once it is done.
        let written_from = Arc::new((state, digests));
        let write = {
            let (from, outcome) = (written_from.clone(), outcome.clone());
            async move {
                let (state, digests) = &*from;
                self.write_decision(tx, tenant, partition, state, &outcome, digests)
                    .await
            }
        };
        tokio::pin!(write);
        // The memo learns the outcome while the write runs (it is put back only once the commit
        // succeeds), and with it the next batch's group of this scope is decided (or planned)
        // as soon as that batch is pulled and prepared, unless the write ends first.
        let mut settled = Some(settled);
        let mut job = None;
        let mut written = None;
        if let Some(next) = ahead.as_deref_mut() {
            if next.ready.is_none() && next.fetch.is_some() {
                tokio::select! {
                    w = &mut write => written = Some(w),
                    () = next.wait() => {}
                }
            }
            let group = next.ready.as_ref().and_then(|p| p.groups.get(&key));
            if written.is_none()
                && let Some(group) = group
                && let (Some(mut scope), Some(settled)) = (scope.take(), settled.take())
            {
                let (updates, cfg) = (group.updates.clone(), self.reconcile);
                let (outcome, key) = (outcome.clone(), key.clone());
                job = Some(tokio::task::spawn_blocking(move || {
                    scope.learn(&outcome, settled, max_keys, &key);
                    let progress = speculate(&key.1, &scope, &updates, &cfg);
                    (scope, progress)
                }));
            }
        }
        let (written, finished) = match (written, job) {
            (Some(written), _) => (written, None),
            (None, Some(job)) => {
                let preload = (outcome.clone(), epoch);
                tokio::join!(
                    &mut write,
                    self.finish_ahead(job, tenant, partition, preload)
                )
            }
            (None, None) => ((&mut write).await, None),
        };
        if let Some((decided, progress)) = finished {
            scope = Some(decided);
            let next = ahead
                .and_then(|a| a.ready.as_mut())
                .and_then(|p| p.groups.get_mut(&key));
            if let (Ok(written), Some(progress), Some(next)) = (&written, progress, next) {
                next.speculation = Some(Speculation {
                    epoch: *written,
                    progress,
                });
            }
        }
        let epoch = written?;
        self.outbox_notify.notify_one();
        if let Some(mut scope) = scope {
            if let Some(settled) = settled {
                scope.learn(&outcome, settled, max_keys, &key);
            }
            scope.epoch = epoch;
            self.put_scope_memo(tenant, partition, scope);
        }
        free_later(Box::new((outcome, written_from)));
        if analyze {
            let done = match self.pool.acquire().await {
                Ok(mut conn) => store::analyze(&mut conn).await,
                Err(e) => Err(e.into()),
            };
            if let Err(e) = done {
                tracing::warn!(error = %e, "Cannot refresh planner statistics");
            }
        }
        Ok(report)
    }

    /// Awaits the decision taken ahead ([`speculate`]); for a group only planned, starts
    /// loading its first lookup on another connection ([`Preload`]), with the outcome being
    /// written and the scope's epoch before it. `None` when deciding panicked.
    async fn finish_ahead(
        &self,
        job: tokio::task::JoinHandle<(ScopeMemo, Option<Progress>)>,
        tenant: TenantId,
        partition: &str,
        (written, before): (Arc<Outcome>, Option<i64>),
    ) -> Option<(ScopeMemo, Option<Progress>)> {
        let (scope, mut progress) = match job.await {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, "Deciding the next group ahead panicked");
                return None;
            }
        };
        if let Some(Progress::Planned {
            lookups, preload, ..
        }) = &mut progress
            && !lookups.is_empty()
        {
            let (pool, lookups) = (self.pool.clone(), lookups.clone());
            let partition = partition.to_owned();
            let loading = tokio::spawn(async move {
                store::load_snapshot(&pool, tenant, &partition, &lookups).await
            });
            *preload = Some(Preload {
                loading,
                written,
                before,
            });
        }
        Some((scope, progress))
    }

    /// Writes a decided outcome with the identifiers each device then holds, its inventory
    /// changes and events (outbox rows) and the scope's new epoch, and commits; returns the
    /// epoch.
    async fn write_decision(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
        tenant: TenantId,
        partition: &str,
        state: &KnownState,
        outcome: &Outcome,
        digests: &HashMap<DeviceUid, ContentDigest>,
    ) -> Result<i64> {
        // Nothing may be left pointing at a device the outcome deletes.
        let stranded = outcome.deletes.iter().find_map(|uid| {
            state
                .held_by(uid)
                .find(|id| !outcome.identifier_repoints.contains_key(*id))
                .map(|id| (uid, id))
        });
        if let Some((uid, id)) = stranded {
            return Err(Error::Corrupt(format!(
                "merging {uid} away would strand its identifier {id}"
            )));
        }
        let taken = store::next_revisions(&mut tx, Revisions::needed(outcome)).await?;
        let revisions = Revisions::assign(outcome, taken)?;
        let held = state.held_after(outcome);
        store::write_outcome(
            &mut tx, tenant, partition, outcome, &revisions, digests, &held,
        )
        .await?;
        drop(held);
        let changes = inventory::device_changes(partition, outcome, &revisions);
        let messages =
            inventory::outbox_messages(tenant, changes, self.outbox.max_devices_per_message)?;
        let traceparent = current_traceparent();
        store::enqueue_inventory(&mut tx, tenant, &messages, traceparent.as_deref()).await?;
        let now = Utc::now();
        let mut events = inventory::merge_events(tenant, partition, outcome, now);
        events.extend(inventory::churn_event(tenant, partition, outcome, now));
        store::enqueue_events(&mut tx, tenant, EVENT_KIND, &events).await?;
        let epoch = store::bump_epoch(&mut tx, tenant, partition).await?;
        tx.commit().await?;
        Ok(epoch)
    }

    /// The scope's memo, valid for this transaction (the scope lock is held): the remembered
    /// one while the stored epoch is unchanged; else, for a scope this replica has not used
    /// yet, every settled device loaded from Postgres; else (another replica wrote the scope)
    /// an empty one that looks devices up as needed. An incomplete memo learns the settled
    /// devices among `keys` it does not know from Postgres.
    async fn scope_memo(
        &self,
        conn: &mut sqlx::PgConnection,
        tenant: TenantId,
        partition: &str,
        keys: &[Key],
    ) -> Result<ScopeMemo> {
        let epoch = store::scope_epoch(conn, tenant, partition).await?;
        let remembered = self
            .memos
            .lock()
            .ok()
            .and_then(|mut m| m.remove(&(tenant, partition.to_owned())));
        if let Some(old) = &remembered {
            self.metrics.settled_devices.dec_by(old.memo.len() as i64);
        }
        let mut scope = match remembered {
            Some(scope) if scope.epoch == epoch => scope,
            Some(_) => ScopeMemo {
                epoch,
                complete: false,
                memo: Memo::default(),
                keys: None,
            },
            None => {
                let mut memo = Memo::default();
                let started = Instant::now();
                let empty =
                    store::load_scope(conn, tenant, partition, &self.reconcile, &mut memo).await?;
                tracing::info!(
                    tenant_id = %tenant,
                    partition,
                    settled = memo.len(),
                    empty,
                    took_ms = started.elapsed().as_millis(),
                    "Loaded the scope's settled devices"
                );
                self.metrics.settled_loads.inc();
                ScopeMemo {
                    epoch,
                    complete: true,
                    memo,
                    keys: if empty {
                        self.key_filters.filter()
                    } else {
                        None
                    },
                }
            }
        };
        if !scope.complete {
            let unknown: Vec<_> = keys
                .iter()
                .map(|k| k.uid)
                .filter(|uid| !scope.memo.contains(uid))
                .collect();
            if !unknown.is_empty() {
                store::load_settled(
                    conn,
                    tenant,
                    partition,
                    Some(&unknown),
                    &self.reconcile,
                    &mut scope.memo,
                )
                .await?;
            }
        }
        Ok(scope)
    }

    fn put_scope_memo(&self, tenant: TenantId, partition: &str, scope: ScopeMemo) {
        self.metrics.settled_devices.inc_by(scope.memo.len() as i64);
        if let Ok(mut m) = self.memos.lock() {
            m.insert((tenant, partition.to_owned()), scope);
        }
    }
}

/// Frees `garbage` on a thread that does nothing else, so the ingest task does not wait for it
/// (an outcome of 8 000 new devices took about 12 ms). Not a blocking task: freed there, beside
/// the decoding and deciding that allocate on those threads, the bench's peak resident set grew
/// by 20–50 MiB.
fn free_later(garbage: Box<dyn Send>) {
    static FREEING: std::sync::OnceLock<Option<std::sync::mpsc::Sender<Box<dyn Send>>>> =
        std::sync::OnceLock::new();
    let freeing = FREEING.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Box<dyn Send>>();
        std::thread::Builder::new()
            .name("dire-free".into())
            .spawn(move || rx.into_iter().for_each(drop))
            .ok()
            .map(|_| tx)
    });
    match freeing {
        Some(tx) => {
            let _ = tx.send(garbage);
        }
        None => drop(garbage),
    }
}

/// The items of a group's updates (or their keys) that are not skipped.
fn not_skipped<'a, T>(items: &'a [T], skip: &'a [bool]) -> impl Iterator<Item = &'a T> {
    items
        .iter()
        .zip(skip)
        .filter(|(_, s)| !**s)
        .map(|(item, _)| item)
}

/// Which of a group's updates the scope's memo lets skip, before anything is looked up.
fn first_skips(scope: Option<&ScopeMemo>, group: &GroupUpdates) -> Vec<bool> {
    match scope {
        Some(scope) => {
            let times: Vec<DateTime<Utc>> = group.updates.iter().map(|o| o.timestamp).collect();
            let covered = scope.memo.covers_all(&group.skip.keys, &times);
            plan_skips_claims(&group.skip.claims, &covered)
        }
        None => vec![false; group.updates.len()],
    }
}

/// The stored state the updates not skipped need, less the keys the scope's filter knows no
/// stored device holds; and how many keys that left out.
fn lookups(scope: Option<&ScopeMemo>, group: &GroupUpdates, skip: &[bool]) -> (Lookups, usize) {
    let keys = &group.skip.keys;
    let mut lookups = if keys.is_empty() {
        required_lookups(&group.updates)
    } else {
        required_lookups_claimed(
            not_skipped(&group.skip.claims, skip),
            not_skipped(keys, skip),
        )
    };
    let left_out = scope
        .and_then(|s| s.keys.as_ref())
        .map_or(0, |k| k.filter.narrow(&mut lookups));
    (lookups, left_out)
}

/// Reconciles the updates not skipped against `state`, the stored state their lookups found.
/// `None` when the outcome touched a device whose update was skipped: that update is not
/// skipped any more, and it is reconciled with the others after looking up again.
fn decide(
    scope: Option<&ScopeMemo>,
    group: &GroupUpdates,
    skip: &mut [bool],
    state: KnownState,
    cfg: &ReconcileConfig,
) -> Result<Option<Decision>> {
    let updates = &group.updates;
    let keys = &group.skip.keys;
    let rest: Cow<'_, [Observation]> = if skip.contains(&true) {
        Cow::Owned(not_skipped(updates, skip).cloned().collect())
    } else {
        Cow::Borrowed(updates)
    };
    let outcome = reconcile(&state, &rest, cfg).map_err(Error::from)?;
    if !keys.is_empty() && demote_touched(skip, keys, &outcome) {
        return Ok(None);
    }
    let settled = if scope.is_some() {
        let rest_keys: Vec<Key> = not_skipped(keys, skip).copied().collect();
        settled_by(&state, &rest, &rest_keys, &outcome, cfg)
    } else {
        Vec::new()
    };
    Ok(Some(Decision {
        skip: skip.to_vec(),
        state,
        outcome,
        settled,
        left_out: 0,
    }))
}

/// Decides a group from the scope's memo and key filter alone (see [`Speculation`]): whole
/// when the filter rules out more of its lookup keys than it keeps, else up to the first
/// lookup. `None` when reconciling fails (the transaction then decides, and reports, itself).
fn speculate(
    partition: &str,
    scope: &ScopeMemo,
    group: &GroupUpdates,
    cfg: &ReconcileConfig,
) -> Option<Progress> {
    let mut skip = first_skips(Some(scope), group);
    let mut left_out = 0;
    let mut absent = Lookups::default();
    loop {
        let (lookups, narrowed) = lookups(Some(scope), group, &skip);
        left_out += narrowed;
        if lookups.len() >= narrowed.max(1) {
            // Decided ahead on the assumption that no stored device holds `absent`: looking
            // up `lookups` first would not give the transaction's decision.
            if !absent.is_empty() {
                return None;
            }
            return Some(Progress::Planned {
                skip,
                lookups,
                left_out,
                preload: None,
            });
        }
        absent.extend(lookups);
        let state = KnownState::new(partition);
        if let Some(d) = decide(Some(scope), group, &mut skip, state, cfg).ok()? {
            return Some(Progress::Decided {
                absent,
                decision: Box::new(Decision { left_out, ..d }),
            });
        }
    }
}

fn current_traceparent() -> Option<String> {
    let mut h = async_nats::HeaderMap::new();
    sr_runtime::telemetry::inject_nats(&mut h);
    h.get("traceparent").map(|v| v.as_str().to_owned())
}

/// Pulls one bounded batch: whatever is ready now, or, when nothing is, the first message to
/// arrive within `idle_wait_ms` plus whatever is ready after it.
///
/// # Errors
/// JetStream request failure.
pub async fn pull(
    consumer: &PullConsumer,
    cfg: &ConsumerConfig,
) -> Result<Vec<jetstream::Message>, async_nats::Error> {
    let ready = |max: usize, bytes: usize| {
        consumer
            .fetch()
            .max_messages(max)
            .max_bytes(bytes.max(1))
            .messages()
    };
    let mut out = collect(ready(cfg.batch_size, cfg.max_bytes).await?).await;
    if out.is_empty() {
        let first = consumer
            .batch()
            .max_messages(1)
            .expires(Duration::from_millis(cfg.idle_wait_ms))
            .messages()
            .await?;
        out = collect(first).await;
        if !out.is_empty() && cfg.batch_size > 1 {
            let used: usize = out.iter().map(|m| m.payload.len()).sum();
            let more = ready(cfg.batch_size - 1, cfg.max_bytes.saturating_sub(used)).await?;
            out.extend(collect(more).await);
        }
    }
    Ok(out)
}

async fn collect(mut batch: jetstream::consumer::pull::Batch) -> Vec<jetstream::Message> {
    let mut out = Vec::new();
    while let Some(item) = batch.next().await {
        match item {
            Ok(m) => out.push(m),
            Err(e) => {
                tracing::debug!(error = %e, "Pull ended");
                break;
            }
        }
    }
    out
}

/// Pulls the next batch and prepares it on a blocking thread; `None` when nothing arrived.
async fn fetch(
    ingest: Arc<Ingest>,
    consumer: PullConsumer,
) -> Result<Option<Prepared>, async_nats::Error> {
    let msgs = pull(&consumer, &ingest.consumer).await?;
    if msgs.is_empty() {
        return Ok(None);
    }
    let prepared = tokio::task::spawn_blocking(move || ingest.prepare(msgs)).await?;
    Ok(Some(prepared))
}

/// Runs the consumer until `token` is cancelled.
///
/// Rounds overlap: while one batch is reconciled and written, the next one is pulled and
/// prepared ([`Ingest::prepare`]) on another thread, and while a group is written, the next
/// batch's group of the same scope is decided ([`Speculation`]). A batch is processed only
/// after the one before it is settled, so the messages are still processed in order. A batch
/// in progress is finished (committed and settled) before returning; a batch pulled ahead is
/// given back (the fetch still running is awaited first; a pull waits at most
/// `idle_wait_ms`): nak'd without delay, so that it is redelivered at once to any consumer of
/// the stream, not after the ack wait.
pub async fn run(ingest: Arc<Ingest>, consumer: PullConsumer, token: CancellationToken) {
    let mut ahead = Ahead::default();
    let start = |ingest: &Arc<Ingest>| tokio::spawn(fetch(ingest.clone(), consumer.clone()));
    loop {
        if token.is_cancelled() {
            if let Some(prepared) = ahead.ready.take() {
                give_back_prepared(&prepared).await;
            }
            if let Some(fetch) = ahead.fetch.take() {
                give_back(fetch, &ingest.consumer).await;
            }
            break;
        }
        let prepared = match ahead.ready.take() {
            Some(prepared) => prepared,
            None => {
                let mut next = ahead.fetch.take().unwrap_or_else(|| start(&ingest));
                let fetched = tokio::select! {
                    () = token.cancelled() => {
                        give_back(next, &ingest.consumer).await;
                        break;
                    }
                    r = &mut next => r,
                };
                match fetched {
                    Ok(Ok(Some(prepared))) => prepared,
                    Ok(Ok(None)) => continue,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "Pull from the devices stream failed; retrying");
                        tokio::select! {
                            () = token.cancelled() => {}
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "Preparing a pulled batch failed");
                        continue;
                    }
                }
            }
        };
        ahead.fetch = Some(start(&ingest));
        // Tokio runs a task spawned from a worker on that worker (in a slot the other worker
        // does not take from) once the spawning task yields: let the pull start now, not when
        // the first statement of the write is sent (about 30 ms later).
        tokio::task::yield_now().await;
        ingest.process_prepared(prepared, &mut ahead).await;
    }
}

/// Gives back a batch pulled ahead at shutdown: its messages are nak'd without delay.
async fn give_back_prepared(prepared: &Prepared) {
    for msg in &prepared.msgs {
        if let Err(e) = msg.ack_with(AckKind::Nak(None)).await {
            tracing::warn!(error = %e, "Cannot give back a message pulled ahead");
        }
    }
    tracing::debug!(
        messages = prepared.msgs.len(),
        "Gave back a batch pulled ahead"
    );
}

/// Ends a fetch at shutdown: what it pulled is nak'd without delay. A fetch that does not end
/// within `idle_wait_ms` and five seconds more is abandoned.
async fn give_back(mut next: Fetch, cfg: &ConsumerConfig) {
    let limit = Duration::from_millis(cfg.idle_wait_ms) + Duration::from_secs(5);
    match tokio::time::timeout(limit, &mut next).await {
        Ok(Ok(Ok(Some(prepared)))) => give_back_prepared(&prepared).await,
        Ok(_) => {}
        Err(_) => next.abort(),
    }
}
