//! A browser's cookie jar, as much of one as the login routes need: cookies kept by name
//! and path from `Set-Cookie`, removed by `Max-Age=0`, and sent back on the paths they
//! cover.

use http::{header, HeaderValue, Response};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cookie {
    pub name: String,
    pub value: String,
    pub path: String,
    /// The attributes after the path, as sent (`HttpOnly`, `SameSite=Lax`, ...).
    pub attributes: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Jar {
    cookies: Vec<Cookie>,
}

impl Jar {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes in every `Set-Cookie` of `response`.
    pub fn absorb<B>(&mut self, response: &Response<B>) {
        for value in response.headers().get_all(header::SET_COOKIE) {
            let text = value.to_str().expect("Set-Cookie is ASCII");
            let mut parts = text.split(';').map(str::trim);
            let (name, value) = parts.next().unwrap().split_once('=').unwrap();
            let mut cookie = Cookie {
                name: name.to_owned(),
                value: value.to_owned(),
                path: "/".to_owned(),
                attributes: Vec::new(),
            };
            let mut removed = false;
            for attribute in parts {
                match attribute.split_once('=') {
                    Some(("Path", path)) => cookie.path = path.to_owned(),
                    Some(("Max-Age", "0")) => removed = true,
                    _ => cookie.attributes.push(attribute.to_owned()),
                }
            }
            self.cookies
                .retain(|c| !(c.name == cookie.name && c.path == cookie.path));
            if !removed {
                self.cookies.push(cookie);
            }
        }
    }

    /// Adds a cookie by hand, as a hostile page or a second browser would.
    pub fn insert(&mut self, name: &str, value: &str, path: &str) {
        self.cookies.push(Cookie {
            name: name.to_owned(),
            value: value.to_owned(),
            path: path.to_owned(),
            attributes: Vec::new(),
        });
    }

    /// The `Cookie` header for a request to `path`, if any cookie covers it.
    pub fn header_for(&self, path: &str) -> Option<HeaderValue> {
        let path = path.split('?').next().unwrap();
        let pairs: Vec<String> = self
            .cookies
            .iter()
            .filter(|c| covers(&c.path, path))
            .map(|c| format!("{}={}", c.name, c.value))
            .collect();
        (!pairs.is_empty()).then(|| HeaderValue::from_str(&pairs.join("; ")).unwrap())
    }

    pub fn cookies(&self) -> &[Cookie] {
        &self.cookies
    }

    pub fn is_empty(&self) -> bool {
        self.cookies.is_empty()
    }
}

/// RFC 6265 §5.1.4 path-match.
fn covers(cookie_path: &str, request_path: &str) -> bool {
    match request_path.strip_prefix(cookie_path) {
        Some(rest) => rest.is_empty() || cookie_path.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}
