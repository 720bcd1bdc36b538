//! Text from outside (an authorization server, a browser, a user id) made safe to keep in
//! an error, print or log.
//!
//! Authorization servers quote requests back: some put the parameters they refused in
//! `error_description`, some echo the whole body in a plain-text answer, hostile ones put
//! anything anywhere. So every text that originates there passes through one
//! [`Redactor`] before it is stored in an error: each secret the request carried is
//! replaced (as sent, and in the encodings it travelled in), then control characters are
//! escaped, then the length is capped. Redacting before capping matters: a cap that cut a
//! secret in two would leave its first half behind.
//!
//! Values the application hands us (subjects, provider names, configuration) are not
//! secret but may carry a newline that would forge a log line; [`Escaped`] writes them
//! with control characters escaped, and every `Display` of the crate's errors goes
//! through it.

use std::fmt::{self, Write as _};

/// What a secret is replaced with.
pub(crate) const REDACTED: &str = "[redacted]";

/// The secrets one request carried, to be removed from whatever its answer says.
#[derive(Default)]
pub(crate) struct Redactor {
    /// Each secret in every form it may come back in, longest first, so that a secret
    /// that contains another is replaced whole.
    needles: Vec<String>,
}

impl Redactor {
    /// A redactor that knows no secret: it still escapes and caps.
    pub(crate) fn none() -> Self {
        Self::default()
    }

    /// Adds a secret the request carried. It is looked for as it is, form-encoded (as in
    /// a request body) and percent-encoded (as in a URL).
    pub(crate) fn secret(mut self, secret: &str) -> Self {
        if secret.is_empty() {
            return self;
        }
        let form: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        let percent = form.replace('+', "%20");
        for needle in [secret.to_owned(), form, percent] {
            if !self.needles.contains(&needle) {
                self.needles.push(needle);
            }
        }
        self.needles.sort_by_key(|needle| std::cmp::Reverse(needle.len()));
        self
    }

    /// Adds a value that is a secret as a whole, looked for only as it is (an encoded
    /// `Authorization: Basic` credential, say).
    pub(crate) fn exact(mut self, value: &str) -> Self {
        if !value.is_empty() && !self.needles.iter().any(|n| n == value) {
            self.needles.push(value.to_owned());
            self.needles.sort_by_key(|needle| std::cmp::Reverse(needle.len()));
        }
        self
    }

    /// `text` from outside, fit to keep: secrets replaced, control characters escaped,
    /// and at most `max_chars` characters once escaped (an ellipsis marks a cut).
    pub(crate) fn text(&self, text: &str, max_chars: usize) -> String {
        let redacted = self.redact(text);
        let mut out = String::with_capacity(redacted.len().min(4 * max_chars));
        let mut written = 0;
        for c in redacted.chars() {
            let width = if needs_escape(c) {
                c.escape_default().count()
            } else {
                1
            };
            if written + width > max_chars {
                out.push('…');
                break;
            }
            push_escaped(&mut out, c);
            written += width;
        }
        out
    }

    /// An OAuth `error` code from outside. Registered codes are kept as they are (code
    /// matches on them); anything else is treated as text, capped shorter.
    pub(crate) fn code(&self, code: &str) -> String {
        if REGISTERED_CODES.contains(&code) {
            return code.to_owned();
        }
        self.text(code, 64)
    }

    fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for needle in &self.needles {
            if text.contains(needle.as_str()) {
                text = text.replace(needle.as_str(), REDACTED);
            }
        }
        text
    }
}

// Written by hand: the needles are the secrets themselves.
impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.needles.len())
            .finish()
    }
}

/// The `error` codes of RFC 6749 §4.1.2.1 and §5.2, RFC 7009 §2.2.1 and RFC 9449 §12.2:
/// the ones worth matching on, kept verbatim.
pub(crate) const REGISTERED_CODES: &[&str] = &[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "access_denied",
    "unsupported_response_type",
    "server_error",
    "temporarily_unavailable",
    "unsupported_token_type",
    "invalid_dpop_proof",
    "use_dpop_nonce",
];

/// Whether `c` must not reach a log line or a terminal as it is: control characters
/// (a newline forges a line, an escape sequence drives a terminal), and the Unicode
/// marks that reorder or break lines when displayed.
#[inline]
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn push_escaped(out: &mut String, c: char) {
    if needs_escape(c) {
        out.extend(c.escape_default());
    } else {
        out.push(c);
    }
}

/// A value the application or a user supplied, displayed with control characters
/// escaped. Allocation-free when there is nothing to escape.
pub(crate) struct Escaped<'a>(pub(crate) &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        EscapingWriter(f).write_str(self.0)
    }
}

/// Writes `args` to `f` with control characters escaped: how the crate's errors
/// display, so that no value inside a message can start a line of its own.
pub(crate) fn write_escaped(f: &mut fmt::Formatter<'_>, args: fmt::Arguments<'_>) -> fmt::Result {
    fmt::write(&mut EscapingWriter(f), args)
}

struct EscapingWriter<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl fmt::Write for EscapingWriter<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some((at, c)) = rest.char_indices().find(|&(_, c)| needs_escape(c)) {
            self.0.write_str(&rest[..at])?;
            for escaped in c.escape_default() {
                self.0.write_char(escaped)?;
            }
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

/// `url` with any `user:password@` part replaced, for `Debug` output and messages.
pub(crate) fn without_userinfo(url: &str) -> std::borrow::Cow<'_, str> {
    let Some(scheme_end) = url.find("://").map(|at| at + 3) else {
        return url.into();
    };
    let authority_end = url[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |at| scheme_end + at);
    match url[scheme_end..authority_end].rfind('@') {
        Some(at) => format!("{}{REDACTED}@{}", &url[..scheme_end], &url[scheme_end + at + 1..]).into(),
        None => url.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_replaced_in_every_encoding_before_the_cap() {
        let redactor = Redactor::none().secret("s3cr3t value+1").secret("rt-42");
        let quoted = "got client_secret=s3cr3t+value%2B1 (s3cr3t%20value%2B1) and s3cr3t value+1, rt-42";
        assert_eq!(
            redactor.text(quoted, 500),
            "got client_secret=[redacted] ([redacted]) and [redacted], [redacted]"
        );
        // A cap that would have cut the secret in two cuts the replacement instead.
        assert_eq!(redactor.text("xx s3cr3t value+1", 6), "xx [re…");
    }

    #[test]
    fn a_secret_containing_another_is_replaced_whole() {
        let redactor = Redactor::none().secret("abc").secret("abcdef");
        assert_eq!(redactor.text("abcdef abc", 100), "[redacted] [redacted]");
    }

    #[test]
    fn control_characters_and_reordering_marks_are_escaped() {
        let text = "line\nFORGED\r\x1b[31m\u{202e}evil\u{2028}";
        let safe = Redactor::none().text(text, 100);
        assert_eq!(safe, "line\\nFORGED\\r\\u{1b}[31m\\u{202e}evil\\u{2028}");
        assert!(!safe.chars().any(needs_escape));
        assert_eq!(Escaped(text).to_string(), safe);
        assert_eq!(Escaped("plain").to_string(), "plain");
    }

    #[test]
    fn registered_codes_are_kept_and_others_are_text() {
        let redactor = Redactor::none().secret("a");
        assert_eq!(redactor.code("invalid_grant"), "invalid_grant");
        assert_eq!(redactor.code("bad\na"), "b[redacted]d\\n[redacted]");
        assert_eq!(redactor.code(&"x".repeat(100)).chars().count(), 65);
        // The cap counts what is kept, escapes included.
        assert_eq!(Redactor::none().text(&"\n".repeat(100), 9), "\\n\\n\\n\\n…");
    }

    #[test]
    fn the_redactor_debug_shows_no_secret() {
        let redactor = Redactor::none().secret("hunter2");
        assert_eq!(format!("{redactor:?}"), "Redactor { secrets: 1 }");
    }

    #[test]
    fn userinfo_is_removed_from_urls() {
        assert_eq!(
            without_userinfo("https://user:p%40ss@auth.example.com/token?x=@y"),
            "https://[redacted]@auth.example.com/token?x=@y"
        );
        assert_eq!(
            without_userinfo("https://auth.example.com/a@b"),
            "https://auth.example.com/a@b"
        );
        assert_eq!(without_userinfo("not a url"), "not a url");
    }
}
