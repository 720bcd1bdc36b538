//! The copy of a request kept to send it again after a dead-token answer.
//!
//! The inner service consumes the request, so a request that may be retried is copied
//! before it is sent, with nothing attached yet: its URI, method, version, headers,
//! extensions and (if it can be replayed, see [`body`](crate::body)) its body.

use http::{
    uri::{self, Authority, PathAndQuery, Scheme},
    Extensions, HeaderMap, Method, Request, Uri, Version,
};

use crate::{
    body::{Replay, ReplayableBody},
    registry::{RouteRef, RoutingTable},
};

/// What is needed to send a request again: a copy taken before anything was attached.
///
/// Kept small, because it lives in the response future of every request that may be
/// retried: the path, the method as a byte and the version inline; the headers, the
/// extensions and a non-standard method boxed together, only when the request had any
/// (a non-empty header map's clone allocates anyway).
pub(crate) struct ReplayCopy<B> {
    /// The configured origin the request was routed to, and how it spelled it: the
    /// authority is written again from it for a retry (rare) rather than copied for
    /// every request. The scheme is a flag (routed, so http or https): cloning and
    /// dropping a `Scheme` costs more.
    route: RouteRef,
    path_and_query: PathAndQuery,
    extras: Option<Box<Extras>>,
    https: bool,
    method: MethodCode,
    version: Version,
    pub(crate) body: Replay<B>,
}

struct Extras {
    method: Method,
    headers: HeaderMap,
    extensions: Extensions,
}

/// A standard method, or `Extras` (the method is in the boxed extras).
#[derive(Clone, Copy, PartialEq, Eq)]
enum MethodCode {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Patch,
    Connect,
    Trace,
    Extras,
}

impl MethodCode {
    #[inline]
    fn of(method: &Method) -> Self {
        match *method {
            Method::GET => MethodCode::Get,
            Method::HEAD => MethodCode::Head,
            Method::POST => MethodCode::Post,
            Method::PUT => MethodCode::Put,
            Method::DELETE => MethodCode::Delete,
            Method::OPTIONS => MethodCode::Options,
            Method::PATCH => MethodCode::Patch,
            Method::CONNECT => MethodCode::Connect,
            Method::TRACE => MethodCode::Trace,
            _ => MethodCode::Extras,
        }
    }

    fn method(self) -> Option<Method> {
        Some(match self {
            MethodCode::Get => Method::GET,
            MethodCode::Head => Method::HEAD,
            MethodCode::Post => Method::POST,
            MethodCode::Put => Method::PUT,
            MethodCode::Delete => Method::DELETE,
            MethodCode::Options => Method::OPTIONS,
            MethodCode::Patch => Method::PATCH,
            MethodCode::Connect => Method::CONNECT,
            MethodCode::Trace => Method::TRACE,
            MethodCode::Extras => return None,
        })
    }
}

impl<B: ReplayableBody> ReplayCopy<B> {
    /// The request to send again, or `None` if its URI cannot be put back together
    /// (never: only routed absolute http(s) URIs are copied, and `registry` is the one
    /// they were routed by).
    pub(crate) fn into_request(self, registry: &RoutingTable) -> Option<Request<B>> {
        let authority = registry.authority(self.route)?;
        let mut uri = uri::Parts::default();
        uri.scheme = Some(if self.https { Scheme::HTTPS } else { Scheme::HTTP });
        uri.authority =
            Some(Authority::from_maybe_shared(bytes::Bytes::copy_from_slice(authority.as_bytes())).ok()?);
        uri.path_and_query = Some(self.path_and_query);
        let mut req = Request::new(self.body.into_body());
        *req.uri_mut() = Uri::from_parts(uri).ok()?;
        *req.version_mut() = self.version;
        if let Some(method) = self.method.method() {
            *req.method_mut() = method;
        }
        if let Some(extras) = self.extras {
            let Extras {
                method,
                headers,
                extensions,
            } = *extras;
            *req.method_mut() = method;
            *req.headers_mut() = headers;
            *req.extensions_mut() = extensions;
        }
        Some(req)
    }
}

/// Copies what is needed to send `req`, routed as `route`, again, before anything is
/// attached to it, or `None` if its body cannot be replayed.
#[inline]
pub(crate) fn prepare_replay<B: ReplayableBody>(
    req: &mut Request<B>,
    route: RouteRef,
    limit: usize,
) -> Option<ReplayCopy<B>> {
    let body = req.body_mut().replay_copy(limit)?;
    let uri = req.uri();
    let path_and_query = uri.path_and_query()?.clone();
    // Routed, so `http` or `https`: the length tells which, without comparing bytes.
    let https = uri.scheme_str().map(str::len) == Some("https".len());
    let method = MethodCode::of(req.method());
    // A user's request carries its `Subject`: when that is its only extension, the
    // retry gets it back from the user's credential rather than from a copy of the
    // extensions' map, which would cost an allocation on every user's request.
    let extensions = req.extensions();
    let lone_subject = route.is_users() && extensions.len() == 1;
    let copy_extensions = !(extensions.is_empty() || lone_subject);
    let extras = (method == MethodCode::Extras || !req.headers().is_empty() || copy_extensions).then(|| {
        Box::new(Extras {
            method: req.method().clone(),
            headers: req.headers().clone(),
            extensions: if copy_extensions {
                extensions.clone()
            } else {
                Extensions::new()
            },
        })
    });
    Some(ReplayCopy {
        route,
        path_and_query,
        extras,
        https,
        method,
        version: req.version(),
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Tag(u32);

    /// A registry serving the origins the tests send to.
    fn registry() -> crate::CredentialRegistry {
        let transport = crate::TokenTransport::new(tower::service_fn(
            |_req: http::Request<http_body_util::Full<bytes::Bytes>>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(
                    http_body_util::Full::<bytes::Bytes>::default(),
                ))
            },
        ));
        let standard = |api: &str| crate::Provider::standard("https://auth.example.com/token").api(api);
        crate::CredentialRegistry::builder()
            .credential(crate::Credential::client_credentials(
                standard("https://api.example.com"),
                "a",
                "s",
            ))
            .credential(crate::Credential::client_credentials(
                standard("http://127.0.0.1:8080"),
                "b",
                "s",
            ))
            .transport(transport)
            .build()
            .unwrap()
    }

    fn round_trip(mut req: Request<String>) -> (Request<String>, Request<String>) {
        let credentials = registry();
        let registry = &credentials.routing;
        let (_, route) = registry.route_ref(req.uri()).expect("a routed request");
        let copy = prepare_replay(&mut req, route, 1024).expect("a replayable request");
        (
            req,
            copy.into_request(registry).expect("the URI is put back together"),
        )
    }

    #[test]
    fn the_replay_copy_reproduces_the_request() {
        let custom = Method::from_bytes(b"PROPFIND").unwrap();
        let methods = [
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
            Method::PATCH,
            Method::CONNECT,
            Method::TRACE,
            custom,
        ];
        let uris = [
            "https://api.example.com/v1/items?page=2&q=a%20b",
            "https://api.example.com",
            "http://127.0.0.1:8080/x",
            "https://API.example.com:443/",
        ];
        for method in methods {
            for uri in uris {
                for version in [Version::HTTP_11, Version::HTTP_2] {
                    let req = Request::builder()
                        .method(method.clone())
                        .uri(uri)
                        .version(version)
                        .body(String::from("payload"))
                        .unwrap();
                    let (original, replayed) = round_trip(req);
                    assert_eq!(replayed.method(), original.method());
                    assert_eq!(replayed.uri(), original.uri());
                    // The authority is written from the configured origin: lowercase.
                    assert_eq!(
                        replayed.uri().to_string(),
                        original.uri().to_string().replace("API.", "api.")
                    );
                    assert_eq!(replayed.version(), original.version());
                    assert!(replayed.headers().is_empty());
                    assert!(replayed.extensions().is_empty());
                    assert_eq!(replayed.body(), "payload");
                }
            }
        }
    }

    #[test]
    fn the_replay_copy_keeps_headers_and_extensions() {
        let mut req = Request::put("https://api.example.com/v1/items/7")
            .header("content-type", "application/json")
            .header("x-trace", "a")
            .header("x-trace", "b")
            .body(String::from("{}"))
            .unwrap();
        req.extensions_mut().insert(Tag(7));
        let (original, replayed) = round_trip(req);
        assert_eq!(replayed.headers(), original.headers());
        assert_eq!(replayed.headers().get_all("x-trace").iter().count(), 2);
        assert_eq!(replayed.extensions().get::<Tag>(), Some(&Tag(7)));
        assert_eq!(replayed.method(), Method::PUT);
    }

    #[test]
    fn a_body_over_the_limit_gives_no_replay_copy() {
        let mut req = Request::post("https://api.example.com/")
            .body("x".repeat(2048))
            .unwrap();
        let credentials = registry();
        let (_, route) = credentials.routing.route_ref(req.uri()).unwrap();
        assert!(prepare_replay(&mut req, route, 1024).is_none());
    }
}
