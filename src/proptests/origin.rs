//! Origins: configuration parsed by `Origin::parse`, request URIs matched by
//! `Origin::matches` after `scheme_and_authority`, as `RoutingTable::route` does.
//!
//! The loopback rule: `localhost` and loopback IP literals are loopback, `*.localhost`
//! names are not (they may resolve through DNS like any other name, which a test or an
//! attacker can point anywhere).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::Uri;
use proptest::{prelude::*, sample::select};

use super::config;
use crate::{
    origin::{is_loopback_host, scheme_and_authority, Origin},
    transport::TokenTransport,
    Credential, CredentialRegistry, Provider,
};

// ===== hosts and origins =====

/// A host as written in a URL: a DNS name in any case (`*.localhost` ones included), an
/// IPv4 literal, a bracketed IPv6 literal (some loopback, some IPv4-mapped), or
/// `localhost` in any case.
fn host() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?(\\.[a-zA-Z0-9]{1,6}){0,3}",
        1 => "[a-z0-9]{1,8}\\.(localhost|LocalHost)",
        2 => ipv4().prop_map(|ip| ip.to_string()),
        1 => (0u8..=255, 0u8..=255, 0u8..=255).prop_map(|(a, b, c)| format!("127.{a}.{b}.{c}")),
        2 => ipv6().prop_map(|ip| format!("[{ip}]")),
        1 => select(vec!["localhost", "LOCALHOST", "LocalHost"]).prop_map(str::to_owned),
    ]
    .boxed()
}

/// Any IPv4 address, often one at the edge of a special range.
fn ipv4() -> BoxedStrategy<Ipv4Addr> {
    prop_oneof![
        2 => any::<Ipv4Addr>(),
        1 => select(vec![
            [0, 0, 0, 0], [0, 0, 0, 1], [10, 0, 0, 1], [126, 255, 255, 255], [127, 0, 0, 0],
            [127, 0, 0, 1], [127, 255, 255, 255], [128, 0, 0, 0], [169, 254, 0, 1],
            [172, 16, 0, 1], [192, 168, 1, 1], [255, 255, 255, 255],
        ])
        .prop_map(Ipv4Addr::from),
    ]
    .boxed()
}

fn ipv6() -> BoxedStrategy<Ipv6Addr> {
    prop_oneof![
        3 => any::<Ipv6Addr>(),
        1 => Just(Ipv6Addr::LOCALHOST),
        1 => select(vec!["::", "::2", "fe80::1", "fc00::1", "::ffff:0:1", "64:ff9b::7f00:1", "::1:0:0:1"])
            .prop_map(|ip| ip.parse().expect("an IPv6 literal")),
        1 => ipv4().prop_map(|v4| v4.to_ipv6_mapped()),
        1 => any::<Ipv4Addr>().prop_map(|v4| v4.to_ipv6_mapped()),
        1 => any::<[u8; 3]>().prop_map(|[a, b, c]| Ipv4Addr::new(127, a, b, c).to_ipv6_mapped()),
        1 => any::<Ipv4Addr>().prop_map(|v4| v4.to_ipv6_compatible()),
    ]
    .boxed()
}

/// The new rule: `localhost`, or an IP literal that is loopback once an IPv4-mapped
/// IPv6 address is read as the IPv4 address it maps.
fn expected_loopback(host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

#[derive(Debug, Clone, PartialEq)]
struct Spelled {
    https: bool,
    host: String,
    /// As written: none, or a number.
    port: Option<u16>,
}

impl Spelled {
    fn effective_port(&self) -> u16 {
        self.port.unwrap_or(if self.https { 443 } else { 80 })
    }

    fn authority(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.clone(),
        }
    }

    fn url(&self, path: &str) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.authority())
    }

    /// Same scheme, host (ignoring ASCII case) and port.
    fn same_origin(&self, other: &Spelled) -> bool {
        self.https == other.https
            && self.host.eq_ignore_ascii_case(&other.host)
            && self.effective_port() == other.effective_port()
    }
}

fn spelled() -> BoxedStrategy<Spelled> {
    (any::<bool>(), host(), prop::option::of(any::<u16>()))
        .prop_map(|(https, host, port)| Spelled { https, host, port })
        .boxed()
}

fn path() -> BoxedStrategy<String> {
    select(vec!["", "/", "/v1/things", "/x?y=1", "/a/b?c=d&e=f"])
        .prop_map(str::to_owned)
        .boxed()
}

/// Another spelling of a request target: near misses of `origin` (one part changed) as
/// often as unrelated ones, and the same origin written differently.
fn request_for(origin: Spelled) -> BoxedStrategy<Spelled> {
    let o = origin.clone();
    prop_oneof![
        // The same origin: the port written out or left implicit, the host's case changed.
        Just(Spelled {
            port: Some(origin.effective_port()),
            ..origin.clone()
        }),
        Just(Spelled {
            host: origin.host.to_ascii_uppercase(),
            ..origin.clone()
        }),
        Just(Spelled {
            port: (origin.port != Some(origin.effective_port())).then_some(origin.effective_port()),
            ..origin.clone()
        }),
        // The other scheme, same host and port as written.
        Just(Spelled {
            https: !origin.https,
            ..origin.clone()
        }),
        // Another port.
        any::<u16>().prop_map({
            let o = o.clone();
            move |port| Spelled {
                port: Some(port),
                ..o.clone()
            }
        }),
        // A host that differs by a character, a label, a dot or a user part.
        select(vec!["x", "-", ".", "0"]).prop_map({
            let o = o.clone();
            move |c| Spelled {
                host: format!("{}{c}", o.host),
                ..o.clone()
            }
        }),
        select(vec!["x", "a.", "evil."]).prop_map({
            let o = o.clone();
            move |c| Spelled {
                host: format!("{c}{}", o.host),
                ..o.clone()
            }
        }),
        Just(Spelled {
            host: format!("user@{}", origin.host),
            ..origin.clone()
        }),
        // Anything.
        spelled(),
    ]
    .boxed()
}

/// A registry whose one credential claims `api`; its transport fails every request (none
/// is made: only routing is tested).
fn registry(api: &str) -> CredentialRegistry {
    let transport = TokenTransport::new(tower::service_fn(|_request: http::Request<_>| {
        std::future::ready(Err::<http::Response<http_body_util::Full<bytes::Bytes>>, _>(
            std::io::Error::other("no network in this test"),
        ))
    }));
    CredentialRegistry::builder()
        .credential(Credential::client_credentials(
            Provider::standard("https://auth.example.com/token").api(api),
            "app",
            "secret",
        ))
        .transport(transport)
        .build()
        .expect("an origin that parses makes a registry")
}

/// Whether a request to `url` is routed to `origin`, the way `RoutingTable::route` decides.
fn routed(origin: &Origin, url: &str) -> bool {
    url.parse::<Uri>()
        .ok()
        .and_then(|uri| scheme_and_authority(&uri).map(|(https, authority)| origin.matches(https, authority)))
        .unwrap_or(false)
}

// ===== properties =====

proptest! {
    #![proptest_config(config(1024))]

    /// Any string: `Origin::parse` answers, and what it accepts is https or loopback.
    /// Any URI that parses: `Origin::of` and `scheme_and_authority` answer.
    #[test]
    fn any_string_parses_to_an_origin_or_an_error(input in prop_oneof![
        any::<String>(),
        "(https?|HTTPS?|ftp|)(://)?[ -~]{0,40}",
        (spelled(), "[ -~]{0,12}").prop_map(|(s, tail)| s.url(&tail)),
    ]) {
        match Origin::parse("API origin", &input) {
            Ok(_) => {
                let uri: Uri = input.parse().expect("an accepted origin is a URI");
                let https = uri.scheme_str().is_some_and(|s| s.eq_ignore_ascii_case("https"));
                prop_assert!(https || expected_loopback(uri.host().unwrap_or_default()), "{:?}", input);
            }
            Err(err) => prop_assert!(matches!(err, crate::Error::Config(_))),
        }
        if let Ok(uri) = input.parse::<Uri>() {
            let _ = Origin::of(&uri);
            let _ = scheme_and_authority(&uri);
        }
    }

    /// An origin matches requests to itself, however the port and the host's case are
    /// spelled, and nothing whose scheme, host or port differs.
    #[test]
    fn an_origin_matches_itself_and_nothing_else(
        (configured, request) in spelled().prop_flat_map(|o| (Just(o.clone()), request_for(o))),
        configured_path in path(),
        request_path in path(),
    ) {
        let Ok(origin) = Origin::parse("API origin", &configured.url(&configured_path)) else {
            // Plain http to a host that is not loopback: refused, checked elsewhere.
            prop_assert!(!configured.https);
            return Ok(());
        };
        // Its own URI's authority, and the explicit `host:port` spelling.
        prop_assert!(routed(&origin, &configured.url(&request_path)));
        let explicit = format!("{}:{}", configured.host, configured.effective_port());
        prop_assert!(origin.matches(configured.https, &explicit));
        // Another request: routed exactly when it is the same origin (a user part
        // makes it a different authority; it is never routed).
        let url = request.url(&request_path);
        let same = configured.same_origin(&request) && !request.host.contains('@');
        prop_assert_eq!(routed(&origin, &url), same, "{} for {}", url, configured.url(""));
    }

    /// `RoutingTable::route` sends a request to the credential of its origin and no other.
    #[test]
    fn the_registry_routes_by_origin(
        (configured, request) in spelled()
            // An origin a registry accepts: https, or plain http to loopback.
            .prop_map(|o| Spelled { https: o.https || !expected_loopback(&o.host), ..o })
            .prop_flat_map(|o| (Just(o.clone()), request_for(o))),
        request_path in path(),
    ) {
        let api = configured.url("");
        let credentials = registry(&api);
        let same = configured.same_origin(&request) && !request.host.contains('@');
        let Ok(uri) = request.url(&request_path).parse::<Uri>() else {
            return Ok(());
        };
        prop_assert_eq!(credentials.routing.route(&uri), same.then_some(0));
    }

    /// Plain http is accepted for loopback hosts only, https for any host.
    #[test]
    fn plain_http_parses_only_for_loopback_hosts(origin in spelled(), path in path()) {
        let parsed = Origin::parse("API origin", &origin.url(&path));
        if origin.https {
            prop_assert!(parsed.is_ok(), "{}", origin.url(&path));
        } else {
            prop_assert_eq!(parsed.is_ok(), expected_loopback(&origin.host), "{}", origin.url(&path));
        }
    }

    /// For IP literals, bracketed or not, `is_loopback_host` agrees with the standard
    /// library, an IPv4-mapped IPv6 address counting as the IPv4 address it maps.
    #[test]
    fn loopback_ip_literals_agree_with_the_standard_library(ip in prop_oneof![
        ipv4().prop_map(IpAddr::V4),
        (0u8..=255, 0u8..=255, 0u8..=255).prop_map(|(a, b, c)| IpAddr::V4(Ipv4Addr::new(127, a, b, c))),
        ipv6().prop_map(IpAddr::V6),
    ]) {
        let expected = ip.to_canonical().is_loopback();
        prop_assert_eq!(is_loopback_host(&ip.to_string()), expected, "{}", ip);
        if let IpAddr::V6(v6) = ip {
            prop_assert_eq!(is_loopback_host(&format!("[{v6}]")), expected, "[{}]", v6);
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// `*.localhost` names are not loopback: plain http to them is refused.
    #[test]
    fn subdomains_of_localhost_are_not_loopback(
        name in "[a-z0-9]{1,10}(\\.[a-z0-9]{1,10}){0,2}\\.(localhost|LOCALHOST|LocalHost)",
    ) {
        prop_assert!(!is_loopback_host(&name), "{}", name);
        prop_assert!(Origin::parse("API origin", &format!("http://{name}:8080")).is_err(), "{}", name);
    }
}
