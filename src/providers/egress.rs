//! Requests to URLs a customer chose (webhook integrations, outbound webhooks): the service
//! must not become a way into its own network. Customer URLs are https (plain http only with
//! a development setting); every address a name resolves to is checked when the connection
//! is made, so a public-looking name that resolves (or re-resolves: DNS rebinding) to a
//! loopback, private, link-local (cloud metadata), CGNAT, unique-local or IPv4-mapped
//! address is refused; IP literals in any notation the URL parser accepts (`2130706433`,
//! `0x7f.1`) are checked the same way; redirects are never followed.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// What customer URLs may point at.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    /// Plain `http://` targets (development only).
    pub allow_http: bool,
    /// Loopback and private targets (development and tests only).
    pub allow_private: bool,
    /// Fixed answers for names (`host=ip`, like curl's `--resolve`); still checked.
    pub resolve: HashMap<String, IpAddr>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EgressError {
    #[error("url must be an absolute https URL")]
    NotHttps,
    #[error("url is not a valid absolute URL")]
    Invalid,
    #[error("url must not carry credentials")]
    Credentials,
    #[error("url points at a non-public address ({0})")]
    NonPublic(IpAddr),
}

/// Whether `ip` is an address on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return is_public_v4(v4);
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
                || first == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16: cloud metadata
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible or NAT64
/// (`64:ff9b::/96`) IPv6 address.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let mapped = s[..5].iter().all(|&x| x == 0) && s[5] == 0xffff;
    let nat64 = s[0] == 0x64 && s[1] == 0xff9b && s[2..6].iter().all(|&x| x == 0);
    let compatible = s[..6].iter().all(|&x| x == 0) && !v6.is_loopback() && !v6.is_unspecified();
    (mapped || nat64 || compatible).then_some(tail)
}

impl EgressPolicy {
    /// Checks a customer URL when it is saved (and again before each request).
    pub fn check_url(&self, raw: &str) -> Result<url::Url, EgressError> {
        let url = url::Url::parse(raw.trim()).map_err(|_| EgressError::Invalid)?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            _ => return Err(EgressError::NotHttps),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(EgressError::Credentials);
        }
        match url.host() {
            None => return Err(EgressError::Invalid),
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip))?,
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip))?,
            Some(url::Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                if !self.allow_private && (name == "localhost" || name.ends_with(".localhost")) {
                    return Err(EgressError::NonPublic(IpAddr::V4(Ipv4Addr::LOCALHOST)));
                }
            }
        }
        Ok(url)
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), EgressError> {
        if self.allow_private || is_public(ip) {
            Ok(())
        } else {
            Err(EgressError::NonPublic(ip))
        }
    }

    /// An HTTP client for customer URLs: addresses checked at connect time, no redirects.
    pub fn client(&self, timeout: Duration) -> reqwest::Result<reqwest::Client> {
        reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(CheckedResolver {
                policy: self.clone(),
            }))
            .build()
    }
}

/// Resolves names and keeps only the addresses the policy allows; a name with none left
/// fails to connect. reqwest connects to exactly the addresses returned here.
struct CheckedResolver {
    policy: EgressPolicy,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
            let found: Vec<SocketAddr> = match policy.resolve.get(&host) {
                Some(ip) => vec![SocketAddr::new(*ip, 0)],
                None => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|addr| policy.check_ip(addr.ip()).is_ok())
                .collect();
            if allowed.is_empty() {
                let refused = found
                    .first()
                    .map(|a| EgressError::NonPublic(a.ip()).to_string())
                    .unwrap_or_else(|| format!("{host} did not resolve"));
                return Err(refused.into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> EgressPolicy {
        EgressPolicy::default()
    }

    #[test]
    fn non_public_addresses_in_every_notation_are_refused() {
        let http = EgressPolicy {
            allow_http: true,
            ..Default::default()
        };
        for url in [
            "http://127.0.0.1:8080/x",
            "http://localhost/x",
            "http://LOCALHOST./x",
            "http://api.localhost/x",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://[64:ff9b::7f00:1]/",
        ] {
            assert!(
                matches!(http.check_url(url), Err(EgressError::NonPublic(_))),
                "{url} was allowed"
            );
        }
        assert!(http.check_url("http://93.184.216.34/hook").is_ok());
        assert!(http.check_url("http://[2606:4700::1111]/hook").is_ok());
    }

    #[test]
    fn only_https_without_credentials_by_default() {
        assert_eq!(
            strict().check_url("http://hooks.example.com/"),
            Err(EgressError::NotHttps)
        );
        assert_eq!(
            strict().check_url("ftp://hooks.example.com/"),
            Err(EgressError::NotHttps)
        );
        assert_eq!(
            strict().check_url("https://user:pw@hooks.example.com/"),
            Err(EgressError::Credentials)
        );
        assert_eq!(strict().check_url("not a url"), Err(EgressError::Invalid));
        assert!(strict()
            .check_url("https://hooks.example.com/callflex")
            .is_ok());
    }

    #[tokio::test]
    async fn a_public_looking_name_resolving_to_loopback_is_refused_at_connect_time() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = tokio::spawn(async move {
            tokio::time::timeout(Duration::from_millis(500), listener.accept())
                .await
                .is_ok()
        });
        let policy = EgressPolicy {
            allow_http: true,
            resolve: [(
                "hooks.example.com".to_string(),
                IpAddr::V4(Ipv4Addr::LOCALHOST),
            )]
            .into(),
            ..Default::default()
        };
        let url = format!("http://hooks.example.com:{port}/x");
        assert!(
            policy.check_url(&url).is_ok(),
            "a name passes the save-time check"
        );
        let sent = policy
            .client(Duration::from_secs(2))
            .unwrap()
            .post(&url)
            .send()
            .await;
        let err = sent.expect_err("the request must not connect");
        assert!(format!("{err:?}").contains("non-public"), "{err:?}");
        assert!(
            !accepted.await.unwrap(),
            "the internal listener was reached"
        );
    }
}
