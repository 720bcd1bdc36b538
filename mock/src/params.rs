//! The parameters of a token request, in whichever encoding the dialect
//! uses, under their RFC 6749 names.

use std::collections::HashMap;

use http::header::CONTENT_TYPE;
use http::HeaderMap;

use crate::dialect::ParameterStyle;
use crate::error::ErrorAnswer;

pub(crate) const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";
pub(crate) const JSON_CONTENT_TYPE: &str = "application/json";

/// iOFFICE's request headers and the RFC 6749 parameters they stand for.
const HEADER_NAMES: &[(&str, &str)] = &[
    ("grant_type", "x-grant-type"),
    ("redirect_uri", "x-redirect-uri"),
    ("client_id", "x-client-id"),
    ("scope", "x-scope"),
    ("code", "x-auth-code"),
    ("refresh_token", "x-refresh-token"),
];

/// The parameters of a token request.
#[derive(Debug)]
pub(crate) struct TokenParams {
    values: HashMap<String, String>,
    encoding: ParameterStyle,
}

impl TokenParams {
    /// Parses a form body, rejecting repeated parameters (RFC 6749 §3.2).
    /// Parameters without a value are treated as omitted (RFC 6749 §3.1).
    pub(crate) fn from_form(body: &[u8]) -> Result<Self, ErrorAnswer> {
        let mut params = TokenParams {
            values: HashMap::new(),
            encoding: ParameterStyle::Form,
        };
        for (name, value) in form_urlencoded::parse(body) {
            params.insert(name.into_owned(), value.into_owned())?;
        }
        Ok(params)
    }

    /// Reads iOFFICE's parameter headers. Any header may appear at most
    /// once; empty values count as omitted.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Result<Self, ErrorAnswer> {
        let mut params = TokenParams {
            values: HashMap::new(),
            encoding: ParameterStyle::Headers,
        };
        for &(name, header) in HEADER_NAMES {
            let mut values = headers.get_all(header).iter();
            let Some(value) = values.next() else {
                continue;
            };
            if values.next().is_some() {
                return Err(ErrorAnswer::invalid_request(format!(
                    "header `{header}` is repeated"
                )));
            }
            let value = std::str::from_utf8(value.as_bytes())
                .map_err(|_| ErrorAnswer::invalid_request(format!("header `{header}` is not UTF-8")))?;
            params.insert(name.to_owned(), value.to_owned())?;
        }
        Ok(params)
    }

    /// Adds `client_id` and `client_secret` from a query string (Accelo's
    /// fallback). Other query parameters are not token parameters and are
    /// ignored; sending a credential in both the query and the body is a
    /// repeated parameter.
    pub(crate) fn add_query_credentials(&mut self, query: Option<&str>) -> Result<(), ErrorAnswer> {
        let Some(query) = query else {
            return Ok(());
        };
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if name == "client_id" || name == "client_secret" {
                self.insert(name.into_owned(), value.into_owned())?;
            }
        }
        Ok(())
    }

    fn insert(&mut self, name: String, value: String) -> Result<(), ErrorAnswer> {
        if value.is_empty() {
            return Ok(());
        }
        if self.values.contains_key(&name) {
            return Err(ErrorAnswer::invalid_request(format!(
                "{} is repeated",
                self.describe(&name)
            )));
        }
        self.values.insert(name, value);
        Ok(())
    }

    /// The value of a parameter, if it was sent with a value.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// The value of a required parameter.
    pub(crate) fn require(&self, name: &str) -> Result<&str, ErrorAnswer> {
        self.get(name)
            .ok_or_else(|| ErrorAnswer::invalid_request(format!("missing {}", self.describe(name))))
    }

    /// How error descriptions name a parameter: as the client sent it.
    pub(crate) fn describe(&self, name: &str) -> String {
        match self.encoding {
            ParameterStyle::Form => format!("parameter `{name}`"),
            ParameterStyle::Headers => {
                let header = HEADER_NAMES
                    .iter()
                    .find(|(param, _)| *param == name)
                    .map_or(name, |(_, header)| header);
                format!("header `{header}`")
            }
        }
    }
}

/// Checks that the request has exactly one `Content-Type` and that its media
/// type (parameters aside, case-insensitively) is `expected`.
pub(crate) fn check_content_type(headers: &HeaderMap, expected: &str) -> Result<(), ErrorAnswer> {
    let wrong = || ErrorAnswer::invalid_request(format!("Content-Type must be {expected}"));
    let mut values = headers.get_all(CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(wrong());
    };
    let media_type = value
        .as_bytes()
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if media_type.eq_ignore_ascii_case(expected.as_bytes()) {
        Ok(())
    } else {
        Err(wrong())
    }
}

/// Checks that a request whose parameters travel in headers carries nothing
/// in its body: no body, or an empty JSON object.
pub(crate) fn check_empty_json_body(body: &[u8]) -> Result<(), ErrorAnswer> {
    let trimmed = body.trim_ascii();
    let empty_object = trimmed
        .strip_prefix(b"{")
        .and_then(|rest| rest.strip_suffix(b"}"));
    if trimmed.is_empty() || empty_object.is_some_and(|inside| inside.trim_ascii().is_empty()) {
        Ok(())
    } else {
        Err(ErrorAnswer::invalid_request(
            "parameters go in request headers (x-grant-type, x-client-id, …); the body must be empty",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_parameters_take_their_rfc_names() {
        let mut headers = HeaderMap::new();
        headers.insert("x-grant-type", "refresh_token".parse().unwrap());
        headers.insert("x-refresh-token", "abc".parse().unwrap());
        headers.insert("x-scope", "".parse().unwrap());
        headers.insert("grant_type", "client_credentials".parse().unwrap());
        let params = TokenParams::from_headers(&headers).unwrap();
        assert_eq!(params.get("grant_type"), Some("refresh_token"));
        assert_eq!(params.get("refresh_token"), Some("abc"));
        assert_eq!(params.get("scope"), None);
        assert_eq!(params.describe("code"), "header `x-auth-code`");
    }

    #[test]
    fn repeated_headers_are_rejected() {
        let mut headers = HeaderMap::new();
        headers.append("x-client-id", "a".parse().unwrap());
        headers.append("x-client-id", "b".parse().unwrap());
        assert!(TokenParams::from_headers(&headers).is_err());
    }

    #[test]
    fn query_credentials_join_the_form() {
        let mut params = TokenParams::from_form(b"grant_type=client_credentials").unwrap();
        params
            .add_query_credentials(Some("client_id=a&client_secret=b&grant_type=x"))
            .unwrap();
        assert_eq!(params.get("client_id"), Some("a"));
        assert_eq!(params.get("client_secret"), Some("b"));
        assert_eq!(params.get("grant_type"), Some("client_credentials"));

        let mut params = TokenParams::from_form(b"client_id=a").unwrap();
        assert!(params.add_query_credentials(Some("client_id=a")).is_err());
    }

    #[test]
    fn only_empty_bodies_go_with_header_parameters() {
        for body in [&b""[..], b"{}", b" { } \n"] {
            assert!(check_empty_json_body(body).is_ok(), "{body:?}");
        }
        for body in [
            &b"grant_type=refresh_token"[..],
            b"{\"grant_type\":\"x\"}",
            b"[]",
            b"{",
        ] {
            assert!(check_empty_json_body(body).is_err(), "{body:?}");
        }
    }
}
