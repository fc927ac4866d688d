//! Where a webhook may point: [`target`] accepts an `http` or `https` URL that names a host
//! and carries no credentials; [`public_addresses`] resolves the host and refuses it when any
//! address is loopback, private, link-local, shared (CGNAT), multicast, unspecified, reserved
//! or documentation space, unless the operator allows private targets. Checked at creation and
//! again before each delivery, so a name re-pointed at an internal address is caught. The
//! request itself is the outbound transport's (`docket_ports::WebhookTransport`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::Url;

/// Why a webhook target is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("'{0}' is not a URL")]
    Malformed(String),
    #[error("a webhook URL must use http or https")]
    Scheme,
    #[error("a webhook URL must name a host")]
    NoHost,
    #[error("a webhook URL must not carry a user name or password")]
    Credentials,
    #[error("a webhook URL is at most 2048 characters")]
    TooLong,
    #[error("the host '{0}' does not resolve")]
    Unresolved(String),
    #[error("the host '{host}' resolves to {addr}, which is not a public address")]
    NotPublic { host: String, addr: IpAddr },
}

/// Checks the shape of a webhook URL (no network access).
pub fn target(raw: &str) -> Result<Url, TargetError> {
    let raw = raw.trim();
    if raw.len() > 2048 {
        return Err(TargetError::TooLong);
    }
    let url = Url::parse(raw).map_err(|_| TargetError::Malformed(raw.to_owned()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(TargetError::Scheme);
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(TargetError::NoHost);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::Credentials);
    }
    Ok(url)
}

/// The addresses `url`'s host resolves to, refused when any is not public (unless
/// `allow_private`).
pub async fn public_addresses(
    url: &Url,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, TargetError> {
    let host = url.host_str().ok_or(TargetError::NoHost)?;
    let port = url.port_or_known_default().unwrap_or(443);
    // An IPv6 literal comes bracketed in the URL.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|_| TargetError::Unresolved(host.to_owned()))?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(TargetError::Unresolved(host.to_owned()));
    }
    if !allow_private && let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
        return Err(TargetError::NotPublic { host: host.to_owned(), addr: bad.ip() });
    }
    Ok(addrs)
}

/// Whether `ip` is an ordinary public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64: an IPv4 address in disguise
        || s[..6] == [0; 6]) // IPv4-compatible and other ::/96 forms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_http_urls_with_a_host_and_no_credentials() {
        assert!(target("https://hooks.example.com/docket").is_ok());
        assert!(target(" http://hooks.example.com:8080/x?y=1 ").is_ok());
        assert_eq!(target("ftp://example.com/"), Err(TargetError::Scheme));
        assert_eq!(target("https://user:pw@example.com/"), Err(TargetError::Credentials));
        assert!(matches!(target("not a url"), Err(TargetError::Malformed(_))));
        assert_eq!(
            target(&format!("https://e.com/{}", "a".repeat(2100))),
            Err(TargetError::TooLong)
        );
    }

    #[test]
    fn only_public_unicast_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public(private.parse().expect(private)), "{private} is not public");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(public.parse().expect(public)), "{public} is public");
        }
    }

    #[tokio::test]
    async fn private_targets_are_refused_unless_allowed() {
        let local = target("http://127.0.0.1:9/hook").expect("url");
        assert!(matches!(
            public_addresses(&local, false).await,
            Err(TargetError::NotPublic { .. })
        ));
        assert_eq!(public_addresses(&local, true).await.expect("allowed").len(), 1);
        let v6 = target("http://[::1]:9/hook").expect("url");
        assert!(matches!(public_addresses(&v6, false).await, Err(TargetError::NotPublic { .. })));
        let named = target("http://localhost:9/hook").expect("url");
        assert!(matches!(
            public_addresses(&named, false).await,
            Err(TargetError::NotPublic { .. } | TargetError::Unresolved(_))
        ));
        let public = target("https://93.184.216.34/hook").expect("url");
        let addrs = public_addresses(&public, false).await.expect("public");
        assert_eq!(addrs, vec!["93.184.216.34:443".parse().expect("addr")]);
    }
}
