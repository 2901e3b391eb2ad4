//! The decision core: `state subset + batch -> Outcome`.
//!
//! How a batch is resolved (every step iterates in an order derived from content and uids, never
//! from the position of an update in the batch, so any permutation of a batch decides the same):
//!
//! 1. Nodes are the batch's updates and the loaded devices. Updates are sorted by their content
//!    (`Observation`'s `Ord`: timestamp first). For each identifier, its nodes are the device it
//!    points at (first writer wins, so it goes first) followed by the updates carrying it.
//! 2. Nodes are joined (union-find) identifier by identifier, strongest kinds first:
//!    - agent / Armis / integration / NetBox ids join freely, so two devices named by one update
//!      (or by two updates sharing an identifier) end up in one group: a merge;
//!    - a strong MAC joins only when at most one side holds an existing device (a merge on MAC
//!      evidence alone is blocked and counted);
//!    - a medium MAC additionally needs one side without any strong identifier.
//!
//!    Every join first checks the conflict rule: two groups are not joined through an identifier
//!    of kind K when, for some kind stronger than K, both hold values and none in common (two
//!    Armis ids are two devices even with the same MAC). Integration ids of different
//!    integration types are separate kinds for this check.
//! 3. A new group with strong identifiers gets its canonical id from its earliest update (as if
//!    the updates had arrived one by one); if a device with that uid exists it is that device.
//! 4. IP claims of the resolved groups are settled (newest sighting wins, see below); then each
//!    group without strong identifiers resolves to the device that holds its IP at that point,
//!    else to another such group with the same IP, else becomes a new device (seeded by its
//!    identifiers, or its IP; if a device with that uid exists, it is that device). Medium-only
//!    groups are placed first, then claims are settled again, then IP-only groups.
//!    `device_id` never resolves an update by itself (a claim to a device created by the same
//!    batch would resolve differently on redelivery); it only picks the winner of a merge.
//! 5. A group with several existing devices merges them into one winner: the device named in an
//!    update's `device_id`, else the one owning the highest-priority identifier reported, else
//!    the most recently seen (then the smallest uid).
//! 6. IPs: each group claims the IP of its latest update, seen at the later of that update and
//!    the stored `last_seen` of a device of the group already holding that IP; a device not
//!    reported claims the IP it holds, with its `last_seen` as sighting time. The newest
//!    sighting wins (ties: a reported device over an unreported one, then the smallest uid);
//!    losers are left without an IP.
//! 7. Field values are order-independent, across batches too: every stated value (typed column,
//!    metadata key, sweep hint per (source, query label)) keeps the time it was stated
//!    ([`crate::Stamps`]) and takes the newest statement among the stored row and the updates
//!    (equal times: the greater value), whichever source makes it; sources are united. A
//!    restatement of the same value moves its stamp only once it is `last_seen_precision`
//!    newer. A group whose updates are all older than the stored `last_seen` keeps its stored
//!    IP. So batches applied out of order (replicas, redelivery) end in the in-order rows
//!    (exactly so at precision 0). Merged rows combine the same way.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use chrono::{DateTime, TimeDelta, Utc};
use sr_core::inventory::SweepHint;

use crate::identifier::{Identifier, IdentifierKind, Strength};
use crate::observation::Observation;
use crate::outcome::{
    BlockedMerge, DeviceWrite, IdentifierConflict, IdentifierRepoint, IpCleared, IpMove, Merge,
    Outcome,
};
use crate::state::{DeviceField, DeviceRecord, KnownState, Stamps, StateError, Stated};
use crate::uid::{DeviceUid, canonical_id, normalize_partition};

/// Tunables of reconciliation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileConfig {
    /// A re-sighting refreshes `last_seen`, and a restated value its stamp, only when the stored
    /// one is at least this much older (unless the row is written anyway). Default 15 minutes;
    /// at 0 every newer sighting is written and batch order never matters for field values.
    pub last_seen_precision: TimeDelta,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        ReconcileConfig {
            last_seen_precision: TimeDelta::minutes(15),
        }
    }
}

/// The batch cannot be reconciled against this state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReconcileError {
    /// An update belongs to another partition than the state (group with [`partitions`]).
    #[error("update {index} is for partition {found:?} but the state is for {expected:?}")]
    PartitionMismatch {
        /// Index of the update in the batch.
        index: usize,
        /// The state's partition.
        expected: String,
        /// The update's partition.
        found: String,
    },
    /// The loaded state is inconsistent.
    #[error(transparent)]
    InvalidState(#[from] StateError),
}

/// Indices of the batch's updates grouped by normalised partition, so the caller can build one
/// [`KnownState`] per (tenant, partition).
pub fn partitions(batch: &[Observation]) -> BTreeMap<String, Vec<usize>> {
    let mut out: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, obs) in batch.iter().enumerate() {
        out.entry(normalize_partition(&obs.partition))
            .or_default()
            .push(i);
    }
    out
}

/// Decides what a batch does to the state of its scope.
///
/// `state` must hold at least what [`crate::required_lookups`] asks for (more is fine); every
/// update must be of the state's partition. The result depends only on the contents of `state`,
/// the multiset of updates in `batch` and `cfg` (apart from `resolutions`, which follows the
/// batch's indices), and applying it then reconciling the same batch again writes nothing.
///
/// Rules, in short (CONTRACT §4):
/// - identifiers are looked up before any uid is generated; an identifier row is never
///   re-pointed except when its device is merged away (first writer wins);
/// - updates (of the batch and of the past) linked by agent, Armis, integration or NetBox ids
///   form one device; several existing devices in one such group merge into the one named by an
///   update's `device_id`, else the one owning the highest-priority reported identifier, else
///   the most recently seen; the others are deleted and all their identifiers re-pointed;
/// - a strong MAC links only when that does not merge two existing devices, a locally
///   administered (medium) MAC only when one side has no strong identifier at all; refused
///   links are listed in `blocked_merges`;
/// - no link counts when the two sides hold different values of a stronger identifier kind
///   (two Armis ids with one MAC stay two devices; the MAC stays with its first holder and the
///   other claim is listed in `conflicts`);
/// - updates without strong identifiers resolve through their IP to the device holding it after
///   the batch's strong updates, else become a new device; `device_id` alone never resolves;
/// - an IP belongs to one device: the newest sighting keeps it, the other holder is cleared and
///   the move counted (an IP swap inside one batch clears nobody);
/// - field values: per field the latest update stating it (ties broken by content), sources
///   united, metadata overlaid, empty values never clear, `is_available` only when stated,
///   `last_seen` refreshed when older than `cfg.last_seen_precision` or when the row is written
///   anyway; a device whose row would not change is counted in `unchanged` and not written.
///
/// # Errors
/// [`ReconcileError::PartitionMismatch`] for an update of another partition,
/// [`ReconcileError::InvalidState`] when an identifier points at a device not loaded.
pub fn reconcile(
    state: &KnownState,
    batch: &[Observation],
    cfg: &ReconcileConfig,
) -> Result<Outcome, ReconcileError> {
    state.validate()?;
    for (index, obs) in batch.iter().enumerate() {
        let found = normalize_partition(&obs.partition);
        if found != state.partition() {
            return Err(ReconcileError::PartitionMismatch {
                index,
                expected: state.partition().to_owned(),
                found,
            });
        }
    }
    Ok(Engine::new(state, batch, cfg).run())
}

/// Priority level used for IP links: weaker than every identifier kind.
const IP_LEVEL: u8 = 5;

/// A conflict class: a kind, and for integration ids the integration type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Class {
    level: u8,
    namespace: String,
}

fn class_of(id: &Identifier) -> Class {
    let namespace = match id.kind() {
        IdentifierKind::IntegrationId => id
            .value()
            .split_once(':')
            .map(|(ty, _)| ty.to_owned())
            .unwrap_or_default(),
        _ => String::new(),
    };
    Class {
        level: id.kind().priority(),
        namespace,
    }
}

/// What a group of nodes holds, kept at its union-find root.
#[derive(Debug, Default)]
struct GroupData {
    values: BTreeMap<Class, BTreeSet<String>>,
    existing: usize,
    strong: bool,
    generated: Option<DeviceUid>,
}

impl GroupData {
    fn add(&mut self, id: &Identifier) {
        self.values
            .entry(class_of(id))
            .or_default()
            .insert(id.value().to_owned());
        if id.strength() == Strength::Strong {
            self.strong = true;
        }
    }

    fn absorb(&mut self, other: GroupData) {
        for (class, vals) in other.values {
            self.values.entry(class).or_default().extend(vals);
        }
        self.existing += other.existing;
        self.strong |= other.strong;
        self.generated = match (self.generated, other.generated) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

struct Forest {
    parent: Vec<usize>,
    size: Vec<usize>,
    data: Vec<GroupData>,
}

impl Forest {
    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    fn union(&mut self, a: usize, b: usize) -> usize {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return ra;
        }
        let (big, small) = if self.size[ra] >= self.size[rb] {
            (ra, rb)
        } else {
            (rb, ra)
        };
        self.parent[small] = big;
        self.size[big] += self.size[small];
        let moved = std::mem::take(&mut self.data[small]);
        self.data[big].absorb(moved);
        big
    }

    /// The conflict rule between two roots for a link of priority `level`.
    fn compatible(&self, ra: usize, rb: usize, level: u8) -> bool {
        let (a, b) = (&self.data[ra].values, &self.data[rb].values);
        let bound = Class {
            level,
            namespace: String::new(),
        };
        a.range(..bound).all(|(class, av)| match b.get(class) {
            Some(bv) if !av.is_empty() && !bv.is_empty() => !av.is_disjoint(bv),
            _ => true,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    Hard,
    StrongMac,
    MediumMac,
}

enum Link {
    Join,
    Blocked,
    Conflict,
}

/// One group at a point in time.
#[derive(Debug, Clone)]
struct Group {
    root: usize,
    /// Update indices in content order (earliest first).
    members: Vec<usize>,
    /// Device indices (into `Engine::dev_uids`).
    devices: Vec<usize>,
}

type Claim = (DateTime<Utc>, u8, Reverse<DeviceUid>);

struct Engine<'a> {
    state: &'a KnownState,
    batch: &'a [Observation],
    cfg: &'a ReconcileConfig,
    ids: Vec<Vec<Identifier>>,
    n: usize,
    dev_uids: Vec<DeviceUid>,
    order: Vec<usize>,
    forest: Forest,
    /// Identifier -> updates carrying it, in content order.
    carriers: BTreeMap<Identifier, Vec<usize>>,
    blocked: Vec<(Identifier, usize, usize)>,
}

impl<'a> Engine<'a> {
    fn new(state: &'a KnownState, batch: &'a [Observation], cfg: &'a ReconcileConfig) -> Self {
        let n = batch.len();
        let ids: Vec<Vec<Identifier>> = batch.iter().map(Observation::identifiers).collect();
        let dev_uids: Vec<DeviceUid> = state.devices().keys().copied().collect();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| batch[a].cmp(&batch[b]).then(a.cmp(&b)));

        let total = n + dev_uids.len();
        let mut data: Vec<GroupData> = Vec::with_capacity(total);
        for update_ids in &ids {
            let mut d = GroupData::default();
            update_ids.iter().for_each(|id| d.add(id));
            data.push(d);
        }
        for uid in &dev_uids {
            let mut d = GroupData {
                existing: 1,
                ..GroupData::default()
            };
            state.held_by(uid).for_each(|id| d.add(id));
            data.push(d);
        }
        let mut carriers: BTreeMap<Identifier, Vec<usize>> = BTreeMap::new();
        for &i in &order {
            for id in &ids[i] {
                carriers.entry(id.clone()).or_default().push(i);
            }
        }
        Engine {
            state,
            batch,
            cfg,
            ids,
            n,
            dev_uids,
            order,
            forest: Forest {
                parent: (0..total).collect(),
                size: vec![1; total],
                data,
            },
            carriers,
            blocked: Vec::new(),
        }
    }

    fn dev_node(&self, uid: &DeviceUid) -> Option<usize> {
        self.dev_uids.binary_search(uid).ok().map(|j| self.n + j)
    }

    fn run(mut self) -> Outcome {
        self.link_identifiers();
        self.resolve_new_strong_groups();
        self.place_weak_groups();
        let groups = self.groups();
        self.decide(&groups)
    }

    // ---- step 2: identifier links ------------------------------------------------------------

    fn link_identifiers(&mut self) {
        let carriers = std::mem::take(&mut self.carriers);
        for pass in [Pass::Hard, Pass::StrongMac, Pass::MediumMac] {
            for (id, updates) in &carriers {
                let id_pass = match (id.kind(), id.strength()) {
                    (IdentifierKind::Mac, Strength::Strong) => Pass::StrongMac,
                    (IdentifierKind::Mac, _) => Pass::MediumMac,
                    _ => Pass::Hard,
                };
                if id_pass != pass {
                    continue;
                }
                let owner = self.state.owner(id).and_then(|uid| self.dev_node(&uid));
                let nodes: Vec<usize> = owner.into_iter().chain(updates.iter().copied()).collect();
                self.link(id, &nodes, pass);
            }
        }
        self.carriers = carriers;
    }

    /// Joins the nodes sharing `id`: each joins the first earlier group it may join.
    fn link(&mut self, id: &Identifier, nodes: &[usize], pass: Pass) {
        let level = id.kind().priority();
        let mut groups: Vec<usize> = Vec::new();
        for &node in nodes {
            let r = self.forest.find(node);
            let mut placed = false;
            for &g_node in &groups {
                let g = self.forest.find(g_node);
                if g == r {
                    placed = true;
                    break;
                }
                match self.check(g, r, level, pass) {
                    Link::Join => {
                        self.forest.union(g, r);
                        placed = true;
                        break;
                    }
                    Link::Blocked => self.blocked.push((id.clone(), g_node, node)),
                    Link::Conflict => {}
                }
            }
            if !placed {
                groups.push(node);
            }
        }
    }

    fn check(&self, a: usize, b: usize, level: u8, pass: Pass) -> Link {
        if !self.forest.compatible(a, b, level) {
            return Link::Conflict;
        }
        let (da, db) = (&self.forest.data[a], &self.forest.data[b]);
        let both_existing = da.existing > 0 && db.existing > 0;
        let blocked = match pass {
            Pass::Hard => false,
            Pass::StrongMac => both_existing,
            Pass::MediumMac => both_existing || (da.strong && db.strong),
        };
        if blocked { Link::Blocked } else { Link::Join }
    }

    // ---- groups --------------------------------------------------------------------------------

    /// Current groups: those with updates in content order of their first update, then
    /// device-only groups by uid.
    fn groups(&mut self) -> Vec<Group> {
        let total = self.forest.parent.len();
        let mut slot: Vec<Option<usize>> = vec![None; total];
        let mut out: Vec<Group> = Vec::new();
        let order = self.order.clone();
        let nodes = order.into_iter().chain(self.n..total);
        for node in nodes {
            let root = self.forest.find(node);
            let idx = match slot[root] {
                Some(idx) => idx,
                None => {
                    out.push(Group {
                        root,
                        members: Vec::new(),
                        devices: Vec::new(),
                    });
                    slot[root] = Some(out.len() - 1);
                    out.len() - 1
                }
            };
            if node < self.n {
                out[idx].members.push(node);
            } else {
                out[idx].devices.push(node - self.n);
            }
        }
        out
    }

    fn seed_uid(&self, update: usize) -> DeviceUid {
        let obs = &self.batch[update];
        canonical_id(self.state.partition(), &self.ids[update], obs.ip)
    }

    // ---- step 3: new groups with strong identifiers --------------------------------------------

    fn resolve_new_strong_groups(&mut self) {
        for group in self.groups() {
            let root = self.forest.find(group.root);
            let data = &self.forest.data[root];
            let Some(&earliest) = group.members.first() else {
                continue;
            };
            if data.existing > 0 || !data.strong || data.generated.is_some() {
                continue;
            }
            let uid = self.seed_uid(earliest);
            self.forest.data[root].generated = Some(uid);
            if let Some(dev) = self.dev_node(&uid) {
                self.forest.union(root, dev);
            }
        }
    }

    // ---- step 4: groups without strong identifiers ---------------------------------------------

    fn is_weak(&self, root: usize) -> bool {
        let d = &self.forest.data[root];
        d.existing == 0 && !d.strong
    }

    /// Places the groups without strong identity in two tiers, re-settling IP holders between
    /// them so IP-only updates see the holders that medium-only groups produced: first groups
    /// with (medium) identifiers, then IP-only groups.
    fn place_weak_groups(&mut self) {
        let weak: Vec<Group> = self
            .groups()
            .into_iter()
            .filter(|g| !g.members.is_empty())
            .filter(|g| {
                let root = self.forest.find(g.root);
                self.is_weak(root)
            })
            .collect();
        let mut pending = vec![false; self.n];
        for g in &weak {
            g.members.iter().for_each(|&m| pending[m] = true);
        }
        let mut fresh: BTreeMap<IpAddr, Vec<usize>> = BTreeMap::new();
        for with_identifiers in [true, false] {
            let groups = self.groups();
            let holders = self.settle_ips(&groups, &pending, false);
            for g in &weak {
                let carries = g.members.iter().any(|&m| !self.ids[m].is_empty());
                if carries != with_identifiers || g.members.first().is_none_or(|&m| !pending[m]) {
                    continue;
                }
                self.place_by_ip(g, &holders, &mut fresh);
                g.members.iter().for_each(|&m| pending[m] = false);
            }
        }
    }

    /// Joins a weak group to the holder of its IP, else to a compatible new group with the same
    /// IP, else makes it a new device (or the existing device its canonical id names).
    fn place_by_ip(
        &mut self,
        group: &Group,
        holders: &BTreeMap<IpAddr, (usize, DeviceUid)>,
        fresh: &mut BTreeMap<IpAddr, Vec<usize>>,
    ) {
        let (Some(&earliest), Some(&latest)) = (group.members.first(), group.members.last()) else {
            return;
        };
        let root = self.forest.find(group.root);
        let ip = self.batch[latest].ip;
        if let Some(&(holder, _)) = holders.get(&ip) {
            let h = self.forest.find(holder);
            if h == root {
                return;
            }
            if self.forest.compatible(root, h, IP_LEVEL) {
                self.forest.union(root, h);
                return;
            }
        }
        let candidates = fresh.entry(ip).or_default();
        for &c in candidates.iter() {
            let c_root = self.forest.find(c);
            if self.forest.compatible(root, c_root, IP_LEVEL) {
                self.forest.union(root, c_root);
                return;
            }
        }
        let uid = self.seed_uid(earliest);
        match self.dev_node(&uid) {
            Some(dev) => {
                self.forest.union(root, dev);
            }
            None => {
                self.forest.data[root].generated = Some(uid);
                candidates.push(root);
            }
        }
    }

    // ---- uids, winners, IPs ----------------------------------------------------------------------

    /// The winning device of a group with devices (index into `dev_uids`).
    fn winner(&self, group: &Group) -> Option<usize> {
        if let [only] = group.devices[..] {
            return Some(only);
        }
        let claimed: BTreeSet<DeviceUid> = group
            .members
            .iter()
            .filter_map(|&m| self.batch[m].device_id)
            .collect();
        let named: Vec<usize> = group
            .devices
            .iter()
            .copied()
            .filter(|&j| claimed.contains(&self.dev_uids[j]))
            .collect();
        let candidates = if named.is_empty() {
            group.devices.clone()
        } else {
            named
        };
        let carried: BTreeSet<&Identifier> =
            group.members.iter().flat_map(|&m| &self.ids[m]).collect();
        candidates.into_iter().min_by_key(|&j| {
            let uid = self.dev_uids[j];
            let rank = self
                .state
                .held_by(&uid)
                .filter(|id| carried.contains(id))
                .map(|id| id.kind().priority())
                .min()
                .unwrap_or(u8::MAX);
            let last_seen = self.state.device(&uid).map(|d| d.last_seen);
            (rank, Reverse(last_seen), uid)
        })
    }

    fn group_uid(&self, group: &Group) -> DeviceUid {
        if let Some(j) = self.winner(group) {
            return self.dev_uids[j];
        }
        let root = group.root;
        match self.forest.data[root].generated {
            Some(uid) => uid,
            // Every group with updates gets a generated uid before decisions; a device-less group
            // without updates does not exist. Fall back to the seed of its earliest update.
            None => group
                .members
                .first()
                .map(|&m| self.seed_uid(m))
                .unwrap_or_else(|| crate::uid::uid_from_seed(self.state.partition())),
        }
    }

    /// The IP a group with updates claims, and how recent its evidence is.
    ///
    /// Normally the IP of the group's latest update, seen at the later of that update and the
    /// stored `last_seen` of a device of the group already holding that IP. A group whose
    /// updates are all older than the newest stored sighting of its devices is *stale* (a late
    /// or redelivered batch, or a batch another replica committed first): it must not move the
    /// device back to an old IP, so it claims the IP of its most recently seen device that
    /// holds one, as of that sighting (nothing when none holds one).
    ///
    /// While weak groups are being placed (`stale_aware` false) every group claims its latest
    /// update's IP, as the placement of IP-only updates must not depend on how recently the
    /// stored rows were refreshed (reprocessing a batch would place them differently).
    fn claim_of(&self, group: &Group, stale_aware: bool) -> Option<(IpAddr, Claim)> {
        let &latest = group.members.last()?;
        let obs = &self.batch[latest];
        let uid = self.group_uid(group);
        let stored: Vec<&DeviceRecord> = group
            .devices
            .iter()
            .filter_map(|&j| self.state.device(&self.dev_uids[j]))
            .collect();
        let horizon = stored.iter().map(|d| d.last_seen).max();
        if stale_aware && horizon.is_some_and(|h| obs.timestamp < h) {
            let best = stored
                .iter()
                .filter(|d| d.ip.is_some())
                .max_by_key(|d| (d.last_seen, Reverse(d.uid)))?;
            return Some((best.ip?, (best.last_seen, 1, Reverse(uid))));
        }
        let seen = stored
            .iter()
            .filter(|d| d.ip == Some(obs.ip))
            .map(|d| d.last_seen)
            .max()
            .map_or(obs.timestamp, |s| s.max(obs.timestamp));
        Some((obs.ip, (seen, 1, Reverse(uid))))
    }

    /// Settles IP claims: returns ip -> (root, uid) of the holder after this batch.
    /// Groups whose updates are still `pending` placement do not claim; `final_claims` says
    /// whether these are the final claims (stale groups keep their stored IP) or the interim
    /// ones used to place weak groups.
    fn settle_ips(
        &mut self,
        groups: &[Group],
        pending: &[bool],
        final_claims: bool,
    ) -> BTreeMap<IpAddr, (usize, DeviceUid)> {
        let mut best: BTreeMap<IpAddr, (Claim, usize, DeviceUid)> = BTreeMap::new();
        let mut offer = |ip: IpAddr, claim: Claim, root: usize, uid: DeviceUid| {
            let better = best.get(&ip).is_none_or(|(c, _, _)| claim > *c);
            if better {
                best.insert(ip, (claim, root, uid));
            }
        };
        for group in groups {
            let root = self.forest.find(group.root);
            if !group.members.is_empty() {
                if group.members.first().is_some_and(|&m| pending[m]) {
                    continue;
                }
                if let Some((ip, claim)) = self.claim_of(group, final_claims) {
                    let uid = claim.2.0;
                    offer(ip, claim, root, uid);
                }
            } else {
                for &j in &group.devices {
                    let uid = self.dev_uids[j];
                    if let Some(rec) = self.state.device(&uid)
                        && let Some(ip) = rec.ip
                    {
                        offer(ip, (rec.last_seen, 0, Reverse(uid)), root, uid);
                    }
                }
            }
        }
        best.into_iter()
            .map(|(ip, (_, root, uid))| (ip, (root, uid)))
            .collect()
    }

    // ---- decisions -------------------------------------------------------------------------------

    fn decide(mut self, groups: &[Group]) -> Outcome {
        let holders = self.settle_ips(groups, &vec![false; self.n], true);
        let mut out = Outcome::default();

        let mut group_uid: Vec<DeviceUid> = Vec::with_capacity(groups.len());
        let mut dev_slot: Vec<usize> = vec![0; self.dev_uids.len()];
        let mut dev_final: Vec<DeviceUid> = self.dev_uids.clone();
        let mut deleted: BTreeSet<DeviceUid> = BTreeSet::new();
        for (slot, group) in groups.iter().enumerate() {
            let uid = self.group_uid(group);
            group_uid.push(uid);
            for &j in &group.devices {
                dev_slot[j] = slot;
                dev_final[j] = uid;
                if self.dev_uids[j] != uid {
                    deleted.insert(self.dev_uids[j]);
                }
            }
        }
        let mut update_final: Vec<DeviceUid> =
            vec![DeviceUid::from_uuid(uuid::Uuid::nil()); self.n];
        for (group, uid) in groups.iter().zip(&group_uid) {
            for &m in &group.members {
                update_final[m] = *uid;
            }
        }
        let holder_after: BTreeMap<IpAddr, DeviceUid> =
            holders.iter().map(|(ip, (_, uid))| (*ip, *uid)).collect();

        let mut final_ip: BTreeMap<DeviceUid, Option<IpAddr>> = BTreeMap::new();
        for (group, &uid) in groups.iter().zip(&group_uid) {
            let root = group.root;
            if !group.members.is_empty() {
                let ip = self
                    .claim_of(group, true)
                    .map(|(ip, _)| ip)
                    .filter(|ip| holders.get(ip).is_some_and(|(r, _)| *r == root));
                final_ip.insert(uid, ip);
                self.decide_group(group, uid, ip, &mut out);
            } else {
                for &j in &group.devices {
                    let uid = self.dev_uids[j];
                    let Some(rec) = self.state.device(&uid) else {
                        continue;
                    };
                    let keeps = rec.ip.is_some_and(|ip| holder_after.get(&ip) == Some(&uid));
                    final_ip.insert(uid, if keeps { rec.ip } else { None });
                    if rec.ip.is_some() && !keeps {
                        let mut record = rec.clone();
                        record.ip = None;
                        out.updates.push(DeviceWrite {
                            record,
                            changed: BTreeSet::from([DeviceField::Ip]),
                        });
                    }
                }
            }
        }

        // Merges: every identifier of a merged-away device points straight at the survivor.
        for (j, &uid) in self.dev_uids.iter().enumerate() {
            let to = dev_final[j];
            if to == uid {
                continue;
            }
            let carried: BTreeSet<&Identifier> = groups[dev_slot[j]]
                .members
                .iter()
                .flat_map(|&m| &self.ids[m])
                .collect();
            let mut evidence = BTreeSet::new();
            for id in self.state.held_by(&uid) {
                out.identifier_repoints
                    .insert(id.clone(), IdentifierRepoint { from: uid, to });
                if carried.contains(id) {
                    evidence.insert(id.clone());
                }
            }
            out.merges.push(Merge {
                from: uid,
                to,
                evidence,
            });
            out.deletes.push(uid);
        }

        // Identifiers: first writer wins; other claimants are recorded as conflicts.
        let mut conflicts: BTreeSet<IdentifierConflict> = BTreeSet::new();
        for (id, updates) in &self.carriers {
            let holder = match self.state.owner(id) {
                Some(owner) => match self.dev_uids.binary_search(&owner) {
                    Ok(j) => dev_final[j],
                    Err(_) => owner,
                },
                None => {
                    let Some(&first) = updates.first() else {
                        continue;
                    };
                    let holder = update_final[first];
                    out.identifier_inserts.insert(id.clone(), holder);
                    holder
                }
            };
            for &u in updates {
                if update_final[u] != holder {
                    conflicts.insert(IdentifierConflict {
                        identifier: id.clone(),
                        held_by: holder,
                        claimed_by: update_final[u],
                    });
                }
            }
        }
        out.conflicts = conflicts.into_iter().collect();

        let mut blocked: BTreeSet<BlockedMerge> = BTreeSet::new();
        for (id, a, b) in std::mem::take(&mut self.blocked) {
            let ua = self.node_final(a, &update_final, &dev_final);
            let ub = self.node_final(b, &update_final, &dev_final);
            if ua != ub {
                blocked.insert(BlockedMerge {
                    identifier: id,
                    first: ua.min(ub),
                    second: ua.max(ub),
                });
            }
        }
        out.blocked_merges = blocked.into_iter().collect();

        // IP churn: holders that lost their IP to another device, and devices left without one.
        for uid in &self.dev_uids {
            if deleted.contains(uid) {
                continue;
            }
            let Some(ip) = self.state.device(uid).and_then(|d| d.ip) else {
                continue;
            };
            if let Some(&to) = holder_after.get(&ip)
                && to != *uid
            {
                out.ip_moves.push(IpMove { ip, from: *uid, to });
            }
            if final_ip.get(uid).copied().flatten().is_none() {
                out.ip_cleared.push(IpCleared { uid: *uid, ip });
            }
        }

        out.resolutions = update_final;
        out.inserts.sort_by_key(|r| r.uid);
        out.updates.sort_by_key(|w| w.record.uid);
        out.deletes.sort();
        out.merges.sort();
        out.ip_moves.sort();
        out.ip_cleared.sort();
        out
    }

    fn node_final(&self, node: usize, updates: &[DeviceUid], devs: &[DeviceUid]) -> DeviceUid {
        if node < self.n {
            updates[node]
        } else {
            devs[node - self.n]
        }
    }

    /// Builds the new row of a group with updates and records the write (or counts it
    /// unchanged).
    fn decide_group(&self, group: &Group, uid: DeviceUid, ip: Option<IpAddr>, out: &mut Outcome) {
        let stored = self.state.device(&uid);
        let base = stored.map(|winner| {
            let losers: Vec<&DeviceRecord> = group
                .devices
                .iter()
                .map(|&j| self.dev_uids[j])
                .filter(|u| *u != uid)
                .filter_map(|u| self.state.device(&u))
                .collect();
            merged_base(winner, losers)
        });
        let latest_first: Vec<&Observation> = group
            .members
            .iter()
            .rev()
            .map(|&m| &self.batch[m])
            .collect();
        let record = fold_updates(base, uid, &latest_first, ip, stored, self.cfg);
        match stored {
            None => out.inserts.push(record),
            Some(old) => {
                let changed = DeviceField::diff(old, &record);
                if changed.is_empty() {
                    out.unchanged += 1;
                } else {
                    out.updates.push(DeviceWrite { record, changed });
                }
            }
        }
    }
}

/// The winner's row merged with the merged-away rows: every stated value is the newest
/// statement among them (by stamp; equal stamps: the greater value), sources are united,
/// `first_seen` is the earliest and `last_seen` the latest of them.
fn merged_base(winner: &DeviceRecord, mut losers: Vec<&DeviceRecord>) -> DeviceRecord {
    let mut rec = winner.clone();
    if losers.is_empty() {
        return rec;
    }
    losers.sort_by_key(|d| (Reverse(d.last_seen), d.uid));
    let mut st = Stamper::new(
        winner.expanded_stamps(),
        winner.last_seen,
        TimeDelta::zero(),
    );
    for l in losers {
        let at = |key: &Stated| l.stamp(key).unwrap_or(l.last_seen);
        for key in &Stated::TYPED {
            if let (Some(slot), Some(from)) = (rec.column_mut(key), l.column(key)) {
                let newest = from.clone().map(|v| (at(key), v));
                st.apply(slot, || key.clone(), newest);
            }
        }
        let newest = l.is_available.map(|v| (at(&Stated::IsAvailable), v));
        st.apply(&mut rec.is_available, || Stated::IsAvailable, newest);
        for (k, v) in &l.metadata {
            let t = at(&Stated::Metadata(k.clone()));
            st.apply_metadata(&mut rec.metadata, k, (t, v));
        }
        for h in &l.sweep_hints {
            st.apply_hint(&mut rec.sweep_hints, (at(&hint_key(h)), h));
        }
        rec.discovery_sources
            .extend(l.discovery_sources.iter().cloned());
        rec.first_seen = rec.first_seen.min(l.first_seen);
        rec.last_seen = rec.last_seen.max(l.last_seen);
    }
    rec.stamps = st.stamps;
    rec.compress();
    rec
}

/// Decides the stamps of one row while its values are decided.
struct Stamper {
    /// Stamps decided so far: the row's own (only those before `fallback`, or all of them)
    /// and the ones this fold set.
    stamps: Stamps,
    /// The stamp of a value without an entry (the base row's `last_seen`).
    fallback: DateTime<Utc>,
    /// A restatement of the same value moves its stamp only when at least this much newer.
    precision: TimeDelta,
    /// A stamp equal to this is not recorded: the row's `last_seen` after the fold whenever
    /// anything moves (the batch's latest time, when not older than the row).
    implicit: Option<DateTime<Utc>>,
    /// True once a value or a stamp moved.
    moved: bool,
    /// Restatements of unchanged values, less than `precision` newer and older than
    /// `implicit`: they move their stamp only if the row is written anyway.
    pending: Vec<(Stated, DateTime<Utc>)>,
}

impl Stamper {
    fn new(stamps: Stamps, fallback: DateTime<Utc>, precision: TimeDelta) -> Self {
        Stamper {
            stamps,
            fallback,
            precision,
            implicit: None,
            moved: false,
            pending: Vec::new(),
        }
    }

    /// Applies the newest statement `(time, value)` of the value `key` names to its `slot`: a
    /// newer statement (equal times: a greater value) replaces the value and takes its time;
    /// a restatement of the same value moves the stamp when at least `precision` newer (else
    /// only if the row is written anyway); an older one changes nothing. Returns the time of
    /// the statement when the slot now holds its value.
    fn apply<V: Ord>(
        &mut self,
        slot: &mut Option<V>,
        key: impl Fn() -> Stated,
        newest: Option<(DateTime<Utc>, V)>,
    ) -> Option<DateTime<Utc>> {
        let (t, v) = newest?;
        let Some(old) = slot.as_ref() else {
            *slot = Some(v);
            self.set(key, t);
            return Some(t);
        };
        let s = if self.stamps.is_empty() {
            self.fallback
        } else {
            self.stamps.get(&key()).unwrap_or(self.fallback)
        };
        let now = (v == *old).then_some(t);
        if (t, &v) <= (s, old) {
            return now;
        }
        if v != *old {
            *slot = Some(v);
            self.set(key, t);
            return Some(t);
        }
        if t - s >= self.precision {
            self.set(key, t);
        } else if self.implicit != Some(t) {
            self.pending.push((key(), t));
        }
        now
    }

    fn set(&mut self, key: impl Fn() -> Stated, t: DateTime<Utc>) {
        self.moved = true;
        if self.implicit != Some(t) {
            self.stamps.set(key(), t);
        } else if !self.stamps.is_empty() {
            self.stamps.remove(&key());
        }
    }

    /// [`Stamper::apply`] for one metadata key (blank values state nothing).
    fn apply_metadata(
        &mut self,
        metadata: &mut BTreeMap<String, String>,
        k: &str,
        (t, v): (DateTime<Utc>, &str),
    ) -> Option<DateTime<Utc>> {
        if v.trim().is_empty() {
            return None;
        }
        let mut slot = metadata.remove(k);
        let now = self.apply(
            &mut slot,
            || Stated::Metadata(k.to_owned()),
            Some((t, v.to_owned())),
        );
        if let Some(v) = slot {
            metadata.insert(k.to_owned(), v);
        }
        now
    }

    /// [`Stamper::apply`] for the sweep hint of one (source, query label).
    fn apply_hint(
        &mut self,
        hints: &mut Vec<SweepHint>,
        (t, hint): (DateTime<Utc>, &SweepHint),
    ) -> Option<DateTime<Utc>> {
        let pos = hints.binary_search_by(|h| hint_order(h).cmp(&hint_order(hint)));
        let mut slot = pos.ok().map(|i| hints[i].clone());
        let now = self.apply(&mut slot, || hint_key(hint), Some((t, hint.clone())));
        if let Some(h) = slot {
            match pos {
                Ok(i) => hints[i] = h,
                Err(i) => hints.insert(i, h),
            }
        }
        now
    }

    /// Gives an explicit stamp (`fallback`) to a value the row holds that has none: it keeps
    /// its time while `last_seen` moves on.
    fn keep(&mut self, key: Stated) {
        if self.stamps.is_empty() || self.stamps.get(&key).is_none() {
            self.stamps.set(key, self.fallback);
        }
    }
}

/// The order of sweep hints in a row: by (source, query label).
fn hint_order(h: &SweepHint) -> HintKey<'_> {
    (h.source.as_str(), h.query_label.as_deref())
}

fn hint_key(h: &SweepHint) -> Stated {
    Stated::Hint(h.source.clone(), h.query_label.clone())
}

/// The newest `(time, value)` among the updates stating a value (equal times: the greatest).
fn newest<V: Ord>(
    updates: &[&Observation],
    value: impl Fn(&Observation) -> Option<V>,
) -> Option<(DateTime<Utc>, V)> {
    updates
        .iter()
        .filter_map(|o| value(o).map(|v| (o.timestamp, v)))
        .max()
}

/// Metadata keys that fill the typed columns, in preference order.
const TYPE_KEYS: [&str; 2] = ["device_type", "type"];
const VENDOR_KEYS: [&str; 2] = ["vendor", "manufacturer"];
const MODEL_KEYS: [&str; 1] = ["model"];
const OS_KEYS: [&str; 2] = ["os", "operating_system"];

/// What `o` states for the text column `key` names (see [`DeviceRecord::column`]).
fn stated_column<'o>(o: &'o Observation, key: &Stated) -> Option<Cow<'o, str>> {
    let meta = |keys: &[&str]| keys.iter().find_map(|k| o.meta(k)).map(Cow::Borrowed);
    match key {
        Stated::Hostname => o.hostname.as_deref().map(Cow::Borrowed),
        Stated::Mac => o.mac.map(|m| Cow::Owned(m.to_string())),
        Stated::AgentId => o.agent_id.as_deref().map(Cow::Borrowed),
        Stated::DeviceType => meta(&TYPE_KEYS),
        Stated::Vendor => meta(&VENDOR_KEYS),
        Stated::Model => meta(&MODEL_KEYS),
        Stated::Os => meta(&OS_KEYS),
        Stated::IsAvailable | Stated::Metadata(_) | Stated::Hint(..) => None,
    }
}

/// True when `record` holds every value `o` states, so that `o`, stated after every stamp of
/// the row, would change no value: its IP, source, typed values, availability, non-blank
/// metadata and sweep hint are the row's.
pub(crate) fn holds(record: &DeviceRecord, o: &Observation) -> bool {
    let column_held = |key: &Stated| {
        stated_column(o, key).is_none_or(|v| {
            record
                .column(key)
                .is_some_and(|c| c.as_deref() == Some(v.as_ref()))
        })
    };
    record.ip == Some(o.ip)
        && o.source
            .as_ref()
            .is_none_or(|s| record.discovery_sources.contains(s))
        && Stated::TYPED.iter().all(column_held)
        && o.is_available
            .is_none_or(|a| record.is_available == Some(a))
        && o.metadata
            .iter()
            .all(|(k, v)| v.trim().is_empty() || record.metadata.get(k) == Some(v))
        && o.sweep_hint()
            .is_none_or(|h| record.sweep_hints.contains(&h))
}

/// (source, query label) of a sweep hint.
type HintKey<'a> = (&'a str, Option<&'a str>);

/// Applies a device's updates (latest first) to its base row, order-independently.
///
/// Every stated value takes the newest statement among the row's (its stamp) and the updates'
/// (see [`Stamper::apply`]), so batches applied in any order (several replicas, redelivery
/// after a newer batch) end in the same row, whichever source states what. Sources are
/// united, `first_seen` is the earliest sighting and `last_seen` the latest, refreshed when it
/// is `last_seen_precision` old or when the row is written anyway; so are the stamps of
/// restated values.
pub(crate) fn fold_updates(
    base: Option<DeviceRecord>,
    uid: DeviceUid,
    latest_first: &[&Observation],
    ip: Option<IpAddr>,
    stored: Option<&DeviceRecord>,
    cfg: &ReconcileConfig,
) -> DeviceRecord {
    let precision = cfg.last_seen_precision;
    let t_max = latest_first.iter().map(|o| o.timestamp).max();
    let t_min = latest_first.iter().map(|o| o.timestamp).min();
    let (mut rec, mut st) = match (base, t_min) {
        (Some(mut b), _) => {
            let stamps = std::mem::take(&mut b.stamps);
            let st = Stamper::new(stamps, b.last_seen, precision);
            (b, st)
        }
        (None, t) => {
            let t = t.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
            (
                DeviceRecord::new(uid, t),
                Stamper::new(Stamps::default(), t, precision),
            )
        }
    };
    let base_seen = rec.last_seen;
    st.implicit = t_max.filter(|t| *t >= base_seen);
    rec.uid = uid;
    // Which values now hold the batch's statement at its latest time (their stamp becomes
    // the new `last_seen` when the row is written); typed ones in `Stated::TYPED` order.
    let mut typed_now = [false; 8];
    for (i, key) in Stated::TYPED.iter().enumerate() {
        let now = match rec.column_mut(key) {
            Some(slot) => {
                let value = |o: &Observation| stated_column(o, key).map(Cow::into_owned);
                st.apply(slot, || key.clone(), newest(latest_first, value))
            }
            None => {
                let available = newest(latest_first, |o| o.is_available);
                st.apply(&mut rec.is_available, || Stated::IsAvailable, available)
            }
        };
        typed_now[i] = now.is_some() && now == t_max;
    }
    let mut meta: BTreeMap<&str, (DateTime<Utc>, &str)> = BTreeMap::new();
    for o in latest_first {
        for (k, v) in &o.metadata {
            let stated = (o.timestamp, v.as_str());
            if !v.trim().is_empty() && meta.get(k.as_str()).is_none_or(|m| stated > *m) {
                meta.insert(k, stated);
            }
        }
    }
    let mut meta_now: Vec<&str> = Vec::new();
    for (k, stated) in meta {
        let now = st.apply_metadata(&mut rec.metadata, k, stated);
        if now.is_some() && now == t_max {
            meta_now.push(k);
        }
    }
    let hints: Vec<(DateTime<Utc>, SweepHint)> = latest_first
        .iter()
        .filter_map(|o| o.sweep_hint().map(|h| (o.timestamp, h)))
        .collect();
    let mut newest_hints: BTreeMap<HintKey<'_>, (DateTime<Utc>, &SweepHint)> = BTreeMap::new();
    for (t, h) in &hints {
        let key = hint_order(h);
        if newest_hints.get(&key).is_none_or(|m| (*t, h) > *m) {
            newest_hints.insert(key, (*t, h));
        }
    }
    let mut hints_now: Vec<HintKey<'_>> = Vec::new();
    for (key, stated) in newest_hints {
        let now = st.apply_hint(&mut rec.sweep_hints, stated);
        if now.is_some() && now == t_max {
            hints_now.push(key);
        }
    }
    rec.discovery_sources
        .extend(latest_first.iter().filter_map(|o| o.source.clone()));
    rec.ip = ip;
    if let Some(t) = t_min {
        rec.first_seen = rec.first_seen.min(t);
    }
    if let Some(t) = t_max {
        match stored {
            None => rec.last_seen = rec.last_seen.max(t),
            Some(old) => {
                // Values, sources, IP, first_seen; stamps compare through `moved` (the row's
                // own are in `st` and replace these below).
                rec.stamps.clone_from(&old.stamps);
                let other_changed = st.moved || rec != *old;
                let stale = t - rec.last_seen >= precision;
                if other_changed || (stale && t > rec.last_seen) {
                    // Written anyway: restated values take the time they were restated.
                    for (key, at) in std::mem::take(&mut st.pending) {
                        st.stamps.set(key, at);
                    }
                }
                if t > rec.last_seen && (other_changed || stale) {
                    rec.last_seen = t;
                }
            }
        }
    }
    if rec.last_seen > base_seen && stored.is_some() {
        // `last_seen` moves on: values not restated now keep their own time.
        for (key, now) in Stated::TYPED.into_iter().zip(typed_now) {
            if !now && rec.has(&key) {
                st.keep(key);
            }
        }
        for k in rec.metadata.keys() {
            if !meta_now.contains(&k.as_str()) {
                st.keep(Stated::Metadata(k.clone()));
            }
        }
        for h in &rec.sweep_hints {
            if !hints_now.contains(&hint_order(h)) {
                st.keep(hint_key(h));
            }
        }
    }
    rec.stamps = st.stamps;
    rec.compress();
    rec
}
