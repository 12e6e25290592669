//! The dashboard's browser sessions: `POST /dashboard/session` (with the admin key or a
//! `dashboard` key in `Authorization`) answers a cookie whose random id maps, in this process's
//! memory, to who presented the key. A browser cannot send `Authorization` on a WebSocket, and a
//! key never goes in a URL; the cookie is `HttpOnly` (no script reads it) and `SameSite=Strict`.
//!
//! A session expires after `TTL`, stops at once when its key is revoked (checked on every use),
//! and there are at most `CAPACITY` of them: a new one past the bound replaces the one nearest
//! its expiry, so memory cannot grow whoever logs in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::keys::KeyState;

/// The cookie's name.
pub const COOKIE: &str = "switchyard_dashboard";
/// How long a session lasts.
pub const TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions held at most.
pub const CAPACITY: usize = 1_000;

/// Who watches the feed.
#[derive(Debug, Clone)]
pub enum Viewer {
    /// `open` auth mode: anyone.
    Open,
    Admin,
    /// A virtual key with the `dashboard` scope.
    Key(Arc<KeyState>),
}

impl Viewer {
    /// Still allowed: a key's revocation ends its sessions and feeds.
    pub fn is_valid(&self) -> bool {
        match self {
            Viewer::Key(k) => !k.is_revoked(),
            Viewer::Open | Viewer::Admin => true,
        }
    }
}

#[derive(Debug)]
struct Session {
    viewer: Viewer,
    expires: Instant,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// A new session for `viewer`: its id (64 hex digits, 256 random bits from the system).
    pub fn open(&self, viewer: Viewer, now: Instant) -> Result<String, String> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| format!("no random bytes from the system: {e}"))?;
        let id = crate::keys::hex(&bytes);
        let mut map = self
            .map
            .lock()
            .map_err(|_| "sessions poisoned".to_owned())?;
        if map.len() >= CAPACITY {
            map.retain(|_, s| s.expires > now && s.viewer.is_valid());
        }
        if map.len() >= CAPACITY
            && let Some(soonest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(id, _)| id.clone())
        {
            map.remove(&soonest);
        }
        let expires = now + TTL;
        map.insert(id.clone(), Session { viewer, expires });
        Ok(id)
    }

    /// Who the session `id` is, if it is live (an expired or revoked one is forgotten).
    pub fn check(&self, id: &str, now: Instant) -> Option<Viewer> {
        let mut map = self.map.lock().ok()?;
        let live = map
            .get(id)
            .map(|s| s.expires > now && s.viewer.is_valid())?;
        if !live {
            map.remove(id);
            return None;
        }
        map.get(id).map(|s| s.viewer.clone())
    }

    pub fn len(&self) -> usize {
        self.map.lock().map_or(0, |m| m.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The session id in a request's `Cookie` headers, if any.
pub fn from_cookies(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

/// The `Set-Cookie` value for session `id`.
pub fn set_cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        TTL.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AuthMode;
    use crate::keys::{Keys, NewKey};

    #[tokio::test(start_paused = true)]
    async fn sessions_expire_end_with_their_key_and_stay_bounded() {
        let s = Sessions::default();
        let now = Instant::now();
        let admin = s.open(Viewer::Admin, now).unwrap();
        assert_eq!(admin.len(), 64);
        assert!(matches!(s.check(&admin, now), Some(Viewer::Admin)));
        assert!(s.check("not-a-session", now).is_none());
        assert!(s.check(&admin, now + TTL).is_none(), "expired");
        assert!(
            s.check(&admin, now).is_none(),
            "an expired session is forgotten"
        );

        let keys = Keys::in_memory(AuthMode::Keys, None);
        let (k, _) = keys.create(NewKey::default_named("viewer")).await.unwrap();
        let id = s.open(Viewer::Key(k.clone()), now).unwrap();
        assert!(s.check(&id, now).is_some());
        assert!(keys.revoke(k.id()).await.unwrap());
        assert!(s.check(&id, now).is_none(), "revoked at once");

        for i in 0..(CAPACITY + 50) {
            let at = now + Duration::from_secs(i as u64);
            s.open(Viewer::Admin, at).unwrap();
        }
        assert_eq!(s.len(), CAPACITY);
    }

    #[test]
    fn the_cookie_is_found_among_others_and_never_empty() {
        let mut h = axum::http::HeaderMap::new();
        h.append(
            "cookie",
            "a=1; switchyard_dashboard=abc ; b=2".parse().unwrap(),
        );
        assert_eq!(from_cookies(&h), Some("abc"));
        let mut empty = axum::http::HeaderMap::new();
        empty.append("cookie", "switchyard_dashboard=".parse().unwrap());
        assert_eq!(from_cookies(&empty), None);
        assert!(set_cookie("x").contains("HttpOnly; SameSite=Strict; Path=/"));
    }
}
