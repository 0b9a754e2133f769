//! The live connections, keyed by client id, and what the rest of the
//! server may tell one of them: close (a newer connection took its client
//! id, or the credential it logged in with was revoked) or deliver an alarm
//! (a company's reader subscribed to its alarm topic).
//!
//! Connections run on the MQTT worker threads, whose handles cannot leave
//! them; each one has a command queue instead, read by a task on its worker.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use wenu_registry::Revoked;

/// Commands a connection has not read yet, at most: an alarm reader too slow
/// for this many misses the rest (counted), it does not slow the server.
pub(crate) const COMMAND_QUEUE: usize = 1024;

#[derive(Debug)]
pub(crate) enum Command {
    /// Publish at QoS 1 to the client; `receipt` hears of its PUBACK.
    Deliver { topic: String, payload: Bytes, receipt: Option<oneshot::Sender<()>> },
    /// Close the connection.
    Close,
}

/// What a connection logged in with: what revoking ends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Credential {
    /// A device, by password or by the client certificate with this fingerprint.
    Device { id: String, certificate: Option<String> },
    /// An alarm reader, by the API token with this id.
    Token(String),
}

impl Credential {
    fn is_revoked(&self, revoked: &Revoked) -> bool {
        match self {
            Credential::Device { id, certificate } => {
                revoked.disabled_devices.contains(id)
                    || certificate.as_ref().is_some_and(|c| revoked.certificates.contains(c))
            }
            Credential::Token(id) => revoked.token_ids.contains(id),
        }
    }
}

/// A connection's place in [`Links`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LinkId(u64);

struct Link {
    id: LinkId,
    credential: Credential,
    commands: mpsc::Sender<Command>,
    /// The topics it subscribed to.
    subscriptions: Vec<String>,
}

#[derive(Default)]
struct Table {
    by_client_id: HashMap<String, Link>,
    /// Client ids subscribed to each topic.
    readers: HashMap<String, HashSet<String>>,
}

impl Table {
    fn unsubscribe(&mut self, client_id: &str, link: &Link) {
        for topic in &link.subscriptions {
            if let Some(readers) = self.readers.get_mut(topic) {
                readers.remove(client_id);
                if readers.is_empty() {
                    self.readers.remove(topic);
                }
            }
        }
    }
}

#[derive(Default)]
pub(crate) struct Links {
    next_id: AtomicU64,
    table: Mutex<Table>,
}

impl Links {
    /// Registers a new connection under `client_id`. One client id, one
    /// connection: an older one under the same client id is told to close
    /// (MQTT's session takeover; the gate has already checked that only the
    /// same identity can use that client id).
    pub fn open(&self, client_id: &str, credential: Credential, commands: mpsc::Sender<Command>) -> LinkId {
        let id = LinkId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let link = Link { id, credential, commands, subscriptions: Vec::new() };
        let mut table = self.lock();
        if let Some(older) = table.by_client_id.insert(client_id.to_owned(), link) {
            table.unsubscribe(client_id, &older);
            let _ = older.commands.try_send(Command::Close);
        }
        id
    }

    /// Forgets a connection that ended; false if a newer one holds the
    /// client id (or it was closed as revoked), so it was no longer current.
    pub fn remove(&self, client_id: &str, id: LinkId) -> bool {
        let mut table = self.lock();
        if table.by_client_id.get(client_id).is_some_and(|link| link.id == id)
            && let Some(link) = table.by_client_id.remove(client_id)
        {
            table.unsubscribe(client_id, &link);
            return true;
        }
        false
    }

    /// Adds a subscription; false if the connection already had it (or is gone).
    pub fn subscribe(&self, client_id: &str, id: LinkId, topic: &str) -> bool {
        let mut table = self.lock();
        let Some(link) = table.by_client_id.get_mut(client_id).filter(|link| link.id == id) else {
            return false;
        };
        if link.subscriptions.iter().any(|t| t == topic) {
            return false;
        }
        link.subscriptions.push(topic.to_owned());
        table.readers.entry(topic.to_owned()).or_default().insert(client_id.to_owned());
        true
    }

    /// Queues `payload` for every connection subscribed to `topic`; returns
    /// how many readers got it and how many were too far behind.
    pub fn deliver(&self, topic: &str, payload: &Bytes) -> (usize, usize) {
        let (mut delivered, mut behind) = (0, 0);
        let table = self.lock();
        let readers = table.readers.get(topic).into_iter().flatten();
        for link in readers.filter_map(|client_id| table.by_client_id.get(client_id)) {
            let command =
                Command::Deliver { topic: topic.to_owned(), payload: payload.clone(), receipt: None };
            match link.commands.try_send(command) {
                Ok(()) => delivered += 1,
                Err(_) => behind += 1,
            }
        }
        (delivered, behind)
    }

    /// Queues `payload` for the one connection of `client_id` if it is
    /// subscribed to `topic`; the receiver hears when the client acknowledged it.
    pub fn deliver_to(&self, client_id: &str, topic: &str, payload: Bytes) -> Option<oneshot::Receiver<()>> {
        let table = self.lock();
        let link =
            table.by_client_id.get(client_id).filter(|l| l.subscriptions.iter().any(|t| t == topic))?;
        let (receipt, acknowledged) = oneshot::channel();
        let command = Command::Deliver { topic: topic.to_owned(), payload, receipt: Some(receipt) };
        link.commands.try_send(command).ok().map(|()| acknowledged)
    }

    /// Tells every connection whose credential is in `revoked` to close and
    /// forgets it; returns how many.
    pub fn close_revoked(&self, revoked: &Revoked) -> usize {
        let mut table = self.lock();
        let ended: Vec<String> = table
            .by_client_id
            .iter()
            .filter(|(_, link)| link.credential.is_revoked(revoked))
            .map(|(client_id, _)| client_id.clone())
            .collect();
        for client_id in &ended {
            if let Some(link) = table.by_client_id.remove(client_id) {
                table.unsubscribe(client_id, &link);
                let _ = link.commands.try_send(Command::Close);
            }
        }
        ended.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().expect("links poisoned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str) -> Credential {
        Credential::Device { id: id.to_owned(), certificate: None }
    }

    #[test]
    fn a_second_connection_with_a_client_id_closes_the_first() {
        let links = Links::default();
        let (first_tx, mut first) = mpsc::channel(4);
        let (second_tx, mut second) = mpsc::channel(4);
        let first_id = links.open("d1", device("d1"), first_tx);
        let second_id = links.open("d1", device("d1"), second_tx);
        assert!(matches!(first.try_recv(), Ok(Command::Close)));
        assert!(second.try_recv().is_err());
        // The first one ending does not forget the second: a third closes it.
        links.remove("d1", first_id);
        let (third_tx, _third) = mpsc::channel(4);
        let third_id = links.open("d1", device("d1"), third_tx);
        assert!(matches!(second.try_recv(), Ok(Command::Close)));
        links.remove("d1", second_id);
        links.remove("d1", third_id);
        assert!(links.lock().by_client_id.is_empty());
    }

    #[test]
    fn alarms_reach_only_the_readers_of_their_topic() {
        let links = Links::default();
        let (acme_tx, mut acme) = mpsc::channel(1);
        let (globex_tx, mut globex) = mpsc::channel(1);
        let acme_id = links.open("company:acme:r", Credential::Token("t-acme".into()), acme_tx);
        let globex_id = links.open("company:globex:r", Credential::Token("t-globex".into()), globex_tx);
        links.subscribe("company:acme:r", acme_id, "wenu/alarms/acme");
        links.subscribe("company:globex:r", globex_id, "wenu/alarms/globex");
        assert_eq!(links.deliver("wenu/alarms/acme", &Bytes::from_static(b"a")), (1, 0));
        assert!(matches!(acme.try_recv(), Ok(Command::Deliver { topic, .. }) if topic == "wenu/alarms/acme"));
        assert!(globex.try_recv().is_err());
        // A reader whose queue is full misses it, and it is counted.
        assert_eq!(links.deliver("wenu/alarms/globex", &Bytes::from_static(b"1")), (1, 0));
        assert_eq!(links.deliver("wenu/alarms/globex", &Bytes::from_static(b"2")), (0, 1));
    }

    #[test]
    fn revoking_closes_exactly_the_sessions_of_the_revoked_credentials() {
        let links = Links::default();
        let open = |client_id: &str, credential: Credential| {
            let (tx, rx) = mpsc::channel(4);
            links.open(client_id, credential, tx);
            rx
        };
        let mut reader = open("company:acme:r", Credential::Token("t1".into()));
        let mut other_reader = open("company:acme:s", Credential::Token("t2".into()));
        let mut by_cert =
            open("d1", Credential::Device { id: "d1".into(), certificate: Some("aa".repeat(32)) });
        let mut disabled = open("d2", device("d2"));
        let mut fine = open("d3", Credential::Device { id: "d3".into(), certificate: Some("bb".repeat(32)) });
        let revoked = Revoked {
            token_ids: ["t1".to_owned()].into(),
            certificates: ["aa".repeat(32)].into(),
            disabled_devices: ["d2".to_owned()].into(),
        };
        assert_eq!(links.close_revoked(&revoked), 3);
        for closed in [&mut reader, &mut by_cert, &mut disabled] {
            assert!(matches!(closed.try_recv(), Ok(Command::Close)));
        }
        assert!(other_reader.try_recv().is_err());
        assert!(fine.try_recv().is_err());
        assert_eq!(links.close_revoked(&revoked), 0, "each session is closed once");
    }
}
