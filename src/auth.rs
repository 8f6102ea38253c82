//! Credentials, outside the aggregates: argon2id password hashing, random tokens stored only
//! as SHA-256 hashes, password rules, and the sign-in rate limiter (per account and per IP;
//! through Redis when `REDIS_URL` is set, in-process otherwise).
//!
//! Nothing here knows HTTP; `crate::http::accounts` turns the outcomes into responses.

use std::num::NonZeroU32;
use std::sync::OnceLock;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Prefix of organization API key secrets.
pub const API_KEY_PREFIX: &str = "cfx_";

/// Minimum password length.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// How long a password reset token is valid.
pub const RESET_TOKEN_TTL: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// 32 random bytes from the OS, base64url without padding (43 characters).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A new API key secret: `cfx_` + 32 random bytes.
pub fn new_api_key_secret() -> String {
    format!("{API_KEY_PREFIX}{}", random_token())
}

/// What is stored for a token: the SHA-256 of its text, hex.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// argon2id (the crate's defaults: 19 MiB, 2 passes) with a random salt, in PHC format.
/// Runs on the blocking pool: it is deliberately slow.
pub async fn hash_password(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("password hashing failed: {e}"))
    })
    .await?
}

/// Verifies `password` against a PHC hash; `None` (no such account) verifies against a fixed
/// dummy hash so an unknown email costs the same time as a wrong password.
pub async fn verify_password(password: String, hash: Option<String>) -> bool {
    let known = hash.is_some();
    let result = tokio::task::spawn_blocking(move || {
        let hash = hash.unwrap_or_else(|| dummy_hash().to_string());
        let Ok(parsed) = PasswordHash::new(&hash) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
    .await
    .unwrap_or(false);
    known && result
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(random_token().as_bytes(), &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// The first password rule `password` breaks, named for the client (422).
pub fn password_problem(password: &str, email: &str) -> Option<String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Some(format!(
            "password_too_short: the password must have at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    if password.chars().count() > 256 {
        return Some("password_too_long: the password may have at most 256 characters".into());
    }
    let classes = [
        password.chars().any(|c| c.is_lowercase()),
        password.chars().any(|c| c.is_uppercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_alphanumeric()),
    ];
    if classes.iter().filter(|c| **c).count() < 2 {
        return Some(
            "password_too_simple: the password must mix at least two kinds of characters \
             (lowercase, uppercase, digits, symbols)"
                .into(),
        );
    }
    let lowered = password.trim().to_lowercase();
    let email = email.trim().to_lowercase();
    let local = email.split('@').next().unwrap_or_default();
    if lowered == email || (!local.is_empty() && lowered == local) {
        return Some("password_equals_email: the password must not be the email address".into());
    }
    None
}

/// The rule name of a [`password_problem`] message.
pub fn rule_of(problem: &str) -> &str {
    problem.split(':').next().unwrap_or("weak_password")
}

/// Sign-in attempts allowed per account and per client IP.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub account_burst: u32,
    pub account_period: Duration,
    pub ip_burst: u32,
    pub ip_period: Duration,
}

impl Default for Limits {
    /// Per account: 5 attempts, then 1 a minute. Per IP: 30, then 1 every 10 s.
    fn default() -> Self {
        Self {
            account_burst: 5,
            account_period: Duration::from_secs(60),
            ip_burst: 30,
            ip_period: Duration::from_secs(10),
        }
    }
}

/// Rate limiter for sign-in attempts.
pub struct SignInLimiter {
    limits: Limits,
    per_account: DefaultKeyedRateLimiter<String>,
    per_ip: DefaultKeyedRateLimiter<String>,
    redis: Option<redis::Client>,
    connection: tokio::sync::OnceCell<redis::aio::MultiplexedConnection>,
}

fn quota(period: Duration, burst: u32) -> Quota {
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst)
}

impl SignInLimiter {
    pub fn new(redis_url: Option<&str>, limits: Limits) -> Self {
        let redis = redis_url.and_then(|url| match redis::Client::open(url) {
            Ok(client) => Some(client),
            Err(err) => {
                tracing::warn!(error = %err, "REDIS_URL is not usable; rate limits stay in-process");
                None
            }
        });
        Self {
            limits,
            per_account: RateLimiter::keyed(quota(limits.account_period, limits.account_burst)),
            per_ip: RateLimiter::keyed(quota(limits.ip_period, limits.ip_burst)),
            redis,
            connection: tokio::sync::OnceCell::new(),
        }
    }

    pub fn uses_redis(&self) -> bool {
        self.redis.is_some()
    }

    /// Takes one attempt for `account` and one for `ip`; `Err(retry_after)` when either is
    /// exhausted. Redis errors fall back to the in-process limiter (logged).
    pub async fn check(&self, account: &str, ip: &str) -> Result<(), Duration> {
        if self.redis.is_some() {
            match self.check_redis(account, ip).await {
                Ok(outcome) => return outcome,
                Err(err) => tracing::warn!(error = %err, "redis rate limit failed; in-process"),
            }
        }
        let clock = DefaultClock::default();
        let account_outcome = self.per_account.check_key(&account.to_string());
        let ip_outcome = self.per_ip.check_key(&ip.to_string());
        let wait = [account_outcome.err(), ip_outcome.err()]
            .into_iter()
            .flatten()
            .map(|not_until| not_until.wait_time_from(clock.now()))
            .max();
        match wait {
            Some(wait) => Err(wait.max(Duration::from_secs(1))),
            None => Ok(()),
        }
    }

    /// Fixed windows in Redis: `burst × period` long, at most `burst` attempts each.
    async fn check_redis(
        &self,
        account: &str,
        ip: &str,
    ) -> redis::RedisResult<Result<(), Duration>> {
        let Some(client) = &self.redis else {
            return Ok(Ok(()));
        };
        let mut conn = self
            .connection
            .get_or_try_init(|| client.get_multiplexed_async_connection())
            .await?
            .clone();
        let l = self.limits;
        let windows = [
            (
                format!("callflex:signin:account:{}", token_hash(account)),
                l.account_burst,
                l.account_period * l.account_burst,
            ),
            (
                format!("callflex:signin:ip:{ip}"),
                l.ip_burst,
                l.ip_period * l.ip_burst,
            ),
        ];
        let mut retry = None;
        for (key, max, window) in windows {
            let (count, ttl): (i64, i64) = redis::pipe()
                .atomic()
                .cmd("SET")
                .arg(&key)
                .arg(0)
                .arg("EX")
                .arg(window.as_secs().max(1))
                .arg("NX")
                .ignore()
                .cmd("INCR")
                .arg(&key)
                .cmd("TTL")
                .arg(&key)
                .query_async(&mut conn)
                .await?;
            if count > i64::from(max) {
                let wait = Duration::from_secs(ttl.max(1) as u64);
                retry = Some(retry.map_or(wait, |r: Duration| r.max(wait)));
            }
        }
        Ok(match retry {
            Some(wait) => Err(wait),
            None => Ok(()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_url_safe_and_stored_as_sha256_hex() {
        let a = random_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token());
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(token_hash("abc").len(), 64);
        assert!(new_api_key_secret().starts_with("cfx_"));
    }

    #[test]
    fn password_rules_are_named() {
        let rule = |p: &str| password_problem(p, "ann@acme.test").map(|m| rule_of(&m).to_string());
        assert_eq!(rule("short1A").as_deref(), Some("password_too_short"));
        assert_eq!(rule("alllowercase").as_deref(), Some("password_too_simple"));
        assert_eq!(rule("1234567890").as_deref(), Some("password_too_simple"));
        assert_eq!(
            rule("Ann@ACME.test").as_deref(),
            Some("password_equals_email")
        );
        assert_eq!(rule("correct horse 7"), None);
    }

    #[tokio::test]
    async fn a_password_verifies_only_against_its_own_hash() {
        let hash = hash_password("Tr0ub4dor&3x".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("Tr0ub4dor&3x".into(), Some(hash.clone())).await);
        assert!(!verify_password("tr0ub4dor&3x".into(), Some(hash)).await);
        assert!(!verify_password("anything".into(), None).await);
    }

    #[tokio::test]
    async fn the_in_process_limiter_refuses_after_the_burst_with_a_retry_after() {
        let limits = Limits {
            account_burst: 2,
            ..Limits::default()
        };
        let limiter = SignInLimiter::new(None, limits);
        assert!(limiter.check("a", "1.1.1.1").await.is_ok());
        assert!(limiter.check("a", "1.1.1.1").await.is_ok());
        let wait = limiter.check("a", "1.1.1.1").await.unwrap_err();
        assert!(wait >= Duration::from_secs(1));
        assert!(limiter.check("b", "1.1.1.1").await.is_ok(), "other account");
    }
}
