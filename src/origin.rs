//! Origins: the (scheme, host, port) triple a token is bound to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::{uri::Scheme, Uri};

use crate::{error::Error, redact::without_userinfo};

/// A parsed origin. Hosts are stored lowercase; ports are explicit.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    https: bool,
    host: Box<str>,
    port: u16,
    /// The two spellings of this origin's authority a request may use: `host` (default
    /// port implied) and `host:port`. Matching compares whole strings, which rejects a
    /// foreign origin by its length alone most of the time, instead of parsing the
    /// request's host and port on every request.
    implicit: Box<str>,
    explicit: Box<str>,
}

impl PartialEq for Origin {
    fn eq(&self, other: &Self) -> bool {
        (self.https, &self.host, self.port) == (other.https, &other.host, other.port)
    }
}

impl Eq for Origin {}

impl Origin {
    /// Parses an origin from configuration, refusing plain http to anything but loopback.
    pub(crate) fn parse(what: &str, input: &str) -> Result<Self, Error> {
        let uri: Uri = input
            .parse()
            .map_err(|_| Error::config(format!("{what} `{}` is not a valid URL", without_userinfo(input))))?;
        let origin = Self::of(&uri).ok_or_else(|| {
            Error::config(format!(
                "{what} `{}` must be an absolute http(s) URL",
                without_userinfo(input)
            ))
        })?;
        if !origin.https && !origin.is_loopback() {
            return Err(Error::config(format!(
                "{what} `{}` uses plain http to a non-loopback host; tokens only travel over https",
                without_userinfo(input)
            )));
        }
        Ok(origin)
    }

    /// The origin of a request URI, if it has one and its scheme is http(s).
    pub(crate) fn of(uri: &Uri) -> Option<Self> {
        let https = match uri.scheme() {
            Some(s) if *s == Scheme::HTTPS => true,
            Some(s) if *s == Scheme::HTTP => false,
            _ => return None,
        };
        let host = uri.host().filter(|h| !h.is_empty())?;
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let host = host.to_ascii_lowercase();
        let explicit: Box<str> = format!("{host}:{port}").into();
        let default_port = if https { 443 } else { 80 };
        let implicit = if port == default_port {
            host.clone().into()
        } else {
            explicit.clone()
        };
        Some(Self {
            https,
            host: host.into(),
            port,
            implicit,
            explicit,
        })
    }

    /// Whether a request whose scheme is https (or not) and whose authority is
    /// `authority` is of this origin. Allocation-free: it runs on every request.
    #[cfg(any(test, feature = "reqwest", feature = "follow-redirect"))]
    #[inline]
    pub(crate) fn matches(&self, https: bool, authority: &str) -> bool {
        self.spelling(https, authority).is_some()
    }

    /// How a request of this origin spelled it: `Some(false)` for the host alone
    /// (default port implied), `Some(true)` for `host:port`; `None` for another origin.
    #[inline]
    pub(crate) fn spelling(&self, https: bool, authority: &str) -> Option<bool> {
        if https != self.https {
            return None;
        }
        if same_host(authority, &self.implicit) {
            Some(false)
        } else if same_host(authority, &self.explicit) {
            Some(true)
        } else {
            None
        }
    }

    /// This origin's authority, spelled as [`spelling`](Self::spelling) said.
    pub(crate) fn authority(&self, explicit: bool) -> &str {
        if explicit {
            &self.explicit
        } else {
            &self.implicit
        }
    }

    fn is_loopback(&self) -> bool {
        is_loopback_host(&self.host)
    }
}

/// Equal ignoring ASCII case, with a plain comparison first: hosts are almost always
/// written in lowercase already.
#[inline(always)]
fn same_host(authority: &str, expected: &str) -> bool {
    authority.len() == expected.len()
        && (same_bytes(authority.as_bytes(), expected.as_bytes()) || authority.eq_ignore_ascii_case(expected))
}

/// `a == b` for two slices of the same length, compared a word at a time in line
/// rather than by a call to `memcmp`: authorities are short and this runs on every
/// request.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a == b;
    }
    let word = |s: &[u8], at: usize| {
        let mut word = [0; 8];
        word.copy_from_slice(&s[at..at + 8]);
        u64::from_ne_bytes(word)
    };
    // Whole words from the front, then the last word (overlapping the one before).
    let mut at = 0;
    while at + 8 < n {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    word(a, n - 8) == word(b, n - 8)
}

/// The scheme (as "is https") and authority of a request URI, when it is an absolute
/// http(s) URI.
#[inline]
pub(crate) fn scheme_and_authority(uri: &Uri) -> Option<(bool, &str)> {
    let https = match uri.scheme_str()? {
        "https" => true,
        "http" => false,
        _ => return None,
    };
    Some((https, uri.authority()?.as_str()))
}

/// `localhost`, 127.0.0.0/8 and ::1 (also as an IPv4-mapped address).
///
/// Not `*.localhost`: RFC 6761 asks resolvers to answer such names with loopback, but
/// many send them to DNS all the same, where anyone may answer. `localhost` itself is
/// answered from the hosts file by every resolver we know of.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(IpAddr::V6(ip)) => {
            ip == Ipv6Addr::LOCALHOST || ip.to_ipv4_mapped().is_some_and(|v4: Ipv4Addr| v4.is_loopback())
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_scheme_host_and_port_exactly() {
        let origin = Origin::parse("api", "https://API.example.com/v1").unwrap();
        for (uri, expected) in [
            ("https://api.example.com/x", true),
            ("https://Api.Example.Com:443/x?y=1", true),
            ("http://api.example.com/x", false),
            ("https://api.example.com:8443/x", false),
            ("https://api.example.com.evil.test/x", false),
            ("https://evil.test/api.example.com", false),
            ("https://user@api.example.com/x", false),
            ("https://api.example.com:0443/x", false),
            ("/relative", false),
        ] {
            let uri: Uri = uri.parse().unwrap();
            let matched = scheme_and_authority(&uri).is_some_and(|(https, a)| origin.matches(https, a));
            assert_eq!(matched, expected, "{uri}");
        }
    }

    #[test]
    fn word_wise_comparison_agrees_with_slice_equality() {
        let hosts = [
            "",
            "a",
            "a.io",
            "api.io:8",
            "api.example",
            "api.example.com",
            "api.example.com:8443x",
        ];
        for a in hosts {
            for b in hosts {
                assert_eq!(same_bytes(a.as_bytes(), b.as_bytes()), a == b, "{a:?} {b:?}");
            }
            // A difference in any one byte is seen.
            for i in 0..a.len() {
                let mut c = a.as_bytes().to_vec();
                c[i] ^= 1;
                assert!(!same_bytes(a.as_bytes(), &c), "{a:?} byte {i}");
            }
        }
    }

    #[test]
    fn only_http_and_https_schemes_are_routed_in_any_case() {
        for (uri, expected) in [
            ("https://api.example.com/x", Some(true)),
            ("HTTPS://api.example.com/x", Some(true)),
            ("http://api.example.com/x", Some(false)),
            ("ftp://api.example.com/x", None),
            ("wss://api.example.com/", None),
        ] {
            let uri: Uri = uri.parse().unwrap();
            assert_eq!(
                scheme_and_authority(&uri).map(|(https, _)| https),
                expected,
                "{uri}"
            );
        }
    }

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(Origin::parse("api", "http://127.0.0.1:8080").is_ok());
        assert!(Origin::parse("api", "http://localhost:1").is_ok());
        assert!(Origin::parse("api", "http://[::1]:1").is_ok());
        assert!(Origin::parse("api", "http://127.8.9.10").is_ok());
        let err = Origin::parse("api", "http://api.example.com").unwrap_err();
        assert!(err.to_string().contains("plain http"), "{err}");
        assert!(Origin::parse("api", "ftp://x").is_err());
        assert!(Origin::parse("api", "not a url").is_err());
        assert!(Origin::parse("api", "http://10.0.0.1").is_err());
    }

    #[test]
    fn plain_http_is_not_allowed_to_localhost_subdomains() {
        // A resolver may send `*.localhost` to DNS, where anyone can answer.
        for input in [
            "http://api.localhost:8080",
            "http://a.b.LOCALHOST",
            "http://localhost.evil.test",
        ] {
            let err = Origin::parse("api", input).unwrap_err();
            assert!(err.to_string().contains("plain http"), "{input}: {err}");
        }
        assert!(Origin::parse("api", "https://api.localhost:8443").is_ok());
        assert!(Origin::parse("api", "http://LocalHost:1").is_ok());
        assert!(Origin::parse("api", "http://[::ffff:127.0.0.1]:1").is_ok());
        assert!(Origin::parse("api", "http://[::2]:1").is_err());
    }

    #[test]
    fn messages_about_urls_never_show_a_password() {
        let err = Origin::parse("token URL", "http://user:hunter22@api.example.com/t").unwrap_err();
        let printed = format!("{err} {err:?}");
        assert!(!printed.contains("hunter22"), "{printed}");
        assert!(printed.contains("[redacted]@api.example.com"), "{printed}");
    }
}
