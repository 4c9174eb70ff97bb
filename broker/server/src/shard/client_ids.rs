//! Which connection holds each MQTT client id, and the takeovers in progress.
//!
//! A CONNECT with a client id that is held takes it over: the holder closes and stores its
//! session, and only then may the new connection load it. With several connections racing
//! for one id (A holds it, B connects, then C before A has stored its session), the table
//! counts the connections that still have to let go of the id (`releasing`): the newest
//! connection loads the session only when every earlier one has submitted its store (the
//! writer takes work in order, so the load reads what they stored). A connection that was
//! itself still waiting (B) holds no session and stores nothing; it only counts down.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::inbox::Owner;

/// One client id's holder and how many earlier connections have still to let go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Holder {
    /// The newest connection with the id; none if it closed while the id was being let go.
    owner: Option<Owner>,
    /// Earlier connections told to close that have not yet stored their sessions.
    releasing: u32,
}

/// What a CONNECT must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Claim {
    /// Nobody held the id: load the session now.
    Load,
    /// Wait to be told the id is free; `close` (if any) must be told to close first.
    Wait { close: Option<Owner> },
}

/// The client ids of every shard's MQTT connections. Locked on CONNECT, takeover and close
/// only, never per message.
#[derive(Debug, Default)]
pub(super) struct ClientIds {
    table: Mutex<HashMap<String, Holder>>,
}

/// The locked table, for steps that must happen under its lock (wills).
pub(super) struct Locked<'a>(MutexGuard<'a, HashMap<String, Holder>>);

impl ClientIds {
    /// Locks the table.
    pub(super) fn lock(&self) -> Locked<'_> {
        Locked(self.table.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Locked<'_> {
    /// Connection `me` connects with `client_id`.
    pub(super) fn claim(&mut self, client_id: &str, me: Owner) -> Claim {
        let Some(holder) = self.0.get_mut(client_id) else {
            let holder = Holder {
                owner: Some(me),
                releasing: 0,
            };
            self.0.insert(client_id.to_owned(), holder);
            return Claim::Load;
        };
        let previous = holder.owner.replace(me).filter(|p| *p != me);
        if previous.is_some() {
            holder.releasing += 1;
        }
        if holder.releasing == 0 {
            return Claim::Load;
        }
        Claim::Wait { close: previous }
    }

    /// An earlier connection of `client_id` has stored what it leaves (or had nothing to
    /// store): returns the connection to tell that the id is free, once none is left.
    pub(super) fn release(&mut self, client_id: &str) -> Option<Owner> {
        let holder = self.0.get_mut(client_id)?;
        holder.releasing = holder.releasing.saturating_sub(1);
        if holder.releasing > 0 {
            return None;
        }
        let owner = holder.owner;
        if owner.is_none() {
            self.0.remove(client_id);
        }
        owner
    }

    /// Connection `me` with `client_id` has closed (its session stored first).
    pub(super) fn leave(&mut self, client_id: &str, me: Owner) {
        let Some(holder) = self.0.get_mut(client_id) else {
            return;
        };
        if holder.owner != Some(me) {
            return;
        }
        if holder.releasing == 0 {
            self.0.remove(client_id);
        } else {
            holder.owner = None;
        }
    }

    /// True if a newer connection has claimed `client_id` since `me` did.
    pub(super) fn taken_from(&self, client_id: &str, me: Owner) -> bool {
        self.0.get(client_id).is_some_and(|h| h.owner != Some(me))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(slot: usize) -> Owner {
        Owner {
            shard: 0,
            slot,
            generation: 1,
        }
    }

    #[test]
    fn a_free_id_loads_at_once_and_is_free_again_after_close() {
        let ids = ClientIds::default();
        let mut t = ids.lock();
        assert_eq!(t.claim("a", conn(1)), Claim::Load);
        t.leave("a", conn(1));
        assert_eq!(t.claim("a", conn(2)), Claim::Load);
    }

    #[test]
    fn three_connections_racing_load_after_every_earlier_one_let_go() {
        let ids = ClientIds::default();
        let mut t = ids.lock();
        assert_eq!(t.claim("a", conn(1)), Claim::Load);
        let close = Some(conn(1));
        assert_eq!(t.claim("a", conn(2)), Claim::Wait { close });
        let close = Some(conn(2));
        assert_eq!(t.claim("a", conn(3)), Claim::Wait { close });
        // The second connection (which never loaded) lets go first: the third still waits
        // for the first to store its session.
        assert_eq!(t.release("a"), None);
        assert!(t.taken_from("a", conn(1)));
        assert_eq!(t.release("a"), Some(conn(3)));
        assert!(!t.taken_from("a", conn(3)));
    }

    #[test]
    fn a_waiting_connection_that_closes_leaves_the_wait_to_the_next() {
        let ids = ClientIds::default();
        let mut t = ids.lock();
        t.claim("a", conn(1));
        t.claim("a", conn(2));
        t.leave("a", conn(2));
        // The first has not stored its session yet: a fourth connection waits for it.
        assert_eq!(t.claim("a", conn(4)), Claim::Wait { close: None });
        assert_eq!(t.release("a"), Some(conn(4)));
    }

    #[test]
    fn the_entry_goes_when_the_last_releaser_finds_nobody_waiting() {
        let ids = ClientIds::default();
        let mut t = ids.lock();
        t.claim("a", conn(1));
        t.claim("a", conn(2));
        t.leave("a", conn(2));
        assert_eq!(t.release("a"), None);
        assert_eq!(t.claim("a", conn(3)), Claim::Load);
    }

    #[test]
    fn a_connection_connecting_twice_keeps_the_id() {
        let ids = ClientIds::default();
        let mut t = ids.lock();
        assert_eq!(t.claim("a", conn(1)), Claim::Load);
        assert_eq!(t.claim("a", conn(1)), Claim::Load);
    }
}
