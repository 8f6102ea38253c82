//! Configuration from environment variables, with safe defaults for the embedded mode.

use std::net::SocketAddr;

/// A secret that never shows up in `Debug` output or logs.
#[derive(Clone, Default, PartialEq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Credentials and base URL of one outbound provider. Without credentials the provider runs in
/// sandbox mode: requests are recorded, not sent.
#[derive(Debug, Clone, Default)]
pub struct ProviderConfig {
    pub base_url: String,
    pub api_key: Option<Secret>,
}

impl ProviderConfig {
    pub fn sandbox(&self) -> bool {
        self.api_key.is_none()
    }
}

/// An OAuth integration's client (`GOOGLE_CLIENT_ID`, `GOOGLE_CLIENT_SECRET`,
/// `GOOGLE_TOKEN_URL`; the same with `HUBSPOT_`). Without an id and a secret it runs in
/// sandbox mode: the code exchange is recorded, not sent, and answered with fake tokens.
#[derive(Debug, Clone, Default)]
pub struct OAuthConfig {
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    /// Where authorization codes are exchanged for tokens.
    pub token_url: String,
    /// The provider's API, for the harmless read `POST /integrations/{provider}/test` makes.
    pub api_url: String,
}

impl OAuthConfig {
    pub fn sandbox(&self) -> bool {
        self.client_id.is_none() || self.client_secret.is_none()
    }

    /// The token endpoint as an outbound provider (sandbox unless both credentials are set).
    pub fn provider(&self) -> ProviderConfig {
        ProviderConfig {
            base_url: self.token_url.clone(),
            api_key: self.client_secret.clone().filter(|_| !self.sandbox()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// `sqlite://path` (default `sqlite://data/callflex.db`) or `postgres://...`.
    pub database_url: String,
    pub database_max_connections: u32,
    pub listen: SocketAddr,
    /// The operators' listener (`/health` in detail, `/metrics`): `CALLFLEX_OPERATOR_ADDR`,
    /// by default loopback at PORT + 1 (an ephemeral port when PORT is 0); `off` for none.
    pub operator_listen: Option<SocketAddr>,
    /// The URL providers reach us at (Twilio signs it; VAPI assistants post to it).
    pub public_url: String,
    pub log_json: bool,
    /// Largest accepted webhook body; larger ones get 413.
    pub max_body_bytes: usize,
    /// Largest body of an `/api/v1` request (other than the auth routes); 413 beyond.
    pub api_max_body_bytes: usize,
    /// Largest body of an `/api/v1/auth/...` request (reachable without signing in).
    pub auth_max_body_bytes: usize,
    /// What customer-chosen URLs (webhook integrations) may point at.
    pub egress: crate::providers::egress::EgressPolicy,
    /// The keys that seal secrets in events (`CALLFLEX_SECRET_KEYS`). `None`: read (or
    /// create) `secret_key_file` at start-up.
    pub keyring: Option<crate::secrets::Keyring>,
    /// `CALLFLEX_SECRET_KEY_FILE`; by default `secret-keys` beside the SQLite file, or
    /// `data/secret-keys` with PostgreSQL.
    pub secret_key_file: std::path::PathBuf,
    /// Fallback VAPI webhook secret when an organization has none of its own.
    pub vapi_webhook_secret: Option<Secret>,
    pub twilio_auth_token: Option<Secret>,
    pub stripe_webhook_secret: Option<Secret>,
    /// Tolerance for signed timestamps (Stripe, VAPI HMAC).
    pub signature_tolerance_secs: i64,
    pub vapi: ProviderConfig,
    pub twilio: ProviderConfig,
    pub twilio_account_sid: Option<String>,
    /// Where Twilio sends a bought number's calls (`VAPI_PHONE_NUMBER_URL`; VAPI's inbound
    /// Twilio endpoint by default). A bare host gets `https://`.
    pub vapi_phone_number_url: String,
    /// OAuth clients of the `google_calendar` and `hubspot` integrations.
    pub google: OAuthConfig,
    pub hubspot: OAuthConfig,
    pub stripe: ProviderConfig,
    pub resend: ProviderConfig,
    pub llm: ProviderConfig,
    /// `REDIS_URL`: sign-in rate limits are shared through Redis when set (in-process
    /// otherwise).
    pub redis_url: Option<String>,
    /// `SESSION_TTL_HOURS`: how long a session token stays valid (default 14 days).
    pub session_ttl_hours: i64,
    /// `PROVISIONING_TIMEOUT_SECS`: a phone number purchase or an assistant sync still "in
    /// progress" after this long is taken to have crashed, and a retry may take it over
    /// (default 120).
    pub provisioning_timeout_secs: i64,
    /// `CALLFLEX_TRUSTED_PROXIES`: comma-separated IPs or CIDRs of reverse proxies whose
    /// `X-Forwarded-For` is believed (default none: the peer address is the client).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `RECORDINGS_DIR`: where call recordings are copied (default `recordings` beside the
    /// SQLite file, `data/recordings` with PostgreSQL).
    pub recordings_dir: std::path::PathBuf,
    /// `RECORDINGS_URL`: an object store URL instead of the directory (`s3://bucket/prefix`
    /// with `--features s3`, `file:///abs/path`).
    pub recordings_url: Option<String>,
    /// `LLM_MODEL`: the chat model post-call processing asks (default `gpt-4o-mini`).
    pub llm_model: String,
    /// `PROCESS_FIRST_BACKOFF_MS`: the first pause before a failed process step is retried;
    /// it doubles per attempt (default 1,000 ms).
    pub process_first_backoff_ms: i64,
    /// `CALLFLEX_PROCESSES=off` runs no process in this instance (its starters and workers):
    /// for a read-only replica, or a test that wants a quiet log (default on).
    pub processes_enabled: bool,
    /// `PROCESS_CONCURRENCY`: how many process instances one worker advances at once
    /// (default 32).
    pub process_concurrency: usize,
    /// `BACKGROUND_SHARE` and `FOREGROUND_BUSY_REQUESTS`: while the request path averages
    /// at least that many requests in flight, the processes take turns and keep to that
    /// share of the time (defaults 0.1 and 4; a share of 1 never yields). See
    /// `crate::foreground`.
    pub yielding: crate::foreground::Yielding,
    /// `WEBHOOK_DISABLE_AFTER`: an outbound webhook endpoint whose deliveries are
    /// dead-lettered this many times in a row is disabled and its admins are emailed
    /// (default 5).
    pub webhook_disable_after: i64,
    /// `WEBHOOK_TIMEOUT_MS`: how long a receiver may take to answer one delivery
    /// (default 30,000 ms).
    pub webhook_timeout_ms: u64,
    /// The plan catalogue (`CALLFLEX_PLANS_FILE` or `CALLFLEX_PLANS`; the sandbox catalogue
    /// by default).
    pub plans: crate::plans::Plans,
    /// `CALLFLEX_CLOCK_OFFSET_MS`: start the processes' clock this far ahead (drills and tests
    /// of schedules missed during downtime; never in production).
    pub clock_offset_ms: i64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: "sqlite://data/callflex.db".into(),
            database_max_connections: 20,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            operator_listen: None,
            public_url: "http://localhost:8080".into(),
            log_json: false,
            // A long call's end-of-call report (artifact.messages, messagesOpenAIFormatted and the
            // call's assistant) can pass 1 MiB, and VAPI does not retry a 413.
            max_body_bytes: 4 * 1024 * 1024,
            api_max_body_bytes: 1024 * 1024,
            auth_max_body_bytes: 64 * 1024,
            egress: Default::default(),
            // Built in code (tests): a key that lives as long as the process.
            keyring: Some(crate::secrets::Keyring::ephemeral()),
            secret_key_file: "data/secret-keys".into(),
            vapi_webhook_secret: None,
            twilio_auth_token: None,
            stripe_webhook_secret: None,
            signature_tolerance_secs: 300,
            vapi: ProviderConfig {
                base_url: "https://api.vapi.ai".into(),
                api_key: None,
            },
            twilio: ProviderConfig {
                base_url: "https://api.twilio.com".into(),
                api_key: None,
            },
            twilio_account_sid: None,
            vapi_phone_number_url: "https://api.vapi.ai/twilio/inbound_call".into(),
            google: OAuthConfig {
                token_url: "https://oauth2.googleapis.com/token".into(),
                api_url: "https://www.googleapis.com".into(),
                ..OAuthConfig::default()
            },
            hubspot: OAuthConfig {
                token_url: "https://api.hubapi.com/oauth/v1/token".into(),
                api_url: "https://api.hubapi.com".into(),
                ..OAuthConfig::default()
            },
            stripe: ProviderConfig {
                base_url: "https://api.stripe.com".into(),
                api_key: None,
            },
            resend: ProviderConfig {
                base_url: "https://api.resend.com".into(),
                api_key: None,
            },
            llm: ProviderConfig {
                base_url: "https://api.openai.com".into(),
                api_key: None,
            },
            redis_url: None,
            session_ttl_hours: 24 * 14,
            provisioning_timeout_secs: 120,
            trusted_proxies: Vec::new(),
            recordings_dir: "data/recordings".into(),
            recordings_url: None,
            llm_model: "gpt-4o-mini".into(),
            process_first_backoff_ms: 1_000,
            process_concurrency: 32,
            yielding: crate::foreground::Yielding::default(),
            webhook_disable_after: 5,
            webhook_timeout_ms: 30_000,
            plans: crate::plans::Plans::default(),
            clock_offset_ms: 0,
            processes_enabled: true,
        }
    }
}

/// `name` beside the SQLite file, or under `data/` with PostgreSQL.
fn beside_the_data(database_url: &str, name: &str) -> std::path::PathBuf {
    match database_url.strip_prefix("sqlite://") {
        Some(db) => std::path::Path::new(db.split('?').next().unwrap_or(db))
            .parent()
            .map(|dir| dir.join(name))
            .unwrap_or_else(|| name.into()),
        None => std::path::Path::new("data").join(name),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Reads the environment (see README "Configuration"). When `CALLFLEX_CONFIG` names a
    /// file of `KEY=value` lines, its values apply where the environment sets none.
    pub fn from_env() -> Result<Self, ConfigError> {
        let file = match std::env::var("CALLFLEX_CONFIG") {
            Ok(path) => std::fs::read_to_string(&path)
                .map_err(|e| ConfigError(format!("CALLFLEX_CONFIG={path}: {e}")))?,
            Err(_) => String::new(),
        };
        let from_file = parse_env_file(&file);
        Self::from_lookup(|key| {
            std::env::var(key)
                .ok()
                .or_else(|| from_file.get(key).cloned())
                .filter(|v| !v.is_empty())
        })
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut c = Config::default();
        let secret = |key: &str| get(key).map(Secret::new);
        if let Some(url) = get("DATABASE_URL") {
            c.database_url = url;
        }
        c.keyring = match get("CALLFLEX_SECRET_KEYS") {
            Some(list) => Some(
                crate::secrets::Keyring::parse(&list)
                    .map_err(|e| ConfigError(format!("CALLFLEX_SECRET_KEYS: {e}")))?,
            ),
            None => None,
        };
        c.secret_key_file = get("CALLFLEX_SECRET_KEY_FILE")
            .map(Into::into)
            .unwrap_or_else(|| beside_the_data(&c.database_url, "secret-keys"));
        c.recordings_dir = get("RECORDINGS_DIR")
            .map(Into::into)
            .unwrap_or_else(|| beside_the_data(&c.database_url, "recordings"));
        c.recordings_url = get("RECORDINGS_URL");
        if let Some(n) = get("DATABASE_MAX_CONNECTIONS") {
            c.database_max_connections = n.parse().map_err(|_| {
                ConfigError(format!("DATABASE_MAX_CONNECTIONS={n} is not a number"))
            })?;
        }
        let host = get("HOST").unwrap_or_else(|| "127.0.0.1".into());
        let port = get("PORT").unwrap_or_else(|| "8080".into());
        c.listen = format!("{host}:{port}")
            .parse()
            .map_err(|_| ConfigError(format!("HOST/PORT {host}:{port} is not an address")))?;
        c.operator_listen = match get("CALLFLEX_OPERATOR_ADDR") {
            Some(addr) if addr.eq_ignore_ascii_case("off") => None,
            Some(addr) => Some(addr.parse().map_err(|_| {
                ConfigError(format!(
                    "CALLFLEX_OPERATOR_ADDR={addr} is not an address (or off)"
                ))
            })?),
            None => Some(SocketAddr::from((
                [127, 0, 0, 1],
                match c.listen.port() {
                    0 => 0,
                    port => port.checked_add(1).ok_or_else(|| {
                        ConfigError(
                            "PORT 65535 leaves no PORT + 1 for the operator port; set \
                                     CALLFLEX_OPERATOR_ADDR"
                                .into(),
                        )
                    })?,
                },
            ))),
        };
        c.public_url = get("PUBLIC_URL")
            .unwrap_or_else(|| format!("http://localhost:{port}"))
            .trim_end_matches('/')
            .to_string();
        c.log_json = get("LOG_FORMAT").is_some_and(|f| f.eq_ignore_ascii_case("json"));
        if let Some(n) = get("MAX_BODY_BYTES") {
            c.max_body_bytes = n
                .parse()
                .map_err(|_| ConfigError(format!("MAX_BODY_BYTES={n} is not a number")))?;
        }
        for (key, field) in [
            ("API_MAX_BODY_BYTES", &mut c.api_max_body_bytes),
            ("AUTH_MAX_BODY_BYTES", &mut c.auth_max_body_bytes),
        ] {
            if let Some(n) = get(key) {
                *field = n
                    .parse()
                    .map_err(|_| ConfigError(format!("{key}={n} is not a number")))?;
            }
        }
        let flag = |key: &str| {
            get(key).is_some_and(|v| {
                matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes")
            })
        };
        c.egress.allow_http = flag("CALLFLEX_WEBHOOK_ALLOW_HTTP");
        c.egress.allow_private = flag("CALLFLEX_WEBHOOK_ALLOW_PRIVATE");
        if let Some(pairs) = get("CALLFLEX_RESOLVE") {
            for pair in pairs.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let parsed = pair.split_once('=').and_then(|(host, ip)| {
                    Some((host.trim().to_ascii_lowercase(), ip.trim().parse().ok()?))
                });
                let (host, ip) = parsed.ok_or_else(|| {
                    ConfigError(format!("CALLFLEX_RESOLVE entry `{pair}` is not host=ip"))
                })?;
                c.egress.resolve.insert(host, ip);
            }
        }
        c.vapi_webhook_secret = secret("VAPI_WEBHOOK_SECRET");
        c.twilio_auth_token = secret("TWILIO_AUTH_TOKEN");
        c.stripe_webhook_secret = secret("STRIPE_WEBHOOK_SECRET");
        let provider = |base_key: &str, key_key: &str, default: &ProviderConfig| ProviderConfig {
            base_url: get(base_key)
                .unwrap_or_else(|| default.base_url.clone())
                .trim_end_matches('/')
                .to_string(),
            api_key: secret(key_key),
        };
        c.vapi = provider("VAPI_BASE_URL", "VAPI_API_KEY", &c.vapi);
        c.twilio = provider("TWILIO_BASE_URL", "TWILIO_AUTH_TOKEN", &c.twilio);
        c.twilio_account_sid = get("TWILIO_ACCOUNT_SID");
        if let Some(url) = get("VAPI_PHONE_NUMBER_URL") {
            let url = url.trim_end_matches('/');
            c.vapi_phone_number_url = if url.starts_with("http://") || url.starts_with("https://") {
                url.to_string()
            } else {
                format!("https://{url}")
            };
        }
        for (prefix, oauth) in [("GOOGLE", &mut c.google), ("HUBSPOT", &mut c.hubspot)] {
            oauth.client_id = get(&format!("{prefix}_CLIENT_ID"));
            oauth.client_secret = secret(&format!("{prefix}_CLIENT_SECRET"));
            if let Some(url) = get(&format!("{prefix}_TOKEN_URL")) {
                oauth.token_url = url;
            }
            if let Some(url) = get(&format!("{prefix}_API_URL")) {
                oauth.api_url = url.trim_end_matches('/').to_string();
            }
        }
        c.stripe = provider("STRIPE_BASE_URL", "STRIPE_SECRET_KEY", &c.stripe);
        c.resend = provider("RESEND_BASE_URL", "RESEND_API_KEY", &c.resend);
        c.llm = provider("LLM_BASE_URL", "LLM_API_KEY", &c.llm);
        c.redis_url = get("REDIS_URL");
        if let Some(n) = get("SESSION_TTL_HOURS") {
            c.session_ttl_hours = n.parse().ok().filter(|h: &i64| *h > 0).ok_or_else(|| {
                ConfigError(format!("SESSION_TTL_HOURS={n} is not a positive number"))
            })?;
        }
        if let Some(n) = get("PROVISIONING_TIMEOUT_SECS") {
            c.provisioning_timeout_secs =
                n.parse().ok().filter(|s: &i64| *s >= 0).ok_or_else(|| {
                    ConfigError(format!(
                        "PROVISIONING_TIMEOUT_SECS={n} is not a number of seconds"
                    ))
                })?;
        }
        if let Some(model) = get("LLM_MODEL") {
            c.llm_model = model;
        }
        if let Some(n) = get("PROCESS_FIRST_BACKOFF_MS") {
            c.process_first_backoff_ms =
                n.parse().ok().filter(|s: &i64| *s >= 0).ok_or_else(|| {
                    ConfigError(format!("PROCESS_FIRST_BACKOFF_MS={n} is not milliseconds"))
                })?;
        }
        if let Some(flag) = get("CALLFLEX_PROCESSES") {
            c.processes_enabled = match flag.to_ascii_lowercase().as_str() {
                "on" | "1" | "true" => true,
                "off" | "0" | "false" => false,
                _ => {
                    return Err(ConfigError(format!(
                        "CALLFLEX_PROCESSES={flag} is not on or off"
                    )))
                }
            };
        }
        if let Some(n) = get("PROCESS_CONCURRENCY") {
            c.process_concurrency = n.parse().ok().filter(|s: &usize| *s > 0).ok_or_else(|| {
                ConfigError(format!("PROCESS_CONCURRENCY={n} is not a positive number"))
            })?;
        }
        if let Some(n) = get("BACKGROUND_SHARE") {
            c.yielding.share = n
                .parse()
                .ok()
                .filter(|s: &f64| *s > 0.0 && *s <= 1.0)
                .ok_or_else(|| {
                    ConfigError(format!(
                        "BACKGROUND_SHARE={n} is not a fraction above 0 and at most 1"
                    ))
                })?;
        }
        if let Some(n) = get("FOREGROUND_BUSY_REQUESTS") {
            c.yielding.busy_requests = n
                .parse()
                .ok()
                .filter(|s: &f64| *s > 0.0 && s.is_finite())
                .ok_or_else(|| {
                ConfigError(format!(
                    "FOREGROUND_BUSY_REQUESTS={n} is not a positive number"
                ))
            })?;
        }
        if let Some(n) = get("WEBHOOK_DISABLE_AFTER") {
            c.webhook_disable_after = n.parse().ok().filter(|s: &i64| *s > 0).ok_or_else(|| {
                ConfigError(format!(
                    "WEBHOOK_DISABLE_AFTER={n} is not a positive number"
                ))
            })?;
        }
        if let Some(n) = get("WEBHOOK_TIMEOUT_MS") {
            c.webhook_timeout_ms = n.parse().ok().filter(|s: &u64| *s > 0).ok_or_else(|| {
                ConfigError(format!("WEBHOOK_TIMEOUT_MS={n} is not milliseconds"))
            })?;
        }
        let plans = match (get("CALLFLEX_PLANS_FILE"), get("CALLFLEX_PLANS")) {
            (Some(path), _) => Some(
                std::fs::read_to_string(&path)
                    .map_err(|e| ConfigError(format!("CALLFLEX_PLANS_FILE={path}: {e}")))?,
            ),
            (None, inline) => inline,
        };
        if let Some(json) = plans {
            c.plans = crate::plans::Plans::parse(&json)
                .map_err(|e| ConfigError(format!("the plan catalogue: {e}")))?;
        }
        if let Some(n) = get("CALLFLEX_CLOCK_OFFSET_MS") {
            c.clock_offset_ms = n.parse().map_err(|_| {
                ConfigError(format!("CALLFLEX_CLOCK_OFFSET_MS={n} is not milliseconds"))
            })?;
        }
        if let Some(list) = get("CALLFLEX_TRUSTED_PROXIES") {
            c.trusted_proxies = parse_networks(&list).map_err(|bad| {
                ConfigError(format!(
                    "CALLFLEX_TRUSTED_PROXIES: `{bad}` is not an IP address or CIDR"
                ))
            })?;
        }
        Ok(c)
    }

    /// True when `ip` is one of the trusted reverse proxies.
    pub fn is_trusted_proxy(&self, ip: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }
}

/// `10.0.0.0/8, 127.0.0.1, ::1`: a bare address is a single-host network. Err names the
/// first entry that is neither.
pub fn parse_networks(list: &str) -> Result<Vec<ipnet::IpNet>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| entry.to_string())
        })
        .collect()
}

/// Parses `KEY=value` lines; `#` starts a comment; values may be quoted.
pub fn parse_env_file(text: &str) -> std::collections::HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            (
                k.trim().trim_start_matches("export ").to_string(),
                v.to_string(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_config_file_holds_key_value_lines() {
        let parsed =
            super::parse_env_file("# comment\nPORT=9000\nexport PUBLIC_URL=\"https://x\"\n");
        assert_eq!(parsed.get("PORT").map(String::as_str), Some("9000"));
        assert_eq!(
            parsed.get("PUBLIC_URL").map(String::as_str),
            Some("https://x")
        );
    }

    use super::*;

    #[test]
    fn the_default_is_the_embedded_sqlite_store_with_no_keys() {
        let c = Config::from_lookup(|_| None).unwrap();
        assert_eq!(c.database_url, "sqlite://data/callflex.db");
        assert!(c.vapi.sandbox() && c.twilio.sandbox() && c.stripe.sandbox());
    }

    #[test]
    fn the_operator_port_is_loopback_at_port_plus_one_unless_moved_or_off() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            Config::from_lookup(move |k| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == k)
                    .map(|(_, v)| v.to_string())
            })
        };
        let c = env(&[("PORT", "9000")]).unwrap();
        assert_eq!(c.operator_listen, Some("127.0.0.1:9001".parse().unwrap()));
        let c = env(&[("PORT", "0")]).unwrap();
        assert_eq!(c.operator_listen, Some("127.0.0.1:0".parse().unwrap()));
        let c = env(&[("CALLFLEX_OPERATOR_ADDR", "off")]).unwrap();
        assert_eq!(c.operator_listen, None);
        let c = env(&[("CALLFLEX_OPERATOR_ADDR", "0.0.0.0:9090")]).unwrap();
        assert_eq!(c.operator_listen, Some("0.0.0.0:9090".parse().unwrap()));
        assert!(env(&[("CALLFLEX_OPERATOR_ADDR", "nine")]).is_err());
        assert!(env(&[("PORT", "65535")]).is_err());
    }

    #[test]
    fn secrets_are_not_printed() {
        let c = Config::from_lookup(|k| (k == "STRIPE_WEBHOOK_SECRET").then(|| "whsec_x".into()))
            .unwrap();
        assert!(!format!("{c:?}").contains("whsec_x"));
    }

    #[test]
    fn trusted_proxies_are_ips_or_cidrs_and_none_by_default() {
        let none = Config::from_lookup(|_| None).unwrap();
        assert!(!none.is_trusted_proxy("127.0.0.1".parse().unwrap()));
        let c = Config::from_lookup(|k| {
            (k == "CALLFLEX_TRUSTED_PROXIES").then(|| "10.0.0.0/8, 127.0.0.1 ,::1".into())
        })
        .unwrap();
        for ip in ["10.1.2.3", "127.0.0.1", "::1"] {
            assert!(c.is_trusted_proxy(ip.parse().unwrap()), "{ip}");
        }
        assert!(!c.is_trusted_proxy("11.0.0.1".parse().unwrap()));
        let err = Config::from_lookup(|k| {
            (k == "CALLFLEX_TRUSTED_PROXIES").then(|| "10.0.0.0/8, proxy.local".into())
        })
        .unwrap_err();
        assert!(err.to_string().contains("proxy.local"), "{err}");
    }

    #[test]
    fn a_bad_port_is_a_clear_error() {
        let err = Config::from_lookup(|k| (k == "PORT").then(|| "eighty".into())).unwrap_err();
        assert!(err.to_string().contains("eighty"));
    }
}
