//! [`SweepIndex`]: the devices of one (tenant, partition), kept ready for compiling any agent's
//! sweep config quickly and for telling which agents a change affects.
//!
//! Layout: each device's normalised form is stored once (profiles and agent names interned, as
//! most devices are reported alike). A slot per address holds the devices holding it, a
//! summary of their agents (its scope), and the outcome compiled with all of them visible
//! (target, target digest, warnings) — the only outcome needed unless DIRE let devices of
//! different agents share an address. Slots are shelved by scope in ordered maps (one per
//! assigned agent, one for unassigned addresses, one for mixed ones), so compiling an agent is
//! one in-order merge of its own, the unassigned and the mixed shelves — it never visits
//! another agent's addresses — that lends the cached targets and hashes the cached digests: no
//! sorting, no per-target allocation. An upsert or removal recompiles only the slots of the
//! device's addresses (moving a slot to another shelf when its scope changes).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use crate::compile::assemble;
use crate::model::{CompileOptions, CompiledSweep, SourcePolicies, SweepDevice};
use crate::profile::{Defaults, NormalDevice, Profile};
use crate::target::{AddressOutcome, Contribution, compile_address};

/// Which agents' sweep configs a change may have altered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Affected {
    /// No config changed (the device was unchanged, unknown, or has no address).
    Nothing,
    /// Only these agents' configs (the device's old and new agent).
    Agents(BTreeSet<String>),
    /// Every agent of the partition (an unassigned device, or a policy/option change).
    AllAgents,
}

impl Affected {
    /// Whether `agent_id`'s config may have changed.
    #[must_use]
    pub fn includes(&self, agent_id: &str) -> bool {
        match self {
            Self::Nothing => false,
            Self::Agents(agents) => agents.contains(agent_id.trim()),
            Self::AllAgents => true,
        }
    }

    /// The agents to recompile: `known_agents` (the partition's agents) for
    /// [`Affected::AllAgents`], the named agents for [`Affected::Agents`] (whether known or not),
    /// nothing for [`Affected::Nothing`].
    #[must_use]
    pub fn resolve<'a, I>(&self, known_agents: I) -> BTreeSet<String>
    where
        I: IntoIterator<Item = &'a str>,
    {
        match self {
            Self::Nothing => BTreeSet::new(),
            Self::Agents(agents) => agents.clone(),
            Self::AllAgents => known_agents.into_iter().map(str::to_owned).collect(),
        }
    }

    /// Adds the scope of a device version that has addresses: its agent, or every agent.
    fn with_scope(self, entry: &Entry) -> Self {
        if entry.addrs.is_empty() {
            return self;
        }
        match (self, &entry.agent) {
            (Self::AllAgents, _) | (_, None) => Self::AllAgents,
            (Self::Nothing, Some(agent)) => Self::Agents(BTreeSet::from([agent.to_string()])),
            (Self::Agents(mut agents), Some(agent)) => {
                agents.insert(agent.to_string());
                Self::Agents(agents)
            }
        }
    }
}

/// A device as the index keeps it.
#[derive(Debug)]
struct Entry {
    uid: Arc<str>,
    /// Interned: all devices of an agent share one allocation.
    agent: Option<Arc<str>>,
    addrs: Vec<IpAddr>,
    /// Interned: devices reported alike share one profile.
    profile: Arc<Profile>,
}

impl Entry {
    fn visible_to(&self, agent: &str) -> bool {
        self.agent.as_deref().is_none_or(|own| own == agent)
    }
}

/// Who holds an address, summarised so that a walk rarely needs to look at the holders.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Scope {
    /// Every holder is unassigned: visible to all agents.
    Unassigned,
    /// Every holder is assigned to this agent.
    Agent(Arc<str>),
    /// Anything else.
    Mixed,
}

/// Slots by scope, each in address order; every slot is on exactly one shelf.
#[derive(Debug, Default)]
struct Shelves {
    unassigned: BTreeMap<IpAddr, Slot>,
    mixed: BTreeMap<IpAddr, Slot>,
    agents: HashMap<Arc<str>, BTreeMap<IpAddr, Slot>>,
    /// The scope (shelf) of each address.
    scope_of: HashMap<IpAddr, Scope>,
}

impl Shelves {
    /// Shelves for slots given in address order (the bulk load).
    fn from_sorted(slots: impl Iterator<Item = (IpAddr, Slot)>) -> Self {
        let mut unassigned = Vec::new();
        let mut mixed = Vec::new();
        let mut agents: HashMap<Arc<str>, Vec<(IpAddr, Slot)>> = HashMap::new();
        let mut scope_of = HashMap::new();
        for (addr, slot) in slots {
            scope_of.insert(addr, slot.scope.clone());
            match &slot.scope {
                Scope::Unassigned => unassigned.push((addr, slot)),
                Scope::Mixed => mixed.push((addr, slot)),
                Scope::Agent(agent) => agents
                    .entry(Arc::clone(agent))
                    .or_default()
                    .push((addr, slot)),
            }
        }
        // Collected from sorted input: bulk construction.
        Self {
            unassigned: unassigned.into_iter().collect(),
            mixed: mixed.into_iter().collect(),
            agents: agents
                .into_iter()
                .map(|(agent, slots)| (agent, slots.into_iter().collect()))
                .collect(),
            scope_of,
        }
    }

    fn shelf_mut(&mut self, scope: &Scope) -> &mut BTreeMap<IpAddr, Slot> {
        match scope {
            Scope::Unassigned => &mut self.unassigned,
            Scope::Mixed => &mut self.mixed,
            Scope::Agent(agent) => self.agents.entry(Arc::clone(agent)).or_default(),
        }
    }

    /// Takes the slot of `addr` off its shelf.
    fn take(&mut self, addr: &IpAddr) -> Option<Slot> {
        let scope = self.scope_of.remove(addr)?;
        let slot = self.shelf_mut(&scope).remove(addr);
        if let Scope::Agent(agent) = &scope
            && self.agents.get(agent).is_some_and(BTreeMap::is_empty)
        {
            self.agents.remove(agent);
        }
        slot
    }

    /// Puts a slot on the shelf of its scope.
    fn put(&mut self, addr: IpAddr, slot: Slot) {
        self.scope_of.insert(addr, slot.scope.clone());
        let scope = slot.scope.clone();
        self.shelf_mut(&scope).insert(addr, slot);
    }

    fn values_mut(&mut self) -> impl Iterator<Item = (&IpAddr, &mut Slot)> {
        self.unassigned
            .iter_mut()
            .chain(self.mixed.iter_mut())
            .chain(self.agents.values_mut().flat_map(|s| s.iter_mut()))
    }

    /// The slots `agent` may see (its own, unassigned and mixed ones), in address order.
    fn visible<'a>(&'a self, agent: &str) -> impl Iterator<Item = (&'a IpAddr, &'a Slot)> + 'a {
        let own = self.agents.get(agent).into_iter().flatten();
        Merge::new(Merge::new(own, self.unassigned.iter()), self.mixed.iter())
    }
}

/// Merges two iterators of slots ascending by address (disjoint addresses) into one.
struct Merge<'a, A, B>
where
    A: Iterator<Item = (&'a IpAddr, &'a Slot)>,
    B: Iterator<Item = (&'a IpAddr, &'a Slot)>,
{
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

impl<'a, A, B> Merge<'a, A, B>
where
    A: Iterator<Item = (&'a IpAddr, &'a Slot)>,
    B: Iterator<Item = (&'a IpAddr, &'a Slot)>,
{
    fn new(a: A, b: B) -> Self {
        Self {
            a: a.peekable(),
            b: b.peekable(),
        }
    }
}

impl<'a, A, B> Iterator for Merge<'a, A, B>
where
    A: Iterator<Item = (&'a IpAddr, &'a Slot)>,
    B: Iterator<Item = (&'a IpAddr, &'a Slot)>,
{
    type Item = (&'a IpAddr, &'a Slot);

    fn next(&mut self) -> Option<Self::Item> {
        match (self.a.peek(), self.b.peek()) {
            (Some((x, _)), Some((y, _))) if y < x => self.b.next(),
            (Some(_), _) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let (al, ah) = self.a.size_hint();
        let (bl, bh) = self.b.size_hint();
        (
            al.saturating_add(bl),
            ah.and_then(|a| bh.and_then(|b| a.checked_add(b))),
        )
    }
}

/// The devices holding one address and the outcome of compiling it with all of them.
#[derive(Debug)]
struct Slot {
    /// Sorted by uid, never empty.
    holders: Vec<Arc<Entry>>,
    scope: Scope,
    /// Inline (its target is boxed): a walk reads digests and summaries in map order.
    outcome: AddressOutcome,
}

impl Slot {
    fn new(addr: IpAddr) -> Self {
        Self {
            holders: Vec::with_capacity(1),
            scope: Scope::Mixed,
            outcome: AddressOutcome::empty(addr),
        }
    }

    fn rescope(&mut self) {
        let mut agents = self.holders.iter().map(|h| &h.agent);
        let first = agents.next().cloned().flatten();
        self.scope = if self.holders.iter().all(|h| h.agent == first) {
            first.map_or(Scope::Unassigned, Scope::Agent)
        } else {
            Scope::Mixed
        };
    }
}

/// The sweep-relevant devices of one (tenant, partition), keyed by uid, with the source
/// policies and options to compile them under.
#[derive(Debug)]
pub struct SweepIndex {
    policies: SourcePolicies,
    options: CompileOptions,
    defaults: Defaults,
    devices: HashMap<Arc<str>, Arc<Entry>>,
    slots: Shelves,
    /// Number of devices per assigned agent (and the interned names).
    agents: HashMap<Arc<str>, usize>,
    profiles: HashSet<Arc<Profile>>,
}

impl SweepIndex {
    /// An empty index.
    #[must_use]
    pub fn new(policies: SourcePolicies, options: CompileOptions) -> Self {
        Self {
            defaults: Defaults::of(&options),
            policies,
            options,
            devices: HashMap::new(),
            slots: Shelves::default(),
            agents: HashMap::new(),
            profiles: HashSet::new(),
        }
    }

    /// Bulk load: the same state as upserting each device in turn (a later device with the
    /// same uid replaces an earlier one), but every address is compiled only once.
    #[must_use]
    pub fn from_devices<I>(devices: I, policies: SourcePolicies, options: CompileOptions) -> Self
    where
        I: IntoIterator<Item = SweepDevice>,
    {
        let mut index = Self::new(policies, options);
        // One ordered map while loading; compiled and shelved once at the end.
        let mut staging: BTreeMap<IpAddr, Slot> = BTreeMap::new();
        for device in devices {
            let entry = index.entry_of(&device);
            if let Some(old) = index.devices.remove(&entry.uid) {
                index.count_out(&old);
                for addr in &old.addrs {
                    if let Some(slot) = staging.get_mut(addr) {
                        slot.holders.retain(|h| !Arc::ptr_eq(h, &old));
                        if slot.holders.is_empty() {
                            staging.remove(addr);
                        }
                    }
                }
                index.release(old);
            }
            index.count_in(&entry);
            for addr in &entry.addrs {
                let slot = staging.entry(*addr).or_insert_with(|| Slot::new(*addr));
                let at = slot
                    .holders
                    .partition_point(|h| h.uid.as_ref() < entry.uid.as_ref());
                slot.holders.insert(at, Arc::clone(&entry));
            }
            index.devices.insert(Arc::clone(&entry.uid), entry);
        }
        let (policies, defaults) = (&index.policies, &index.defaults);
        index.slots = Shelves::from_sorted(staging.into_iter().map(|(addr, mut slot)| {
            slot.rescope();
            slot.outcome = outcome_of(addr, &slot.holders, policies, defaults);
            (addr, slot)
        }));
        index
    }

    /// Inserts or replaces the device with `device.uid`, and says whose configs changed.
    pub fn upsert(&mut self, device: SweepDevice) -> Affected {
        let entry = self.entry_of(&device);
        if let Some(old) = self.devices.get(&entry.uid)
            && old.agent == entry.agent
            && old.addrs == entry.addrs
            && old.profile == entry.profile
        {
            return Affected::Nothing;
        }
        let affected = match self.devices.remove(&entry.uid) {
            Some(old) => {
                self.detach(&old);
                let affected = Affected::Nothing.with_scope(&old);
                self.release(old);
                affected
            }
            None => Affected::Nothing,
        };
        self.attach(&entry);
        let affected = affected.with_scope(&entry);
        self.devices.insert(Arc::clone(&entry.uid), entry);
        affected
    }

    /// Removes the device with this uid, if present, and says whose configs changed.
    pub fn remove(&mut self, uid: &str) -> Affected {
        match self.devices.remove(uid) {
            Some(old) => {
                self.detach(&old);
                let affected = Affected::Nothing.with_scope(&old);
                self.release(old);
                affected
            }
            None => Affected::Nothing,
        }
    }

    /// Replaces the source policies; every agent is affected unless they are unchanged.
    pub fn set_policies(&mut self, policies: SourcePolicies) -> Affected {
        if policies == self.policies {
            return Affected::Nothing;
        }
        self.policies = policies;
        self.recompile_all_slots();
        Affected::AllAgents
    }

    /// Replaces the compile options; every agent is affected unless they are unchanged.
    pub fn set_options(&mut self, options: CompileOptions) -> Affected {
        if options == self.options {
            return Affected::Nothing;
        }
        self.defaults = Defaults::of(&options);
        self.options = options;
        self.recompile_all_slots();
        Affected::AllAgents
    }

    /// Number of devices.
    #[must_use]
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// Whether the index holds no device.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// Whether a device with this uid is present.
    #[must_use]
    pub fn contains(&self, uid: &str) -> bool {
        self.devices.contains_key(uid)
    }

    /// The agents at least one device is assigned to, sorted. (Agents of the partition without
    /// assigned devices still get the unassigned devices: the caller knows those agents.)
    #[must_use]
    pub fn assigned_agents(&self) -> Vec<&str> {
        let mut agents: Vec<&str> = self.agents.keys().map(|a| &**a).collect();
        agents.sort_unstable();
        agents
    }

    /// The source policies in force.
    #[must_use]
    pub fn policies(&self) -> &SourcePolicies {
        &self.policies
    }

    /// The compile options in force.
    #[must_use]
    pub fn options(&self) -> &CompileOptions {
        &self.options
    }

    /// The sweep config of `agent_id`: equal to [`crate::compile`] over
    /// [`crate::devices_for_agent`] of the index's devices, with targets borrowed from the index
    /// (call [`CompiledSweep::into_owned`] to keep it past the next change). One in-order walk
    /// of the index's addresses; no per-target allocation.
    #[must_use]
    pub fn compile_for(&self, agent_id: &str) -> CompiledSweep<'_> {
        let agent = agent_id.trim();
        let outcomes = self
            .slots
            .visible(agent)
            .filter_map(move |(addr, slot)| self.outcome_for(*addr, slot, agent));
        assemble(outcomes, &self.defaults)
    }

    /// What the slot contributes to `agent`'s config: the cached outcome when every holder is
    /// visible to it, a fresh compile of the visible holders otherwise, nothing when none is.
    fn outcome_for<'s>(
        &'s self,
        addr: IpAddr,
        slot: &'s Slot,
        agent: &str,
    ) -> Option<Cow<'s, AddressOutcome>> {
        let all_visible = match &slot.scope {
            Scope::Unassigned => true,
            Scope::Agent(own) => {
                if **own != *agent {
                    return None;
                }
                true
            }
            Scope::Mixed => slot.holders.iter().all(|h| h.visible_to(agent)),
        };
        if all_visible {
            return Some(Cow::Borrowed(&slot.outcome));
        }
        let visible: Vec<Contribution<'_>> = slot
            .holders
            .iter()
            .filter(|h| h.visible_to(agent))
            .map(|h| contribution(h))
            .collect();
        if visible.is_empty() {
            return None;
        }
        Some(Cow::Owned(compile_address(
            addr,
            &visible,
            &self.policies,
            &self.defaults,
        )))
    }

    fn entry_of(&mut self, device: &SweepDevice) -> Arc<Entry> {
        let normal = NormalDevice::of(device);
        let agent = normal
            .agent
            .map(|name| match self.agents.get_key_value(name.as_str()) {
                Some((known, _)) => Arc::clone(known),
                None => Arc::from(name),
            });
        let profile = match self.profiles.get(&normal.profile) {
            Some(known) => Arc::clone(known),
            None => {
                let fresh = Arc::new(normal.profile);
                self.profiles.insert(Arc::clone(&fresh));
                fresh
            }
        };
        Arc::new(Entry {
            uid: Arc::from(device.uid.as_str()),
            agent,
            addrs: normal.addrs,
            profile,
        })
    }

    /// Drops a detached device, and its interned profile when no other device uses it.
    fn release(&mut self, old: Arc<Entry>) {
        let profile = Arc::clone(&old.profile);
        drop(old);
        // Held by the interner and by `profile` only: no device uses it any more.
        if Arc::strong_count(&profile) == 2 {
            self.profiles.remove(&*profile);
        }
    }

    fn count_in(&mut self, entry: &Entry) {
        if let Some(agent) = &entry.agent {
            *self.agents.entry(Arc::clone(agent)).or_default() += 1;
        }
    }

    fn count_out(&mut self, entry: &Entry) {
        if let Some(agent) = &entry.agent
            && let Some(count) = self.agents.get_mut(agent)
        {
            *count -= 1;
            if *count == 0 {
                self.agents.remove(agent);
            }
        }
    }

    fn attach(&mut self, entry: &Arc<Entry>) {
        self.count_in(entry);
        for addr in &entry.addrs {
            let mut slot = self.slots.take(addr).unwrap_or_else(|| Slot::new(*addr));
            let at = slot
                .holders
                .partition_point(|h| h.uid.as_ref() < entry.uid.as_ref());
            slot.holders.insert(at, Arc::clone(entry));
            slot.rescope();
            slot.outcome = outcome_of(*addr, &slot.holders, &self.policies, &self.defaults);
            self.slots.put(*addr, slot);
        }
    }

    fn detach(&mut self, entry: &Arc<Entry>) {
        self.count_out(entry);
        for addr in &entry.addrs {
            let Some(mut slot) = self.slots.take(addr) else {
                continue;
            };
            slot.holders.retain(|h| !Arc::ptr_eq(h, entry));
            if slot.holders.is_empty() {
                continue;
            }
            slot.rescope();
            slot.outcome = outcome_of(*addr, &slot.holders, &self.policies, &self.defaults);
            self.slots.put(*addr, slot);
        }
    }

    fn recompile_all_slots(&mut self) {
        let (policies, defaults) = (&self.policies, &self.defaults);
        for (addr, slot) in self.slots.values_mut() {
            slot.outcome = outcome_of(*addr, &slot.holders, policies, defaults);
        }
    }
}

fn contribution(entry: &Entry) -> Contribution<'_> {
    Contribution {
        uid: &entry.uid,
        profile: &entry.profile,
    }
}

fn outcome_of(
    addr: IpAddr,
    holders: &[Arc<Entry>],
    policies: &SourcePolicies,
    defaults: &Defaults,
) -> AddressOutcome {
    match holders {
        [only] => compile_address(addr, &[contribution(only)], policies, defaults),
        many => {
            let all: Vec<Contribution<'_>> = many.iter().map(|h| contribution(h)).collect();
            compile_address(addr, &all, policies, defaults)
        }
    }
}
