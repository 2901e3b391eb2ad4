//! Access tokens: random, valid until their expiry on the faker's clock, or until every token
//! is invalidated at once.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

/// Above this many live tokens, issuing one first drops the expired ones.
const PRUNE_ABOVE: usize = 1024;

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Never issued, or invalidated.
    Unknown,
    /// Past its expiry.
    Expired,
}

/// The tokens handed out so far.
#[derive(Debug)]
pub struct Tokens {
    ttl: chrono::Duration,
    live: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl Tokens {
    /// Tokens living `ttl_secs` seconds.
    #[must_use]
    pub fn new(ttl_secs: u64) -> Self {
        Self {
            ttl: chrono::Duration::seconds(i64::try_from(ttl_secs).unwrap_or(i64::MAX / 1000)),
            live: Mutex::new(HashMap::new()),
        }
    }

    /// A new token and its expiry.
    pub fn issue(&self, now: DateTime<Utc>) -> (String, DateTime<Utc>) {
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let expires = now
            .checked_add_signed(self.ttl)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let mut live = self.lock();
        if live.len() > PRUNE_ABOVE {
            live.retain(|_, exp| *exp > now);
        }
        live.insert(token.clone(), expires);
        (token, expires)
    }

    /// Whether `token` may be used at `now`.
    ///
    /// # Errors
    /// The [`Refusal`].
    pub fn check(&self, token: &str, now: DateTime<Utc>) -> Result<(), Refusal> {
        match self.lock().get(token) {
            None => Err(Refusal::Unknown),
            Some(exp) if *exp <= now => Err(Refusal::Expired),
            Some(_) => Ok(()),
        }
    }

    /// Forgets every token: clients get 401 until they ask for a new one.
    pub fn invalidate_all(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, DateTime<Utc>>> {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_valid_until_its_expiry_and_not_after_invalidation() {
        let tokens = Tokens::new(60);
        let t0 = Utc::now();
        let (tok, exp) = tokens.issue(t0);
        assert_eq!(exp - t0, chrono::Duration::seconds(60));
        assert_eq!(tokens.check(&tok, t0), Ok(()));
        assert_eq!(
            tokens.check(&tok, t0 + chrono::Duration::seconds(60)),
            Err(Refusal::Expired)
        );
        assert_eq!(tokens.check("nope", t0), Err(Refusal::Unknown));
        tokens.invalidate_all();
        assert_eq!(tokens.check(&tok, t0), Err(Refusal::Unknown));
    }
}
