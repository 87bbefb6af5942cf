//! The rules (`domain/rules.py`, `domain/decide.py`) and the fold of a batch
//! (`services/apply_batch.py`: `_decide`, `fold`), on plain values. Messages are built exactly
//! like the reference's f-strings; the one Python formatting that depends on the Unicode
//! tables of the running interpreter (`repr()` of a config key) is asked of the caller.

use crate::pytext::{blank, char_len, head_chars, isoformat_utc};
use crate::uuid::{text_string, IdMap, IdSet, Uuid};
use std::collections::HashMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Create,
    Update,
    Delete,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Create, Kind::Update, Kind::Delete];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Create => "CREATE",
            Kind::Update => "UPDATE",
            Kind::Delete => "DELETE",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The index of the symbol in the Avro enum `CommandType`.
    pub fn index(self) -> u8 {
        self as u8
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pending,
    Active,
    Inactive,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Pending, Status::Active, Status::Inactive];

    pub fn name(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Active => "active",
            Status::Inactive => "inactive",
        }
    }

    pub fn from_name(name: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.name() == name)
    }

    pub fn index(self) -> u8 {
        self as u8
    }

    /// `ALLOWED_TRANSITIONS`: pending → active | inactive, active ↔ inactive.
    fn allows(self, new: Status) -> bool {
        matches!(
            (self, new),
            (Status::Pending, Status::Active | Status::Inactive)
                | (Status::Active, Status::Inactive)
                | (Status::Inactive, Status::Active)
        )
    }
}

/// A map of strings in insertion order (a Python ``dict``): keys are unique.
pub type Config = Vec<(String, String)>;

/// ``dict == dict``: the same keys with the same values, in any order.
pub fn same_config(a: &Config, b: &Config) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a.len() <= 8 {
        return a
            .iter()
            .all(|(k, v)| b.iter().any(|(k2, v2)| k == k2 && v == v2));
    }
    let index: HashMap<&str, &str> = b.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    a.iter()
        .all(|(k, v)| index.get(k.as_str()) == Some(&v.as_str()))
}

/// A decoded command (``domain/commands.py``). ``name``/``config``/``status``: always set on
/// a create (defaults applied), ``None`` meaning "unchanged" on an update, unused on a delete.
#[derive(Clone, Debug)]
pub struct Command {
    pub kind: Kind,
    pub command_id: Uuid,
    pub resource_id: Uuid,
    /// Microseconds since 1970-01-01 UTC.
    pub issued_at: i64,
    pub expected_version: Option<i64>,
    pub correlation_id: Option<String>,
    pub issued_by: Option<String>,
    pub name: Option<String>,
    pub config: Option<Config>,
    pub status: Option<Status>,
}

/// A resource as stored (``domain/model.py``); times in microseconds since the Unix epoch.
#[derive(Clone, Debug)]
pub struct Resource {
    pub id: Uuid,
    pub name: String,
    pub config: Config,
    pub status: Status,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_command_id: Uuid,
    pub deleted_at: Option<i64>,
}

impl Resource {
    pub fn deleted(&self) -> bool {
        self.deleted_at.is_some()
    }
}

pub const NAME_MAX: usize = 255;
pub const CONFIG_MAX_ENTRIES: usize = 256;
pub const CONFIG_KEY_MAX: usize = 255;
pub const CONFIG_VALUE_MAX: usize = 4096;

/// ``RejectionCode`` and ``ParkCode`` values.
pub mod code {
    pub const INVALID_NAME: &str = "CMD-001";
    pub const INVALID_CONFIG: &str = "CMD-002";
    pub const ALREADY_EXISTS: &str = "CMD-003";
    pub const NOT_FOUND: &str = "CMD-004";
    pub const DELETED: &str = "CMD-005";
    pub const VERSION_CONFLICT: &str = "CMD-006";
    pub const INVALID_TRANSITION: &str = "CMD-007";
    pub const TOO_OLD: &str = "CMD-008";
    pub const KEY_MISMATCH: &str = "CMD-009";
    pub const PARTITION_MISMATCH: &str = "CMD-011";
    pub const COMMAND_ID_REUSED: &str = "CMD-012";
    pub const APPLY_FAILED: &str = "PRK-001";
    pub const BEHIND_PARKED: &str = "PRK-002";
}

/// A ``RuleViolation``: its code and message.
pub struct Violation(pub &'static str, pub String);

type Rule = Result<(), Violation>;

/// Python's ``repr()`` of a string, for the messages that quote a config key.
pub type Repr<'a> = &'a mut dyn FnMut(&str) -> String;

fn check_name(name: &str) -> Rule {
    if blank(name) {
        return Err(Violation(
            code::INVALID_NAME,
            "name must not be empty".into(),
        ));
    }
    let n = char_len(name);
    if n > NAME_MAX {
        return Err(Violation(
            code::INVALID_NAME,
            format!("name is {n} characters; at most {NAME_MAX} are allowed"),
        ));
    }
    Ok(())
}

fn check_config(config: &Config, repr: Repr) -> Rule {
    if config.len() > CONFIG_MAX_ENTRIES {
        return Err(Violation(
            code::INVALID_CONFIG,
            format!(
                "config has {} entries; at most {CONFIG_MAX_ENTRIES}",
                config.len()
            ),
        ));
    }
    for (key, value) in config {
        let n = char_len(key);
        if n == 0 || n > CONFIG_KEY_MAX {
            return Err(Violation(
                code::INVALID_CONFIG,
                format!(
                    "config key {} must be 1..{CONFIG_KEY_MAX} characters",
                    repr(head_chars(key, 40))
                ),
            ));
        }
        if char_len(value) > CONFIG_VALUE_MAX {
            return Err(Violation(
                code::INVALID_CONFIG,
                format!(
                    "config value of {} exceeds {CONFIG_VALUE_MAX} characters",
                    repr(key)
                ),
            ));
        }
    }
    Ok(())
}

fn check_transition(current: Status, new: Status) -> Rule {
    if new != current && !current.allows(new) {
        return Err(Violation(
            code::INVALID_TRANSITION,
            format!(
                "status cannot change from {} to {}",
                current.name(),
                new.name()
            ),
        ));
    }
    Ok(())
}

/// ``rules.Misplaced``: a record in ``.0`` whose key belongs in ``.1`` of ``.2`` partitions.
pub struct Misplaced(pub i64, pub i64, pub i64);

/// ``rules.check_admission``: the record's key, its partition, then the dedupe retention.
fn check_admission(
    command: &Command,
    key_matches: bool,
    misplaced: Option<&Misplaced>,
    oldest: Option<&(i64, String)>,
) -> Rule {
    let id = || text_string(&command.command_id);
    if !key_matches {
        return Err(Violation(
            code::KEY_MISMATCH,
            format!(
                "command {}: the record's key must be its resource_id (canonical UUID text) \
                 so that all of a resource's commands share one partition",
                id()
            ),
        ));
    }
    if let Some(Misplaced(partition, home, partitions)) = misplaced {
        return Err(Violation(
            code::PARTITION_MISMATCH,
            format!(
                "command {}: the record is in partition {partition}, but its key belongs in \
                 partition {home} of {partitions} (the Java client's murmur2 partitioner, \
                 which every publisher must use); its order with the resource's other \
                 commands cannot be kept",
                id()
            ),
        ));
    }
    if let Some((at, text)) = oldest {
        if command.issued_at < *at {
            return Err(Violation(
                code::TOO_OLD,
                format!(
                    "command {} was issued at {}, before the dedupe retention window (from \
                     {text}); it is refused so that a replay can never apply it twice",
                    id(),
                    isoformat_utc(command.issued_at)
                ),
            ));
        }
    }
    Ok(())
}

/// ``rules.check_same_command``: a delivery of ``command``'s id is the command ``owner``
/// names (its resource and type: as recorded, or as first delivered in the batch), or
/// another command reusing the id (CMD-012).
pub fn check_same_command(command: &Command, owner: (Uuid, Kind)) -> Rule {
    let (resource, kind) = owner;
    if command.resource_id == resource && command.kind == kind {
        return Ok(());
    }
    Err(Violation(
        code::COMMAND_ID_REUSED,
        format!(
            "command {} already names the {} of resource {}; this {} of resource {} is refused \
             and not recorded (every command needs an id of its own)",
            text_string(&command.command_id),
            kind.name(),
            text_string(&resource),
            command.kind.name(),
            text_string(&command.resource_id)
        ),
    ))
}

fn check_target(state: Option<&Resource>, command: &Command) -> Rule {
    let rid = || text_string(&command.resource_id);
    if let Some(s) = state {
        if s.deleted() {
            return Err(Violation(
                code::DELETED,
                format!(
                    "resource {} was deleted at version {}; its id cannot be reused",
                    rid(),
                    s.version
                ),
            ));
        }
    }
    if command.kind == Kind::Create {
        if state.is_some() {
            return Err(Violation(
                code::ALREADY_EXISTS,
                format!("resource {} already exists", rid()),
            ));
        }
        if let Some(v) = command.expected_version.filter(|&v| v != 0) {
            return Err(Violation(
                code::VERSION_CONFLICT,
                format!("expected version {v}, but the resource does not exist yet"),
            ));
        }
        return Ok(());
    }
    let Some(s) = state else {
        return Err(Violation(
            code::NOT_FOUND,
            format!("resource {} does not exist", rid()),
        ));
    };
    if let Some(v) = command.expected_version.filter(|&v| v != s.version) {
        return Err(Violation(
            code::VERSION_CONFLICT,
            format!("expected version {v}, current version is {}", s.version),
        ));
    }
    Ok(())
}

/// What an applied command announces: ``ResourceCreated`` / ``Updated`` / ``Deleted``.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Updated,
    Deleted,
}

impl EventKind {
    pub fn type_name(self) -> &'static str {
        match self {
            EventKind::Created => "ResourceCreated",
            EventKind::Updated => "ResourceUpdated",
            EventKind::Deleted => "ResourceDeleted",
        }
    }

    pub fn index(self) -> u8 {
        self as u8
    }
}

/// A change that took effect: the state after, what it announces and which fields changed.
pub struct Change {
    pub state: Resource,
    pub event: EventKind,
    pub changed: Vec<&'static str>,
}

/// ``decide``'s outcome. ``Applied(None)`` is an update that changed nothing.
pub enum Decision {
    Applied(Option<Change>),
    Rejected(Violation),
}

fn create(command: &Command, now: i64, repr: Repr) -> Result<Change, Violation> {
    let name = command.name.clone().unwrap_or_default();
    let config = command.config.clone().unwrap_or_default();
    check_name(&name)?;
    check_config(&config, repr)?;
    let state = Resource {
        id: command.resource_id,
        name,
        config,
        status: command.status.unwrap_or(Status::Pending),
        version: 1,
        created_at: now,
        updated_at: now,
        last_command_id: command.command_id,
        deleted_at: None,
    };
    Ok(Change {
        state,
        event: EventKind::Created,
        changed: vec!["name", "config", "status"],
    })
}

fn update(
    state: &Resource,
    command: &Command,
    now: i64,
    repr: Repr,
) -> Result<Option<Change>, Violation> {
    let mut changed = Vec::new();
    let mut name = None;
    let mut config = None;
    let mut status = state.status;
    if let Some(n) = command.name.as_ref().filter(|n| **n != state.name) {
        check_name(n)?;
        name = Some(n.clone());
        changed.push("name");
    }
    if let Some(c) = command
        .config
        .as_ref()
        .filter(|c| !same_config(c, &state.config))
    {
        check_config(c, repr)?;
        config = Some(c.clone());
        changed.push("config");
    }
    if let Some(s) = command.status.filter(|s| *s != state.status) {
        check_transition(state.status, s)?;
        status = s;
        changed.push("status");
    }
    if changed.is_empty() {
        return Ok(None);
    }
    let new = Resource {
        id: state.id,
        name: name.unwrap_or_else(|| state.name.clone()),
        config: config.unwrap_or_else(|| state.config.clone()),
        status,
        version: state.version.wrapping_add(1),
        created_at: state.created_at,
        updated_at: now,
        last_command_id: command.command_id,
        deleted_at: None,
    };
    Ok(Some(Change {
        state: new,
        event: EventKind::Updated,
        changed,
    }))
}

fn delete(state: &Resource, command: &Command, now: i64) -> Change {
    let mut new = state.clone();
    new.version = state.version.wrapping_add(1);
    new.updated_at = now;
    new.last_command_id = command.command_id;
    new.deleted_at = Some(now);
    Change {
        state: new,
        event: EventKind::Deleted,
        changed: Vec::new(),
    }
}

/// ``decide(state, command, now)``.
pub fn decide(state: Option<&Resource>, command: &Command, now: i64, repr: Repr) -> Decision {
    let result = check_target(state, command).and_then(|()| match command.kind {
        Kind::Create => create(command, now, repr).map(Some),
        Kind::Update => update(state.expect("checked"), command, now, repr),
        Kind::Delete => Ok(Some(delete(state.expect("checked"), command, now))),
    });
    match result {
        Ok(change) => Decision::Applied(change),
        Err(v) => Decision::Rejected(v),
    }
}

/// What became of one fresh command (``Outcome``).
pub enum Outcome {
    /// Applied; ``version`` is the resulting version; ``change`` is ``None`` when unchanged.
    Applied {
        version: i64,
        change: Option<(EventKind, Vec<&'static str>)>,
    },
    Rejected {
        code: &'static str,
        message: String,
    },
    Parked {
        code: &'static str,
        error: String,
    },
}

/// One fresh command to fold: the command and whether its record's key was its resource id.
pub struct Fresh<'a> {
    pub command: &'a Command,
    pub key_matches: bool,
    /// Not in its key's partition (checked only when the worker refuses that, CMD-011).
    pub misplaced: Option<Misplaced>,
}

/// A resource's net change over the batch: the version it was loaded at (``None``: it did
/// not exist), and the state after its last decision (an index into ``Folded::arena``).
pub struct NetChange {
    pub before_version: Option<i64>,
    pub after: usize,
}

/// What :func:`fold` hands on: the outcomes in order, with the state each applied change
/// produced (an index into ``arena``, for its event), and the net changes in first-change
/// order.
pub struct Folded {
    pub outcomes: Vec<(Outcome, Option<usize>)>,
    pub arena: Vec<Resource>,
    pub changes: Vec<(Uuid, NetChange)>,
}

/// ``apply_batch.fold``: decide every fresh command in order. Fails only when a version
/// would pass 2^63 - 1 (PostgreSQL's BIGINT; the reference would fail writing it).
#[allow(clippy::too_many_arguments)]
pub fn fold(
    states: &IdMap<Resource>,
    fresh: &[Fresh],
    now: i64,
    parked: &IdSet,
    failed: &IdMap<String>,
    oldest: Option<&(i64, String)>,
    repr: Repr,
) -> Result<Folded, String> {
    let mut arena: Vec<Resource> = Vec::new();
    let mut current: IdMap<usize> = IdMap::default();
    let mut blocked: IdSet = parked.clone();
    let mut changes: indexmap::IndexMap<
        Uuid,
        NetChange,
        std::hash::BuildHasherDefault<crate::uuid::IdHasher>,
    > = indexmap::IndexMap::default();
    let mut outcomes = Vec::with_capacity(fresh.len());
    for item in fresh {
        let command = item.command;
        let rid = command.resource_id;
        if let Some(error) = failed.get(&command.command_id) {
            outcomes.push((
                Outcome::Parked {
                    code: code::APPLY_FAILED,
                    error: error.clone(),
                },
                None,
            ));
            blocked.insert(rid);
            continue;
        }
        if blocked.contains(&rid) {
            let error = format!(
                "waits behind parked commands of resource {}",
                text_string(&rid)
            );
            outcomes.push((
                Outcome::Parked {
                    code: code::BEHIND_PARKED,
                    error,
                },
                None,
            ));
            continue;
        }
        let before = match current.get(&rid) {
            Some(&i) => Some(&arena[i]),
            None => states.get(&rid),
        };
        let decision =
            match check_admission(command, item.key_matches, item.misplaced.as_ref(), oldest) {
                Err(v) => Decision::Rejected(v),
                Ok(()) => decide(before, command, now, repr),
            };
        match decision {
            Decision::Rejected(Violation(code, message)) => {
                outcomes.push((Outcome::Rejected { code, message }, None));
            }
            Decision::Applied(None) => {
                let version = before.expect("an unchanged update has a state").version;
                outcomes.push((
                    Outcome::Applied {
                        version,
                        change: None,
                    },
                    None,
                ));
            }
            Decision::Applied(Some(change)) => {
                if change.state.version == i64::MIN {
                    return Err(format!(
                        "resource {} would pass version 2^63 - 1",
                        text_string(&rid)
                    ));
                }
                let at = arena.len();
                let version = change.state.version;
                arena.push(change.state);
                outcomes.push((
                    Outcome::Applied {
                        version,
                        change: Some((change.event, change.changed)),
                    },
                    Some(at),
                ));
                let before_version = match changes.get(&rid) {
                    Some(c) => c.before_version,
                    None => states.get(&rid).map(|s| s.version),
                };
                changes.insert(
                    rid,
                    NetChange {
                        before_version,
                        after: at,
                    },
                );
                current.insert(rid, at);
            }
        }
    }
    Ok(Folded {
        outcomes,
        arena,
        changes: changes.into_iter().collect(),
    })
}
