//! What the worker's slots know of each beanstalkd server: up, down or not
//! yet tried, shared so that a server going down or coming back is logged
//! once (by the slot that sees it first), not once per slot per retry.
//!
//! Each state change starts an *epoch*; a connection remembers the epoch it
//! was opened in, so that the loss of a connection opened before the server
//! last came back (another slot already saw that outage) changes nothing.

use std::sync::Mutex;

/// A server's state as the slots saw it last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// No connection tried yet.
    Unknown,
    /// A connection opened.
    Up,
    /// A connection was lost or could not be opened.
    Down,
}

/// What a slot saw happen on a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seen {
    /// A connection opened.
    Opened,
    /// A connection could not be opened.
    Refused,
    /// A connection opened in epoch `.0` was lost.
    Lost(u64),
}

/// What is to be logged of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    /// Nothing: no change, or another slot already said it.
    None,
    /// Up for the first time: not worth a line (the worker just started).
    First,
    /// Back after being down.
    Back,
    /// Never reached, or no longer reachable, at connect.
    Unreachable,
    /// A connection to a server that was up was lost.
    Lost,
}

/// One server's state and epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Server {
    pub(super) state: State,
    pub(super) epoch: u64,
}

impl Server {
    /// A server not yet tried.
    pub(super) const NEW: Server = Server {
        state: State::Unknown,
        epoch: 0,
    };

    /// The server after `seen`, and what to log of it.
    pub(super) fn next(self, seen: Seen) -> (Server, Change) {
        let to = |state, change| {
            (
                Server {
                    state,
                    epoch: self.epoch + 1,
                },
                change,
            )
        };
        match (self.state, seen) {
            (State::Unknown, Seen::Opened) => to(State::Up, Change::First),
            (State::Down, Seen::Opened) => to(State::Up, Change::Back),
            (State::Unknown | State::Up, Seen::Refused) => to(State::Down, Change::Unreachable),
            (State::Up, Seen::Lost(epoch)) if epoch == self.epoch => to(State::Down, Change::Lost),
            _ => (self, Change::None),
        }
    }
}

/// Every server's state, shared by all slots of a worker.
#[derive(Debug)]
pub(super) struct Health {
    servers: Vec<Mutex<Server>>,
}

impl Health {
    /// `n` servers, none tried yet.
    pub(super) fn new(n: usize) -> Health {
        Health {
            servers: (0..n).map(|_| Mutex::new(Server::NEW)).collect(),
        }
    }

    /// Records what a slot saw on server `s`; returns what to log and the
    /// epoch the server is now in (a connection just opened belongs to it).
    pub(super) fn saw(&self, s: usize, seen: Seen) -> (Change, u64) {
        // A poisoned lock only means a panic elsewhere mid-update of two
        // plain fields: the value is still whole.
        let mut server = self.servers[s]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (next, change) = server.next(seen);
        *server = next;
        (change, next.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seen: &[Seen]) -> Vec<Change> {
        let mut server = Server::NEW;
        seen.iter()
            .map(|s| {
                let (next, change) = server.next(*s);
                server = next;
                change
            })
            .collect()
    }

    #[test]
    fn a_first_connection_is_not_news_but_a_return_is() {
        assert_eq!(
            run(&[Seen::Opened, Seen::Opened]),
            [Change::First, Change::None]
        );
        assert_eq!(
            run(&[Seen::Refused, Seen::Refused, Seen::Opened]),
            [Change::Unreachable, Change::None, Change::Back]
        );
    }

    #[test]
    fn an_outage_is_told_once_however_many_connections_see_it() {
        // Epoch 1: opened. Three slots lose their connections of epoch 1;
        // they retry and are refused; one gets back in (epoch 3); the
        // others' connections, opened in epoch 1, are old news.
        assert_eq!(
            run(&[
                Seen::Opened,
                Seen::Lost(1),
                Seen::Lost(1),
                Seen::Refused,
                Seen::Refused,
                Seen::Opened,
                Seen::Lost(1),
                Seen::Opened,
            ]),
            [
                Change::First,
                Change::Lost,
                Change::None,
                Change::None,
                Change::None,
                Change::Back,
                Change::None,
                Change::None,
            ]
        );
    }

    #[test]
    fn losing_a_connection_of_the_current_epoch_is_a_new_outage() {
        assert_eq!(
            run(&[Seen::Opened, Seen::Lost(1), Seen::Opened, Seen::Lost(3)]),
            [Change::First, Change::Lost, Change::Back, Change::Lost]
        );
    }

    #[test]
    fn the_shared_state_hands_out_epochs() {
        let health = Health::new(2);
        assert_eq!(health.saw(0, Seen::Opened), (Change::First, 1));
        assert_eq!(health.saw(0, Seen::Opened), (Change::None, 1));
        assert_eq!(health.saw(0, Seen::Lost(1)), (Change::Lost, 2));
        assert_eq!(health.saw(1, Seen::Refused), (Change::Unreachable, 1));
    }
}
