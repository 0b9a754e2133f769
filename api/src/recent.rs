//! A second's memory of the registry answers every data request needs (who
//! the bearer is, which company owns the device), so that a dashboard
//! polling a chart does not cost three registry round trips per request.
//!
//! Only positive answers are kept, and only for [`KEEP_FOR`]: a token
//! revoked or a device removed through this API is forgotten at once (every
//! successful change through the API clears the memory), one revoked from
//! another process (the CLI) stops working within that second.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::time::Instant;
use wenu_registry::ApiToken;

/// How long an answer is trusted.
pub(crate) const KEEP_FOR: Duration = Duration::from_secs(1);
/// Beyond this many answers of one kind, expired ones are dropped, then all.
const MOST_KEPT: usize = 10_000;

/// The registry answers kept.
#[derive(Default)]
pub(crate) struct Recent {
    /// Verified tokens, by the SHA-256 of their bearer (the secret itself is not kept).
    tokens: Answers<[u8; 32], ApiToken>,
    /// The company of each device.
    owners: Answers<String, String>,
}

impl Recent {
    pub(crate) fn token(&self, bearer: &str) -> Option<ApiToken> {
        self.tokens.get(&digest(bearer))
    }

    pub(crate) fn remember_token(&self, bearer: &str, token: &ApiToken) {
        self.tokens.put(digest(bearer), token.clone());
    }

    pub(crate) fn owner(&self, device: &str) -> Option<String> {
        self.owners.get(device)
    }

    pub(crate) fn remember_owner(&self, device: &str, company: &str) {
        self.owners.put(device.to_owned(), company.to_owned());
    }

    /// After a change through the API: nothing remembered may be stale.
    pub(crate) fn forget_all(&self) {
        self.tokens.clear();
        self.owners.clear();
    }
}

fn digest(bearer: &str) -> [u8; 32] {
    Sha256::digest(bearer.as_bytes()).into()
}

struct Answers<K, V>(Mutex<HashMap<K, (Instant, V)>>);

impl<K, V> Default for Answers<K, V> {
    fn default() -> Self {
        Answers(Mutex::new(HashMap::new()))
    }
}

impl<K: std::hash::Hash + Eq, V: Clone> Answers<K, V> {
    fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        let answers = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        answers.get(key).filter(|(at, _)| at.elapsed() < KEEP_FOR).map(|(_, value)| value.clone())
    }

    fn put(&self, key: K, value: V) {
        let mut answers = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if answers.len() >= MOST_KEPT {
            answers.retain(|_, (at, _)| at.elapsed() < KEEP_FOR);
            if answers.len() >= MOST_KEPT {
                answers.clear();
            }
        }
        answers.insert(key, (Instant::now(), value));
    }

    fn clear(&self) {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn answers_are_kept_for_a_second_and_forgotten_on_change() {
        let recent = Recent::default();
        recent.remember_owner("d1", "acme");
        assert_eq!(recent.owner("d1").as_deref(), Some("acme"));
        assert_eq!(recent.owner("d2"), None);
        tokio::time::advance(KEEP_FOR).await;
        assert_eq!(recent.owner("d1"), None, "expired");

        recent.remember_owner("d1", "acme");
        recent.forget_all();
        assert_eq!(recent.owner("d1"), None, "forgotten");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_memory_drops_what_expired_first() {
        let answers = Answers::<String, u32>::default();
        answers.put("old".into(), 0);
        tokio::time::advance(KEEP_FOR).await;
        for i in 1..MOST_KEPT as u32 {
            answers.put(i.to_string(), i);
        }
        answers.put("new".into(), 1);
        assert_eq!(answers.get("new"), Some(1));
        assert_eq!(answers.get("1"), Some(1), "fresh answers stay");
        assert_eq!(answers.0.lock().unwrap().len(), MOST_KEPT, "the expired one made room");
    }
}
