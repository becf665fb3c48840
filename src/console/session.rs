//! Console sessions: kept on the server, named by a random cookie. A
//! session holds the verified token the console sends to the management API
//! on the user's behalf, the principal it names, and the CSRF token every
//! state-changing form carries. Sessions end on sign-out, after
//! `session_idle_secs` without a request, after `session_max_secs`, and
//! when the token expires, whichever comes first.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aes_gcm::aead::rand_core::RngCore as _;
use aes_gcm::aead::OsRng;
use base64::Engine as _;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::authz::entities::Principal;

/// Sessions one user may have at once; a new one ends their least recently
/// used.
pub const PER_USER: usize = 20;

/// What a request sees of its session.
#[derive(Clone)]
pub struct Session {
    /// The bearer token the console sends to the API.
    pub token: String,
    pub principal: Principal,
    /// The value every state-changing form must carry.
    pub csrf: String,
}

struct Entry {
    session: Session,
    created: Instant,
    last_seen: Instant,
    /// When the token stops being accepted (Unix seconds).
    token_expires: i64,
}

/// The server's sessions, by the SHA-256 of their cookie value (a memory
/// dump or a log of this map does not give a usable cookie).
pub struct Sessions {
    entries: Mutex<HashMap<[u8; 32], Entry>>,
    idle: Duration,
    absolute: Duration,
    capacity: usize,
}

/// 32 random bytes, base64url without padding.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Equality that takes the same time wherever the first difference is.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn key(cookie: &str) -> [u8; 32] {
    Sha256::digest(cookie.as_bytes()).into()
}

impl Sessions {
    pub fn new(idle: Duration, absolute: Duration, capacity: usize) -> Self {
        Sessions {
            entries: Mutex::new(HashMap::new()),
            idle,
            absolute,
            capacity: capacity.max(1),
        }
    }

    /// Starts a session; returns the cookie value that names it.
    pub fn create(&self, token: String, principal: Principal, token_expires: i64) -> String {
        let cookie = random_token();
        let now = Instant::now();
        let mut entries = self.entries.lock();
        // One person signing in again and again ends their own oldest
        // sessions, not other people's.
        let theirs: Vec<([u8; 32], Instant)> = entries
            .iter()
            .filter(|(_, e)| {
                e.session.principal.id == principal.id
                    && e.session.principal.tenant == principal.tenant
            })
            .map(|(k, e)| (*k, e.last_seen))
            .collect();
        if theirs.len() >= PER_USER {
            if let Some((k, _)) = theirs.iter().min_by_key(|(_, seen)| *seen) {
                entries.remove(k);
            }
        }
        if entries.len() >= self.capacity {
            self.prune(&mut entries, now);
        }
        if entries.len() >= self.capacity {
            // Still full of live sessions: the least recently used one ends.
            if let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, e)| e.last_seen)
                .map(|(k, _)| *k)
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(
            key(&cookie),
            Entry {
                session: Session {
                    token,
                    principal,
                    csrf: random_token(),
                },
                created: now,
                last_seen: now,
                token_expires,
            },
        );
        cookie
    }

    /// The live session a cookie names (and it counts as activity); an
    /// expired one is removed.
    pub fn get(&self, cookie: &str) -> Option<Session> {
        let now = Instant::now();
        let unix = chrono::Utc::now().timestamp();
        let k = key(cookie);
        let mut entries = self.entries.lock();
        let live = entries
            .get(&k)
            .map(|e| self.live(e, now, unix))
            .unwrap_or(false);
        if !live {
            entries.remove(&k);
            return None;
        }
        let e = entries.get_mut(&k)?;
        e.last_seen = now;
        Some(e.session.clone())
    }

    /// Ends the session a cookie names.
    pub fn remove(&self, cookie: &str) {
        self.entries.lock().remove(&key(cookie));
    }

    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn live(&self, e: &Entry, now: Instant, unix: i64) -> bool {
        now.duration_since(e.last_seen) < self.idle
            && now.duration_since(e.created) < self.absolute
            && unix < e.token_expires
    }

    fn prune(&self, entries: &mut HashMap<[u8; 32], Entry>, now: Instant) {
        let unix = chrono::Utc::now().timestamp();
        entries.retain(|_, e| self.live(e, now, unix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{TenantId, UserId};
    use crate::model::Level;

    fn principal() -> Principal {
        Principal {
            id: UserId::parse("alice").unwrap(),
            tenant: TenantId::parse("t1").unwrap(),
            roles: vec![],
            clearance: Level::default(),
        }
    }

    fn far() -> i64 {
        chrono::Utc::now().timestamp() + 3600
    }

    #[test]
    fn a_session_is_found_by_its_cookie_only() {
        let s = Sessions::new(Duration::from_secs(60), Duration::from_secs(600), 10);
        let cookie = s.create("tok".into(), principal(), far());
        let got = s.get(&cookie).expect("live");
        assert_eq!(got.token, "tok");
        assert_eq!(got.csrf.len(), 43);
        assert!(s.get("not-a-cookie").is_none());
        let mut altered = cookie.clone();
        altered.replace_range(0..1, if cookie.starts_with('A') { "B" } else { "A" });
        assert!(s.get(&altered).is_none());
        s.remove(&cookie);
        assert!(s.get(&cookie).is_none());
    }

    #[test]
    fn sessions_end_when_idle_too_long_or_when_the_token_expires() {
        let s = Sessions::new(Duration::ZERO, Duration::from_secs(600), 10);
        let cookie = s.create("tok".into(), principal(), far());
        assert!(s.get(&cookie).is_none(), "idle limit of zero");
        assert!(s.is_empty(), "the expired session is removed");

        let s = Sessions::new(Duration::from_secs(60), Duration::ZERO, 10);
        let cookie = s.create("tok".into(), principal(), far());
        assert!(s.get(&cookie).is_none(), "absolute limit of zero");

        let s = Sessions::new(Duration::from_secs(60), Duration::from_secs(600), 10);
        let cookie = s.create(
            "tok".into(),
            principal(),
            chrono::Utc::now().timestamp() - 1,
        );
        assert!(s.get(&cookie).is_none(), "token expired");
    }

    #[test]
    fn a_full_table_ends_the_least_recently_used_session() {
        let s = Sessions::new(Duration::from_secs(60), Duration::from_secs(600), 2);
        let a = s.create("a".into(), principal(), far());
        let b = s.create("b".into(), principal(), far());
        assert!(s.get(&a).is_some()); // a is now more recent than b
        let c = s.create("c".into(), principal(), far());
        assert_eq!(s.len(), 2);
        assert!(s.get(&b).is_none());
        assert!(s.get(&a).is_some() && s.get(&c).is_some());
    }

    #[test]
    fn one_user_signing_in_again_and_again_ends_only_their_own_sessions() {
        let s = Sessions::new(Duration::from_secs(60), Duration::from_secs(600), 100);
        let mut bob = principal();
        bob.id = UserId::parse("bob").unwrap();
        let bobs = s.create("b".into(), bob, far());
        let first = s.create("a".into(), principal(), far());
        for _ in 0..PER_USER * 3 {
            s.create("a".into(), principal(), far());
        }
        assert_eq!(s.len(), PER_USER + 1);
        assert!(s.get(&bobs).is_some(), "another user's session stays");
        assert!(s.get(&first).is_none(), "their oldest went first");
    }

    #[test]
    fn comparison_is_exact() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert!(!same("", "a"));
    }
}
