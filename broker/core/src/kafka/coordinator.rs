//! The group coordinator: consumer-group membership as a state machine (Kafka's classic
//! group protocol), with time given as an argument.
//!
//! One [`Coordinator`] serves every group of the broker; the server runs it on one thread
//! and hands it the group requests of every connection ([`GroupOp`]). A request is named by
//! a [`Waiter`] the caller chooses; answers come out as [`Action`]s, at once or later
//! (a JoinGroup waits until the rebalance completes, a follower's SyncGroup until the
//! leader's assignment arrives). Every waiter is answered exactly once: when its rebalance
//! completes, when its member is removed, or when a newer request of the same member takes
//! its place.
//!
//! A group moves through Kafka's states:
//! - **PreparingRebalance**: members (re)join. It completes when every member has rejoined,
//!   or at the rebalance deadline (the largest rebalance timeout of the members), when
//!   members that have not rejoined are removed. A group that starts from nothing waits
//!   `initial_rebalance_delay_ms` first, so that members starting together land in one
//!   generation.
//! - **CompletingRebalance**: the generation is numbered, a protocol chosen (the one every
//!   member supports that most members prefer), the leader answered with every member's
//!   metadata; members' SyncGroups wait for the leader's assignment. Members that have not
//!   sent SyncGroup by the rebalance deadline are removed and a new rebalance starts.
//! - **Stable**: members heartbeat within their session timeout or are removed, which
//!   starts a rebalance; so do a leave, a new member, and a member joining with different
//!   protocols (or the leader joining again).
//!
//! A group with no member is forgotten (its committed offsets stay in the log, and
//! ListGroups and DescribeGroups show it as `Empty`); the next member starts it again at
//! generation 1. Membership is not persisted: after a restart every member gets
//! UNKNOWN_MEMBER_ID at its next heartbeat and joins again, keeping its committed offsets.
//!
//! Static members (`group.instance.id`) are accepted: a join with a known instance id and
//! no member id replaces the member that had it (its pending requests get
//! FENCED_INSTANCE_ID) and starts a rebalance, where Kafka would hand over without one.

use std::collections::HashMap;

use weir_kafka::error::ErrorCode;
use weir_kafka::membership::{
    DescribedGroup, DescribedMember, HeartbeatRequest, JoinRequest, JoinResponse, JoinedMember,
    LeaveRequest, ListedGroup, SyncRequest, SyncResponse,
};
use weir_kafka::offsets::CommitRequest;

pub use super::op::{GroupAnswer, GroupOp};
use super::op::{KafkaOp, KafkaOpResult, commit_refused};
use crate::log_store::{GROUP_ID_BYTES_MAX, LogStore};

/// The coordinator's bounds, from the broker's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLimits {
    /// Shortest session timeout a member may ask for.
    pub session_timeout_ms_min: u64,
    /// Longest session timeout a member may ask for; also caps rebalance timeouts.
    pub session_timeout_ms_max: u64,
    /// How long a group starting from nothing waits for more members before its first
    /// generation.
    pub initial_rebalance_delay_ms: u64,
    /// Members in one group.
    pub members_max: usize,
    /// Groups with members, all together.
    pub groups_max: usize,
}

/// Names a request waiting for its answer; chosen by the caller.
pub type Waiter = u64;

/// What the caller must do after [`Coordinator::handle`] or [`Coordinator::tick`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Answer the waiter.
    Reply(Waiter, KafkaOpResult),
    /// Run the operation on the log's writer thread ([`super::run_op`]) and answer the
    /// waiter with its result.
    Write(Waiter, KafkaOp),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}

#[derive(Debug)]
struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: u64,
    rebalance_timeout_ms: u64,
    protocols: Vec<(String, Vec<u8>)>,
    assignment: Vec<u8>,
    /// A JoinGroup waiting for the rebalance to complete.
    join: Option<Waiter>,
    /// A SyncGroup waiting for the leader's assignment.
    sync: Option<Waiter>,
    last_heard_ms: u64,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Vec<u8> {
        (self.protocols.iter())
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }
}

#[derive(Debug)]
struct Group {
    state: State,
    generation: i32,
    protocol_type: String,
    protocol: Option<String>,
    leader: Option<String>,
    /// In join order.
    members: Vec<Member>,
    /// PreparingRebalance: when the join completes anyway. CompletingRebalance: when
    /// members that have not synced are removed.
    deadline_ms: u64,
    /// The first rebalance of a new group: it completes only at its deadline.
    initial: bool,
}

impl Group {
    fn member(&mut self, id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    fn rebalance_timeout_ms(&self) -> u64 {
        self.members
            .iter()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0)
    }

    /// Whether `protocols` shares a protocol with every member.
    fn compatible(&self, protocol_type: &str, protocols: &[(String, Vec<u8>)]) -> bool {
        if self.members.is_empty() {
            return true;
        }
        protocol_type == self.protocol_type
            && protocols.iter().any(|(name, _)| {
                (self.members.iter()).all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
    }

    /// The protocol every member supports that most members prefer (ties: the first
    /// member's order).
    fn choose_protocol(&self) -> Option<String> {
        let supported =
            |name: &str| (self.members.iter()).all(|m| m.protocols.iter().any(|(n, _)| n == name));
        let first = self.members.first()?;
        let candidates: Vec<&str> = (first.protocols.iter())
            .map(|(name, _)| name.as_str())
            .filter(|name| supported(name))
            .collect();
        let mut votes = vec![0usize; candidates.len()];
        for member in &self.members {
            let preferred = (member.protocols.iter())
                .find_map(|(name, _)| candidates.iter().position(|c| c == name));
            if let Some(index) = preferred {
                votes[index] += 1;
            }
        }
        let best = votes.iter().max().copied()?;
        let index = votes.iter().position(|v| *v == best)?;
        Some(candidates.get(index)?.to_string())
    }

    /// Answers the pending join of `member_id` with the current generation.
    fn answer_join_again(&mut self, member_id: &str, out: &mut Vec<Action>) {
        let Some(index) = self.members.iter().position(|m| m.id == member_id) else {
            return;
        };
        let answer = self.join_answer(&self.members[index]);
        if let Some(waiter) = self.members[index].join.take() {
            out.push(joined(waiter, answer));
        }
    }

    fn join_answer(&self, member: &Member) -> JoinResponse {
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let members = if member.id == leader {
            (self.members.iter())
                .map(|m| JoinedMember {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    metadata: m.metadata(&protocol),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResponse {
            error_code: 0,
            generation_id: self.generation,
            protocol_type: Some(self.protocol_type.clone()),
            protocol_name: Some(protocol),
            leader,
            member_id: member.id.clone(),
            members,
        }
    }

    fn sync_answer(&self, member: &Member) -> SyncResponse {
        SyncResponse {
            error_code: 0,
            protocol_type: Some(self.protocol_type.clone()),
            protocol_name: self.protocol.clone(),
            assignment: member.assignment.clone(),
        }
    }

    /// Removes member `index`, answering what it waits for with `error_code`.
    fn remove(&mut self, index: usize, error_code: i16, out: &mut Vec<Action>) {
        let member = self.members.remove(index);
        if let Some(waiter) = member.join {
            out.push(joined(
                waiter,
                JoinResponse::failed(error_code, member.id.clone()),
            ));
        }
        if let Some(waiter) = member.sync {
            out.push(synced(waiter, SyncResponse::failed(error_code)));
        }
        if self.leader.as_deref() == Some(member.id.as_str()) {
            self.leader = None;
        }
    }

    /// Starts a rebalance: pending syncs are told to join again.
    fn prepare_rebalance(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        for member in &mut self.members {
            if let Some(waiter) = member.sync.take() {
                out.push(synced(
                    waiter,
                    SyncResponse::failed(ErrorCode::RebalanceInProgress.code()),
                ));
            }
        }
        self.state = State::PreparingRebalance;
        self.initial = false;
        self.deadline_ms = now_ms.saturating_add(self.rebalance_timeout_ms());
    }

    /// After a membership change: a stable or completing group rebalances; a preparing one
    /// may now be complete.
    fn membership_changed(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        match self.state {
            State::Stable | State::CompletingRebalance => self.prepare_rebalance(now_ms, out),
            State::PreparingRebalance => self.maybe_complete_join(now_ms, out),
        }
    }

    /// Completes the join phase if every member has rejoined (after the initial delay) or
    /// the deadline has passed.
    fn maybe_complete_join(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        if self.state != State::PreparingRebalance {
            return;
        }
        let everyone = self.members.iter().all(|m| m.join.is_some());
        let due = now_ms >= self.deadline_ms;
        if !(due || (everyone && !self.initial)) {
            return;
        }
        // Members that did not rejoin in time leave the group.
        while let Some(index) = self.members.iter().position(|m| m.join.is_none()) {
            self.remove(index, ErrorCode::UnknownMemberId.code(), out);
        }
        self.generation = self.generation.wrapping_add(1).max(1);
        if self.members.is_empty() {
            return;
        }
        self.protocol = self.choose_protocol();
        if self.leader.is_none() {
            self.leader = self.members.first().map(|m| m.id.clone());
        }
        self.state = State::CompletingRebalance;
        self.initial = false;
        self.deadline_ms = now_ms.saturating_add(self.rebalance_timeout_ms());
        for index in 0..self.members.len() {
            let answer = self.join_answer(&self.members[index]);
            let member = &mut self.members[index];
            member.last_heard_ms = now_ms;
            if let Some(waiter) = member.join.take() {
                out.push(joined(waiter, answer));
            }
        }
    }

    /// Time-driven changes: rebalance deadlines and session expiries.
    fn tick(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        match self.state {
            State::PreparingRebalance => self.maybe_complete_join(now_ms, out),
            State::CompletingRebalance if now_ms >= self.deadline_ms => {
                while let Some(index) = self.members.iter().position(|m| m.sync.is_none()) {
                    self.remove(index, ErrorCode::UnknownMemberId.code(), out);
                }
                self.prepare_rebalance(now_ms, out);
                self.maybe_complete_join(now_ms, out);
            }
            _ => {}
        }
        // Members waiting for an answer are not expected to heartbeat.
        let expired = |m: &Member| {
            m.join.is_none()
                && m.sync.is_none()
                && now_ms >= m.last_heard_ms.saturating_add(m.session_timeout_ms)
        };
        let mut changed = false;
        while let Some(index) = self.members.iter().position(expired) {
            self.remove(index, ErrorCode::UnknownMemberId.code(), out);
            changed = true;
        }
        if changed {
            self.membership_changed(now_ms, out);
        }
    }
}

fn joined(waiter: Waiter, answer: JoinResponse) -> Action {
    Action::Reply(waiter, KafkaOpResult::Group(GroupAnswer::Joined(answer)))
}

fn synced(waiter: Waiter, answer: SyncResponse) -> Action {
    Action::Reply(waiter, KafkaOpResult::Group(GroupAnswer::Synced(answer)))
}

fn reply(waiter: Waiter, answer: GroupAnswer) -> Action {
    Action::Reply(waiter, KafkaOpResult::Group(answer))
}

/// Every group of the broker.
#[derive(Debug)]
pub struct Coordinator {
    limits: GroupLimits,
    groups: HashMap<String, Group>,
    /// Makes member ids unique across restarts, so a member from before one is never taken
    /// for a new one.
    incarnation: u64,
    next_member: u64,
}

impl Coordinator {
    /// A coordinator with no group. `incarnation` must differ between runs of the broker (the
    /// server uses its start time).
    pub fn new(limits: GroupLimits, incarnation: u64) -> Coordinator {
        Coordinator {
            limits,
            groups: HashMap::new(),
            incarnation,
            next_member: 0,
        }
    }

    /// Groups with members now.
    pub fn groups(&self) -> usize {
        self.groups.len()
    }

    /// Takes a request; its answer (and any other waiter's it releases) goes to `out`.
    /// `store` is read for groups that exist only as committed offsets.
    pub fn handle(
        &mut self,
        waiter: Waiter,
        op: GroupOp,
        now_ms: u64,
        store: &dyn LogStore,
        out: &mut Vec<Action>,
    ) {
        match op {
            GroupOp::Join {
                request,
                client_id,
                client_host,
            } => self.join(waiter, request, client_id, client_host, now_ms, out),
            GroupOp::Sync(request) => self.sync(waiter, request, now_ms, out),
            GroupOp::Heartbeat(request) => {
                let code = self.heartbeat(&request, now_ms);
                out.push(reply(waiter, GroupAnswer::Heartbeat(code)));
            }
            GroupOp::Leave(request) => self.leave(waiter, request, now_ms, out),
            GroupOp::Describe(groups) => {
                let described = self.describe(groups, store);
                out.push(reply(waiter, GroupAnswer::Described(described)));
            }
            GroupOp::List(states) => {
                let (code, listed) = self.list(&states, store);
                out.push(reply(waiter, GroupAnswer::Listed(code, listed)));
            }
            GroupOp::Delete(groups) => {
                let targets = groups
                    .into_iter()
                    .map(|group| {
                        let refused = if group.is_empty() || group.len() > GROUP_ID_BYTES_MAX {
                            Some(ErrorCode::InvalidGroupId.code())
                        } else if self.groups.contains_key(&group) {
                            Some(ErrorCode::NonEmptyGroup.code())
                        } else {
                            None
                        };
                        (group, refused)
                    })
                    .collect();
                out.push(Action::Write(waiter, KafkaOp::DeleteGroups(targets)));
            }
            GroupOp::Commit(request) => match self.check_commit(&request) {
                Some(code) => out.push(Action::Reply(waiter, commit_refused(request, code))),
                None => out.push(Action::Write(waiter, KafkaOp::CommitOffsets(request))),
            },
        }
    }

    /// Applies rebalance deadlines and session timeouts up to `now_ms`.
    pub fn tick(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        for group in self.groups.values_mut() {
            group.tick(now_ms, out);
        }
        self.groups.retain(|_, group| !group.members.is_empty());
    }

    fn join(
        &mut self,
        waiter: Waiter,
        request: JoinRequest,
        client_id: String,
        client_host: String,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        let limits = self.limits;
        let fail =
            |code: i16, member_id: String| joined(waiter, JoinResponse::failed(code, member_id));
        let session_ms = u64::try_from(request.session_timeout_ms).unwrap_or(0);
        let refused = if request.group_id.is_empty() || request.group_id.len() > GROUP_ID_BYTES_MAX
        {
            Some(ErrorCode::InvalidGroupId.code())
        } else if !(limits.session_timeout_ms_min..=limits.session_timeout_ms_max)
            .contains(&session_ms)
        {
            Some(ErrorCode::InvalidSessionTimeout.code())
        } else if request.protocol_type.is_empty() || request.protocols.is_empty() {
            Some(ErrorCode::InconsistentGroupProtocol.code())
        } else {
            None
        };
        if let Some(code) = refused {
            out.push(fail(code, request.member_id));
            return;
        }
        let rebalance_ms = u64::try_from(request.rebalance_timeout_ms)
            .unwrap_or(session_ms)
            .min(limits.session_timeout_ms_max);
        if !request.member_id.is_empty() {
            self.rejoin(waiter, request, client_id, client_host, now_ms, out);
            return;
        }
        // A new member.
        if !self.groups.contains_key(&request.group_id) && self.groups.len() >= limits.groups_max {
            out.push(fail(
                ErrorCode::CoordinatorNotAvailable.code(),
                String::new(),
            ));
            return;
        }
        let group = self
            .groups
            .entry(request.group_id.clone())
            .or_insert_with(|| Group {
                state: State::PreparingRebalance,
                generation: 0,
                protocol_type: request.protocol_type.clone(),
                protocol: None,
                leader: None,
                members: Vec::new(),
                deadline_ms: now_ms
                    .saturating_add(limits.initial_rebalance_delay_ms.min(rebalance_ms)),
                initial: true,
            });
        if !group.compatible(&request.protocol_type, &request.protocols) {
            out.push(fail(
                ErrorCode::InconsistentGroupProtocol.code(),
                String::new(),
            ));
            self.forget_if_empty(&request.group_id);
            return;
        }
        if let Some(instance) = &request.group_instance_id
            && let Some(index) =
                (group.members.iter()).position(|m| m.instance_id.as_ref() == Some(instance))
        {
            // A static member restarted: the new one takes the instance id.
            group.remove(index, ErrorCode::FencedInstanceId.code(), out);
        } else if group.members.len() >= limits.members_max {
            out.push(fail(ErrorCode::GroupMaxSizeReached.code(), String::new()));
            return;
        }
        self.next_member += 1;
        let id = format!("{client_id}-{:x}-{}", self.incarnation, self.next_member);
        let Some(group) = self.groups.get_mut(&request.group_id) else {
            return;
        };
        if group.members.is_empty() {
            group.protocol_type = request.protocol_type.clone();
        }
        group.members.push(Member {
            id,
            instance_id: request.group_instance_id,
            client_id,
            client_host,
            session_timeout_ms: session_ms,
            rebalance_timeout_ms: rebalance_ms,
            protocols: request.protocols,
            assignment: Vec::new(),
            join: Some(waiter),
            sync: None,
            last_heard_ms: now_ms,
        });
        match group.state {
            State::PreparingRebalance => group.maybe_complete_join(now_ms, out),
            State::CompletingRebalance | State::Stable => group.prepare_rebalance(now_ms, out),
        }
    }

    /// A join by a member that has an id.
    fn rejoin(
        &mut self,
        waiter: Waiter,
        request: JoinRequest,
        client_id: String,
        client_host: String,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        let fail =
            |code: i16, member_id: String| joined(waiter, JoinResponse::failed(code, member_id));
        let Some(group) = self.groups.get_mut(&request.group_id) else {
            out.push(fail(ErrorCode::UnknownMemberId.code(), request.member_id));
            return;
        };
        if !group.compatible(&request.protocol_type, &request.protocols) {
            out.push(fail(
                ErrorCode::InconsistentGroupProtocol.code(),
                request.member_id,
            ));
            return;
        }
        let state = group.state;
        let leader = group.leader.clone();
        let Some(member) = group.member(&request.member_id) else {
            out.push(fail(ErrorCode::UnknownMemberId.code(), request.member_id));
            return;
        };
        if member.instance_id.is_some() && member.instance_id != request.group_instance_id {
            out.push(fail(ErrorCode::FencedInstanceId.code(), request.member_id));
            return;
        }
        let unchanged = member.protocols == request.protocols;
        member.client_id = client_id;
        member.client_host = client_host;
        member.last_heard_ms = now_ms;
        if let Some(earlier) = member.join.replace(waiter) {
            // The same member joined again before its first join was answered.
            out.push(joined(
                earlier,
                JoinResponse::failed(
                    ErrorCode::RebalanceInProgress.code(),
                    request.member_id.clone(),
                ),
            ));
        }
        member.protocols = request.protocols;
        let is_leader = leader.as_deref() == Some(request.member_id.as_str());
        match state {
            State::PreparingRebalance => group.maybe_complete_join(now_ms, out),
            // It missed its answer: give it the current generation again.
            State::CompletingRebalance if unchanged => {
                group.answer_join_again(&request.member_id, out)
            }
            State::Stable if unchanged && !is_leader => {
                group.answer_join_again(&request.member_id, out)
            }
            State::CompletingRebalance | State::Stable => {
                group.prepare_rebalance(now_ms, out);
                group.maybe_complete_join(now_ms, out);
            }
        }
    }

    fn sync(&mut self, waiter: Waiter, request: SyncRequest, now_ms: u64, out: &mut Vec<Action>) {
        let fail = |code| synced(waiter, SyncResponse::failed(code));
        let Some(group) = self.groups.get_mut(&request.group_id) else {
            out.push(fail(ErrorCode::UnknownMemberId.code()));
            return;
        };
        let (state, generation, leader) = (group.state, group.generation, group.leader.clone());
        let type_differs =
            (request.protocol_type.as_ref()).is_some_and(|t| *t != group.protocol_type);
        let name_differs =
            (request.protocol_name.as_ref()).is_some_and(|n| Some(n) != group.protocol.as_ref());
        let Some(member) = group.member(&request.member_id) else {
            out.push(fail(ErrorCode::UnknownMemberId.code()));
            return;
        };
        if member.instance_id.is_some() && member.instance_id != request.group_instance_id {
            out.push(fail(ErrorCode::FencedInstanceId.code()));
            return;
        }
        if request.generation_id != generation {
            out.push(fail(ErrorCode::IllegalGeneration.code()));
            return;
        }
        if type_differs || name_differs {
            out.push(fail(ErrorCode::InconsistentGroupProtocol.code()));
            return;
        }
        member.last_heard_ms = now_ms;
        match state {
            State::PreparingRebalance => out.push(fail(ErrorCode::RebalanceInProgress.code())),
            State::Stable => {
                let assignment = member.assignment.clone();
                let answer = SyncResponse {
                    error_code: 0,
                    protocol_type: Some(group.protocol_type.clone()),
                    protocol_name: group.protocol.clone(),
                    assignment,
                };
                out.push(synced(waiter, answer));
            }
            State::CompletingRebalance => {
                if let Some(earlier) = member.sync.replace(waiter) {
                    out.push(synced(
                        earlier,
                        SyncResponse::failed(ErrorCode::RebalanceInProgress.code()),
                    ));
                }
                if leader.as_deref() != Some(request.member_id.as_str()) {
                    return;
                }
                // The leader's assignment: every waiting member gets its part.
                let mut assignments: HashMap<String, Vec<u8>> =
                    request.assignments.into_iter().collect();
                for member in &mut group.members {
                    member.assignment = assignments.remove(&member.id).unwrap_or_default();
                }
                group.state = State::Stable;
                for index in 0..group.members.len() {
                    let answer = group.sync_answer(&group.members[index]);
                    let member = &mut group.members[index];
                    member.last_heard_ms = now_ms;
                    if let Some(waiter) = member.sync.take() {
                        out.push(synced(waiter, answer));
                    }
                }
            }
        }
    }

    fn heartbeat(&mut self, request: &HeartbeatRequest, now_ms: u64) -> i16 {
        let Some(group) = self.groups.get_mut(&request.group_id) else {
            return ErrorCode::UnknownMemberId.code();
        };
        let (state, generation) = (group.state, group.generation);
        let Some(member) = group.member(&request.member_id) else {
            return ErrorCode::UnknownMemberId.code();
        };
        if member.instance_id.is_some() && member.instance_id != request.group_instance_id {
            return ErrorCode::FencedInstanceId.code();
        }
        if request.generation_id != generation {
            return ErrorCode::IllegalGeneration.code();
        }
        member.last_heard_ms = now_ms;
        match state {
            State::PreparingRebalance => ErrorCode::RebalanceInProgress.code(),
            State::CompletingRebalance | State::Stable => 0,
        }
    }

    fn leave(&mut self, waiter: Waiter, request: LeaveRequest, now_ms: u64, out: &mut Vec<Action>) {
        let mut results = Vec::with_capacity(request.members.len());
        let mut changed = false;
        for (member_id, instance) in request.members {
            let group = self.groups.get_mut(&request.group_id);
            let index = group.as_ref().and_then(|g| {
                g.members.iter().position(|m| {
                    if member_id.is_empty() {
                        instance.is_some() && m.instance_id == instance
                    } else {
                        m.id == member_id
                    }
                })
            });
            let code = match (group, index) {
                (Some(group), Some(index)) => {
                    let fenced = instance.is_some()
                        && !member_id.is_empty()
                        && group.members[index].instance_id != instance;
                    if fenced {
                        ErrorCode::FencedInstanceId.code()
                    } else {
                        group.remove(index, ErrorCode::UnknownMemberId.code(), out);
                        changed = true;
                        0
                    }
                }
                _ => ErrorCode::UnknownMemberId.code(),
            };
            results.push((member_id, instance, code));
        }
        if changed && let Some(group) = self.groups.get_mut(&request.group_id) {
            group.membership_changed(now_ms, out);
        }
        self.forget_if_empty(&request.group_id);
        // Before v3 the only member's error is the answer's.
        let top = match results.as_slice() {
            [(_, _, code)] => *code,
            _ => 0,
        };
        out.push(reply(waiter, GroupAnswer::Left(top, results)));
    }

    fn forget_if_empty(&mut self, group_id: &str) {
        if self
            .groups
            .get(group_id)
            .is_some_and(|g| g.members.is_empty())
        {
            self.groups.remove(group_id);
        }
    }

    /// Why a commit must be refused, if it must.
    fn check_commit(&self, request: &CommitRequest) -> Option<i16> {
        if request.group_id.len() > GROUP_ID_BYTES_MAX {
            return Some(ErrorCode::InvalidGroupId.code());
        }
        let Some(group) = self.groups.get(&request.group_id) else {
            // An empty group takes commits from outside membership (a negative generation,
            // as a consumer with assigned partitions sends); a member or generation named is
            // unknown.
            return match (request.generation_id < 0, request.member_id.is_empty()) {
                (true, _) => None,
                (false, false) => Some(ErrorCode::UnknownMemberId.code()),
                (false, true) => Some(ErrorCode::IllegalGeneration.code()),
            };
        };
        if !group.members.iter().any(|m| m.id == request.member_id) {
            return Some(ErrorCode::UnknownMemberId.code());
        }
        if request.generation_id != group.generation {
            return Some(ErrorCode::IllegalGeneration.code());
        }
        match group.state {
            State::CompletingRebalance => Some(ErrorCode::RebalanceInProgress.code()),
            State::PreparingRebalance | State::Stable => None,
        }
    }

    fn describe(&self, groups: Vec<String>, store: &dyn LogStore) -> Vec<DescribedGroup> {
        let stored = store.offset_groups();
        groups
            .into_iter()
            .map(|group_id| {
                let mut described = DescribedGroup {
                    error_code: 0,
                    group_id,
                    state: "Dead",
                    protocol_type: String::new(),
                    protocol: String::new(),
                    members: Vec::new(),
                };
                let Some(group) = self.groups.get(&described.group_id) else {
                    match &stored {
                        Ok(stored) if stored.contains(&described.group_id) => {
                            described.state = "Empty";
                        }
                        Ok(_) => {}
                        Err(_) => described.error_code = ErrorCode::CoordinatorNotAvailable.code(),
                    }
                    return described;
                };
                let stable = group.state == State::Stable;
                let protocol = group.protocol.clone().unwrap_or_default();
                described.state = group.state.name();
                described.protocol_type = group.protocol_type.clone();
                if stable {
                    described.protocol = protocol.clone();
                }
                described.members = (group.members.iter())
                    .map(|m| DescribedMember {
                        member_id: m.id.clone(),
                        group_instance_id: m.instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        metadata: if stable {
                            m.metadata(&protocol)
                        } else {
                            Vec::new()
                        },
                        assignment: if stable {
                            m.assignment.clone()
                        } else {
                            Vec::new()
                        },
                    })
                    .collect();
                described
            })
            .collect()
    }

    fn list(&self, states: &[String], store: &dyn LogStore) -> (i16, Vec<ListedGroup>) {
        let wanted =
            |state: &str| states.is_empty() || states.iter().any(|s| s.eq_ignore_ascii_case(state));
        let mut listed: Vec<ListedGroup> = (self.groups.iter())
            .filter(|(_, g)| wanted(g.state.name()))
            .map(|(id, g)| (id.clone(), g.protocol_type.clone(), g.state.name()))
            .collect();
        let code = match store.offset_groups() {
            Ok(stored) => {
                if wanted("Empty") {
                    listed.extend(
                        (stored.into_iter())
                            .filter(|id| !self.groups.contains_key(id))
                            .map(|id| (id, String::new(), "Empty")),
                    );
                }
                0
            }
            Err(_) => ErrorCode::CoordinatorNotAvailable.code(),
        };
        listed.sort();
        (code, listed)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::log_store::EmptyStore;
    use weir_kafka::offsets::CommitPartition;

    const LIMITS: GroupLimits = GroupLimits {
        session_timeout_ms_min: 1_000,
        session_timeout_ms_max: 60_000,
        initial_rebalance_delay_ms: 100,
        members_max: 3,
        groups_max: 2,
    };

    /// Drives a coordinator in simulated time and checks that every waiter is answered
    /// exactly once.
    struct Harness {
        coordinator: Coordinator,
        now_ms: u64,
        next_waiter: Waiter,
        answered: HashSet<Waiter>,
        ready: HashMap<Waiter, KafkaOpResult>,
        writes: HashMap<Waiter, KafkaOp>,
    }

    impl Harness {
        fn new() -> Harness {
            Harness {
                coordinator: Coordinator::new(LIMITS, 7),
                now_ms: 0,
                next_waiter: 0,
                answered: HashSet::new(),
                ready: HashMap::new(),
                writes: HashMap::new(),
            }
        }

        fn take(&mut self, actions: Vec<Action>) {
            for action in actions {
                let waiter = match &action {
                    Action::Reply(w, _) | Action::Write(w, _) => *w,
                };
                assert!(
                    self.answered.insert(waiter),
                    "waiter {waiter} answered twice"
                );
                match action {
                    Action::Reply(w, result) => self.ready.insert(w, result),
                    Action::Write(w, op) => self.writes.insert(w, op).map(|_| unreachable!()),
                };
            }
        }

        fn send(&mut self, op: GroupOp) -> Waiter {
            let waiter = self.next_waiter;
            self.next_waiter += 1;
            let mut out = Vec::new();
            (self.coordinator).handle(waiter, op, self.now_ms, &EmptyStore, &mut out);
            self.take(out);
            waiter
        }

        fn advance(&mut self, ms: u64) {
            self.now_ms += ms;
            let mut out = Vec::new();
            self.coordinator.tick(self.now_ms, &mut out);
            self.take(out);
        }

        fn answer(&mut self, waiter: Waiter) -> Option<GroupAnswer> {
            match self.ready.remove(&waiter)? {
                KafkaOpResult::Group(answer) => Some(answer),
                other => panic!("not a group answer: {other:?}"),
            }
        }

        fn joined(&mut self, waiter: Waiter) -> JoinResponse {
            match self.answer(waiter) {
                Some(GroupAnswer::Joined(joined)) => joined,
                other => panic!("waiter {waiter}: expected a join answer, got {other:?}"),
            }
        }

        fn synced(&mut self, waiter: Waiter) -> SyncResponse {
            match self.answer(waiter) {
                Some(GroupAnswer::Synced(synced)) => synced,
                other => panic!("waiter {waiter}: expected a sync answer, got {other:?}"),
            }
        }

        fn heartbeat(&mut self, member: &str, generation_id: i32) -> i16 {
            let waiter = self.send(GroupOp::Heartbeat(HeartbeatRequest {
                group_id: "g".into(),
                generation_id,
                member_id: member.into(),
                group_instance_id: None,
            }));
            match self.answer(waiter) {
                Some(GroupAnswer::Heartbeat(code)) => code,
                other => panic!("expected a heartbeat answer, got {other:?}"),
            }
        }

        fn commit(&mut self, member: &str, generation_id: i32) -> Result<(), i16> {
            let waiter = self.send(GroupOp::Commit(CommitRequest {
                group_id: "g".into(),
                generation_id,
                member_id: member.into(),
                topics: vec![(
                    "t".into(),
                    vec![CommitPartition {
                        index: 0,
                        offset: 1,
                        leader_epoch: -1,
                        metadata: String::new(),
                    }],
                )],
            }));
            if self.writes.remove(&waiter).is_some() {
                return Ok(());
            }
            match self.ready.remove(&waiter) {
                Some(KafkaOpResult::OffsetsCommitted(topics)) => Err(topics[0].1[0].1),
                other => panic!("expected a commit answer, got {other:?}"),
            }
        }
    }

    fn join(member_id: &str, protocols: &[&str]) -> GroupOp {
        join_as("g", member_id, 10_000, protocols)
    }

    fn join_as(group: &str, member_id: &str, session_ms: i32, protocols: &[&str]) -> GroupOp {
        GroupOp::Join {
            request: JoinRequest {
                group_id: group.into(),
                session_timeout_ms: session_ms,
                rebalance_timeout_ms: 5_000,
                member_id: member_id.into(),
                group_instance_id: None,
                protocol_type: "consumer".into(),
                protocols: (protocols.iter())
                    .map(|p| (p.to_string(), p.as_bytes().to_vec()))
                    .collect(),
            },
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
        }
    }

    fn sync(member_id: &str, generation_id: i32, assignments: &[(&str, &[u8])]) -> GroupOp {
        GroupOp::Sync(SyncRequest {
            group_id: "g".into(),
            generation_id,
            member_id: member_id.into(),
            group_instance_id: None,
            protocol_type: Some("consumer".into()),
            protocol_name: None,
            assignments: (assignments.iter())
                .map(|(m, a)| (m.to_string(), a.to_vec()))
                .collect(),
        })
    }

    fn leave(members: &[&str]) -> GroupOp {
        GroupOp::Leave(LeaveRequest {
            group_id: "g".into(),
            members: members.iter().map(|m| (m.to_string(), None)).collect(),
        })
    }

    /// Two members join a new group, the leader assigns, both get their part.
    fn stable_pair(h: &mut Harness) -> (String, String) {
        let a = h.send(join("", &["range", "roundrobin"]));
        let b = h.send(join("", &["roundrobin", "range"]));
        assert!(
            h.ready.is_empty(),
            "a new group waits out its initial delay"
        );
        h.advance(100);
        let (a, b) = (h.joined(a), h.joined(b));
        assert_eq!((a.generation_id, b.generation_id), (1, 1));
        assert_eq!(a.leader, a.member_id, "the first member leads");
        assert_eq!(a.members.len(), 2, "the leader sees every member");
        assert!(b.members.is_empty());
        // One vote each: the first member's order breaks the tie.
        assert_eq!(a.protocol_name.as_deref(), Some("range"));
        assert_eq!(
            a.members[1].metadata, b"range",
            "metadata of the chosen protocol"
        );
        let follower = h.send(sync(&b.member_id, 1, &[]));
        assert!(h.ready.is_empty(), "a follower waits for the leader");
        let plan: [(&str, &[u8]); 2] = [(&a.member_id, b"A"), (&b.member_id, b"B")];
        let leader = h.send(sync(&a.member_id, 1, &plan));
        assert_eq!(h.synced(leader).assignment, b"A");
        assert_eq!(h.synced(follower).assignment, b"B");
        (a.member_id, b.member_id)
    }

    #[test]
    fn members_join_sync_and_heartbeat() {
        let mut h = Harness::new();
        let (a, b) = stable_pair(&mut h);
        assert_eq!(h.heartbeat(&a, 1), 0);
        assert_eq!(h.heartbeat(&b, 0), ErrorCode::IllegalGeneration.code());
        assert_eq!(h.heartbeat("nobody", 1), ErrorCode::UnknownMemberId.code());
        // A follower that lost its answer joins again and gets the same generation.
        let again = h.send(join(&b, &["roundrobin", "range"]));
        assert_eq!(h.joined(again).generation_id, 1);
        let resync = h.send(sync(&b, 1, &[]));
        assert_eq!(h.synced(resync).assignment, b"B");
        // Commits: members of this generation only.
        assert_eq!(h.commit(&a, 1), Ok(()));
        assert_eq!(h.commit(&a, 0), Err(ErrorCode::IllegalGeneration.code()));
        assert_eq!(
            h.commit("nobody", 1),
            Err(ErrorCode::UnknownMemberId.code())
        );
        assert_eq!(h.commit("", -1), Err(ErrorCode::UnknownMemberId.code()));
    }

    #[test]
    fn a_new_member_makes_everyone_rejoin() {
        let mut h = Harness::new();
        let (a, b) = stable_pair(&mut h);
        let c = h.send(join("", &["range"]));
        assert_eq!(h.heartbeat(&a, 1), ErrorCode::RebalanceInProgress.code());
        assert_eq!(
            h.commit(&a, 1),
            Ok(()),
            "commits of the old generation still count"
        );
        let ja = h.send(join(&a, &["range"]));
        assert!(h.ready.is_empty(), "b has not rejoined yet");
        let jb = h.send(join(&b, &["range"]));
        let (ja, jb, jc) = (h.joined(ja), h.joined(jb), h.joined(c));
        assert_eq!(
            (ja.generation_id, jb.generation_id, jc.generation_id),
            (2, 2, 2)
        );
        assert_eq!(ja.members.len(), 3, "the leader stays the leader");
        assert_eq!(
            h.commit(&a, 2),
            Err(ErrorCode::RebalanceInProgress.code()),
            "until the leader syncs"
        );
        // A fourth member is over the limit of 3.
        let d = h.send(join("", &["range"]));
        assert_eq!(
            h.joined(d).error_code,
            ErrorCode::GroupMaxSizeReached.code()
        );
    }

    #[test]
    fn leaving_and_silent_members_are_removed() {
        let mut h = Harness::new();
        let (a, b) = stable_pair(&mut h);
        let left = h.send(leave(&[&b, "nobody"]));
        let Some(GroupAnswer::Left(0, members)) = h.answer(left) else {
            panic!("expected a leave answer");
        };
        assert_eq!(members[0].2, 0);
        assert_eq!(members[1].2, ErrorCode::UnknownMemberId.code());
        // The one left rejoins alone: the join completes at once, generation 2.
        let ja = h.send(join(&a, &["range"]));
        let ja = h.joined(ja);
        assert_eq!((ja.generation_id, ja.members.len()), (2, 1));
        let s = h.send(sync(&a, 2, &[(&a, b"all")]));
        assert_eq!(h.synced(s).assignment, b"all");
        // Silent past its session timeout (10 s), it is removed and the group forgotten.
        h.advance(9_999);
        assert_eq!(h.coordinator.groups(), 1);
        h.advance(1);
        assert_eq!(h.coordinator.groups(), 0);
        assert_eq!(h.heartbeat(&a, 2), ErrorCode::UnknownMemberId.code());
        // An empty group takes commits from outside membership only.
        assert_eq!(h.commit("", -1), Ok(()));
        assert_eq!(h.commit(&a, 2), Err(ErrorCode::UnknownMemberId.code()));
        assert_eq!(h.commit("", 2), Err(ErrorCode::IllegalGeneration.code()));
    }

    #[test]
    fn a_member_that_does_not_rejoin_is_dropped_at_the_rebalance_deadline() {
        let mut h = Harness::new();
        let (a, b) = stable_pair(&mut h);
        let ja = h.send(join(&a, &["range"]));
        assert_eq!(h.heartbeat(&b, 1), ErrorCode::RebalanceInProgress.code());
        h.advance(4_999);
        assert!(h.ready.is_empty());
        h.advance(1);
        let ja = h.joined(ja);
        assert_eq!((ja.generation_id, ja.members.len()), (2, 1));
        let late = h.send(join(&b, &["range"]));
        assert_eq!(h.joined(late).error_code, ErrorCode::UnknownMemberId.code());
        // A leader that never syncs: at the deadline the group starts over without it.
        let fresh = h.send(join("", &["range"]));
        let ja = h.send(join(&a, &["range"]));
        let (ja, fresh) = (h.joined(ja), h.joined(fresh));
        assert_eq!(ja.generation_id, 3);
        let waiting = h.send(sync(&fresh.member_id, 3, &[]));
        h.advance(5_000);
        assert_eq!(
            h.synced(waiting).error_code,
            ErrorCode::RebalanceInProgress.code()
        );
        assert_eq!(h.heartbeat(&a, 3), ErrorCode::UnknownMemberId.code());
        let rejoin = h.send(join(&fresh.member_id, &["range"]));
        let rejoin = h.joined(rejoin);
        assert_eq!((rejoin.generation_id, rejoin.leader), (4, fresh.member_id));
    }

    #[test]
    fn bad_joins_get_errors_and_limits_hold() {
        let mut h = Harness::new();
        let short = h.send(join_as("g", "", 999, &["range"]));
        assert_eq!(
            h.joined(short).error_code,
            ErrorCode::InvalidSessionTimeout.code()
        );
        let none = h.send(join_as("", "", 10_000, &["range"]));
        assert_eq!(h.joined(none).error_code, ErrorCode::InvalidGroupId.code());
        let no_protocols = h.send(join("", &[]));
        assert_eq!(
            h.joined(no_protocols).error_code,
            ErrorCode::InconsistentGroupProtocol.code()
        );
        let unknown = h.send(join("ghost", &["range"]));
        assert_eq!(
            h.joined(unknown).error_code,
            ErrorCode::UnknownMemberId.code()
        );
        let first = h.send(join("", &["range"]));
        let other = h.send(join("", &["sticky"]));
        assert_eq!(
            h.joined(other).error_code,
            ErrorCode::InconsistentGroupProtocol.code()
        );
        // Two groups at most have members.
        let g2 = h.send(join_as("g2", "", 10_000, &["range"]));
        let g3 = h.send(join_as("g3", "", 10_000, &["range"]));
        assert_eq!(
            h.joined(g3).error_code,
            ErrorCode::CoordinatorNotAvailable.code()
        );
        // A group with members cannot be deleted; the others go to the log.
        let delete = h.send(GroupOp::Delete(vec![
            "g".into(),
            "gone".into(),
            String::new(),
        ]));
        let Some(KafkaOp::DeleteGroups(targets)) = h.writes.remove(&delete) else {
            panic!("deletion goes through the writer");
        };
        let expected = [
            ("g".to_owned(), Some(ErrorCode::NonEmptyGroup.code())),
            ("gone".to_owned(), None),
            (String::new(), Some(ErrorCode::InvalidGroupId.code())),
        ];
        assert_eq!(targets, expected);
        h.advance(100);
        assert_eq!(h.joined(first).generation_id, 1);
        assert_eq!(h.joined(g2).generation_id, 1);
    }

    #[test]
    fn groups_are_described_and_listed() {
        let mut h = Harness::new();
        let (a, _) = stable_pair(&mut h);
        let asked = h.send(GroupOp::Describe(vec!["g".into(), "none".into()]));
        let Some(GroupAnswer::Described(groups)) = h.answer(asked) else {
            panic!("expected a describe answer");
        };
        assert_eq!(
            (groups[0].state, groups[0].protocol.as_str()),
            ("Stable", "range")
        );
        assert_eq!(groups[0].members[0].member_id, a);
        assert_eq!(groups[0].members[0].assignment, b"A");
        assert_eq!(groups[0].members[0].client_host, "/127.0.0.1");
        assert_eq!((groups[1].error_code, groups[1].state), (0, "Dead"));
        let listed = h.send(GroupOp::List(vec!["stable".into()]));
        let Some(GroupAnswer::Listed(0, groups)) = h.answer(listed) else {
            panic!("expected a list answer");
        };
        assert_eq!(groups, [("g".to_owned(), "consumer".to_owned(), "Stable")]);
        let listed = h.send(GroupOp::List(vec!["Empty".into()]));
        assert_eq!(h.answer(listed), Some(GroupAnswer::Listed(0, Vec::new())));
    }
}
