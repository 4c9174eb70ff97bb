//! Who may do what on which topic: an access-control list in Mosquitto's ACL file format
//! (`auth.acl_file`), parsed into rules, and the questions the MQTT and Kafka fronts ask of
//! them. Once a list is set, what it does not grant is denied (Mosquitto's rule).
//!
//! The format, one statement per line (`#` starts a comment):
//!
//! - `user <name>`: the `topic` and `kafka-group` lines after it are that user's; those before
//!   the first `user` line are anonymous clients'.
//! - `topic [read|write|readwrite|deny] <filter>`: the access (readwrite when left out) to the
//!   topics the MQTT filter matches; `deny` takes away what any other line grants.
//! - `pattern [read|write|readwrite|deny] <filter>`: the same for every client, wherever it
//!   stands, with `%c` replaced by the client id and `%u` by the user name (a whole level
//!   each; a pattern does not apply to a client whose id or name holds `/`, `+` or `#`, nor
//!   `%u` to an anonymous client).
//! - `kafka-group <group id>`: Kafka consumer groups the user may join, commit and read
//!   offsets in, and delete (a trailing `*` matches any suffix).
//!
//! Kafka topics are checked as the MQTT filter `<topic>/#` (the MQTT topics a Kafka topic
//! holds: docs/mqtt-kafka.md): producing needs write on all of it, fetching read on all of
//! it, and a `deny` on any part of it refuses both.

use std::borrow::Cow;
use std::collections::HashMap;

use weir_mqtt::topic;

/// The access-control list in force, as the server keeps it (reloaded while connections
/// run, so every check reads it anew): `None` when no list is set and everything is allowed.
pub trait AclSource: Send + Sync + std::fmt::Debug {
    /// The rules now.
    fn current(&self) -> Option<std::sync::Arc<AclRules>>;
}

/// No access-control list: everything is allowed.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAcl;

impl AclSource for NoAcl {
    fn current(&self) -> Option<std::sync::Arc<AclRules>> {
        None
    }
}

/// What a client asks to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Subscribe, receive messages, fetch.
    Read,
    /// Publish (retained and will messages too), produce.
    Write,
}

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    /// The authenticated user, `None` for an anonymous client.
    pub user: Option<&'a str>,
    /// The MQTT client id or the Kafka client.id.
    pub client_id: &'a str,
}

/// What one line grants or takes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl Grant {
    fn gives(self, access: Access) -> bool {
        matches!(
            (self, access),
            (Grant::ReadWrite, _) | (Grant::Read, Access::Read) | (Grant::Write, Access::Write)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    grant: Grant,
    filter: String,
}

/// A parsed ACL file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclRules {
    /// `topic` lines before any `user` line.
    anonymous: Vec<Rule>,
    /// `topic` lines by user.
    users: HashMap<String, Vec<Rule>>,
    /// `pattern` lines, for everyone.
    patterns: Vec<Rule>,
    /// `kafka-group` lines by user (`None`: anonymous clients).
    groups: HashMap<Option<String>, Vec<String>>,
}

impl AclRules {
    /// Parses an ACL file's text; an error names the line and what is wrong with it.
    pub fn parse(text: &str) -> Result<AclRules, String> {
        let mut rules = AclRules::default();
        let mut user: Option<String> = None;
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |why: String| format!("line {}: {why}", number + 1);
            let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let rest = rest.trim();
            match keyword {
                "user" if !rest.is_empty() => user = Some(rest.to_owned()),
                "topic" | "pattern" => {
                    let rule = rule(rest, keyword == "pattern").map_err(at)?;
                    match (keyword, &user) {
                        ("pattern", _) => rules.patterns.push(rule),
                        (_, None) => rules.anonymous.push(rule),
                        (_, Some(name)) => rules.users.entry(name.clone()).or_default().push(rule),
                    }
                }
                "kafka-group" if !rest.is_empty() => {
                    rules
                        .groups
                        .entry(user.clone())
                        .or_default()
                        .push(rest.to_owned());
                }
                "user" | "kafka-group" => return Err(at(format!("`{keyword}` needs a name"))),
                other => {
                    return Err(at(format!(
                        "unknown statement `{other}` (user, topic, pattern, kafka-group)"
                    )));
                }
            }
        }
        Ok(rules)
    }

    /// Whether `client` may publish to (`Write`) or receive messages of (`Read`) the topic
    /// named `name`.
    pub fn allows(&self, client: Client<'_>, access: Access, name: &str) -> bool {
        let mut granted = false;
        for (grant, filter) in self.rules_of(client) {
            if !topic::matches(&filter, name) {
                continue;
            }
            if grant == Grant::Deny {
                return false;
            }
            granted |= grant.gives(access);
        }
        granted
    }

    /// Whether `client` may subscribe to `filter` (a shared subscription's inner filter):
    /// some line grants read on every topic it can match, and no `deny` takes all of them.
    /// Messages of topics a `deny` takes are held back at delivery ([`AclRules::allows`]).
    pub fn allows_subscription(&self, client: Client<'_>, filter: &str) -> bool {
        let mut granted = false;
        for (grant, own) in self.rules_of(client) {
            if !covers(&own, filter) {
                continue;
            }
            if grant == Grant::Deny {
                return false;
            }
            granted |= grant.gives(Access::Read);
        }
        granted
    }

    /// Whether `client` may produce to (`Write`) or fetch from (`Read`) the Kafka topic
    /// `kafka_topic`, checked as the MQTT filter `<kafka_topic>/#`: a line must grant the
    /// access on all of it, and no `deny` may touch any of it.
    pub fn allows_kafka_topic(
        &self,
        client: Client<'_>,
        access: Access,
        kafka_topic: &str,
    ) -> bool {
        let filter = format!("{kafka_topic}/#");
        let mut granted = false;
        for (grant, own) in self.rules_of(client) {
            if grant == Grant::Deny && intersects(&own, &filter) {
                return false;
            }
            granted |= grant.gives(access) && covers(&own, &filter);
        }
        granted
    }

    /// Whether `client` has read and write on every topic (`topic readwrite #`, no `deny`):
    /// what acting on the whole broker needs.
    pub fn allows_everything(&self, client: Client<'_>) -> bool {
        let mut granted = false;
        for (grant, own) in self.rules_of(client) {
            if grant == Grant::Deny {
                return false;
            }
            granted |= grant == Grant::ReadWrite && own == "#";
        }
        granted
    }

    /// Whether some line grants `client` write on some topic.
    pub fn grants_some_write(&self, client: Client<'_>) -> bool {
        self.rules_of(client)
            .any(|(grant, _)| grant.gives(Access::Write))
    }

    /// Whether `client` may use the Kafka consumer group `group`.
    pub fn allows_group(&self, client: Client<'_>, group: &str) -> bool {
        let Some(patterns) = self.groups.get(&client.user.map(str::to_owned)) else {
            return false;
        };
        patterns.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => group.starts_with(prefix),
            None => p == group,
        })
    }

    /// The lines that apply to `client`, each as its grant and filter: its section's, then
    /// the patterns made for it (only those naming `%c` or `%u` are copied).
    fn rules_of<'a>(
        &'a self,
        client: Client<'a>,
    ) -> impl Iterator<Item = (Grant, Cow<'a, str>)> + 'a {
        let own = match client.user {
            None => Some(&self.anonymous),
            Some(user) => self.users.get(user),
        };
        let own = (own.into_iter().flatten()).map(|rule| (rule.grant, Cow::from(&rule.filter)));
        let usable = |text: &&str| !text.is_empty() && !text.contains(['/', '+', '#']);
        let id = Some(client.client_id).filter(usable);
        let user = client.user.filter(usable);
        let patterns = self.patterns.iter().filter_map(move |rule| {
            let mut filter = Cow::from(&rule.filter);
            for (marker, value) in [("%c", id), ("%u", user)] {
                if filter.split('/').any(|level| level == marker) {
                    let value = value?;
                    let levels = filter
                        .split('/')
                        .map(|l| if l == marker { value } else { l });
                    filter = Cow::Owned(levels.collect::<Vec<_>>().join("/"));
                }
            }
            Some((rule.grant, filter))
        });
        own.chain(patterns)
    }
}

/// A `topic` or `pattern` line's access and filter.
fn rule(text: &str, pattern: bool) -> Result<Rule, String> {
    let (first, after) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let grant = match first {
        "read" => Some(Grant::Read),
        "write" => Some(Grant::Write),
        "readwrite" => Some(Grant::ReadWrite),
        "deny" => Some(Grant::Deny),
        _ => None,
    };
    let (grant, filter) = match grant {
        Some(grant) if !after.trim().is_empty() => (grant, after.trim()),
        _ => (Grant::ReadWrite, text),
    };
    // A pattern's `%c` and `%u` stand for a whole level; checked as if replaced.
    let partial = |level: &str| {
        (level.contains("%c") || level.contains("%u")) && level != "%c" && level != "%u"
    };
    if pattern && filter.split('/').any(partial) {
        return Err(format!(
            "`{filter}`: `%c` and `%u` must each be a whole level"
        ));
    }
    let checked = match pattern {
        true => (filter.split('/'))
            .map(|level| {
                if level == "%c" || level == "%u" {
                    "x"
                } else {
                    level
                }
            })
            .collect::<Vec<_>>()
            .join("/"),
        false => filter.to_owned(),
    };
    if filter.is_empty()
        || !topic::is_valid_topic_filter(&checked)
        || topic::is_shared_filter(filter)
    {
        return Err(format!("`{filter}` is not a topic filter"));
    }
    Ok(Rule {
        grant,
        filter: filter.to_owned(),
    })
}

/// Whether every topic name the filter `inner` matches is matched by the filter `outer`.
fn covers(outer: &str, inner: &str) -> bool {
    if inner.starts_with('$') && outer.starts_with(['+', '#']) {
        return false;
    }
    let mut levels = inner.split('/');
    for level in outer.split('/') {
        match (level, levels.next()) {
            ("#", _) => return true,
            (_, None | Some("#")) => return false,
            ("+", Some(_)) => {}
            (literal, Some(other)) => {
                if literal != other {
                    return false;
                }
            }
        }
    }
    levels.next().is_none()
}

/// Whether some topic name is matched by both filters.
fn intersects(a: &str, b: &str) -> bool {
    let (mut a, mut b) = (a.split('/'), b.split('/'));
    loop {
        match (a.next(), b.next()) {
            (Some("#"), _) | (_, Some("#")) | (None, None) => return true,
            (None, Some(_)) | (Some(_), None) => return false,
            (Some("+"), Some(_)) | (Some(_), Some("+")) => {}
            (Some(x), Some(y)) => {
                if x != y {
                    return false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
