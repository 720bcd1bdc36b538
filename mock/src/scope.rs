//! Scope values in each dialect's syntax.

use std::fmt;

use crate::dialect::ScopeRule;

/// A granted scope.
///
/// Space-delimited scopes (RFC 6749 §3.3) are kept as their distinct tokens,
/// in the order first given. Scopes in other syntaxes (Accelo's grammar,
/// iOFFICE's free text) are kept verbatim as a single token, so they display
/// unchanged and compare as whole strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Scope(Vec<String>);

impl Scope {
    /// Parses a space-delimited scope and checks every token against
    /// `allowed`. An empty string is the empty scope. On failure, returns a
    /// description fit for `error_description`.
    pub(crate) fn parse(raw: &str, allowed: &[String]) -> Result<Self, String> {
        let mut tokens: Vec<String> = Vec::new();
        if raw.is_empty() {
            return Ok(Scope(tokens));
        }
        for token in raw.split(' ') {
            if token.is_empty() {
                return Err("scope tokens must be separated by single spaces".to_owned());
            }
            if !allowed.iter().any(|allowed| allowed == token) {
                return Err(format!("scope `{token}` is not allowed"));
            }
            if !tokens.iter().any(|seen| seen == token) {
                tokens.push(token.to_owned());
            }
        }
        Ok(Scope(tokens))
    }

    /// A scope kept verbatim.
    fn verbatim(raw: &str) -> Self {
        if raw.is_empty() {
            Scope::default()
        } else {
            Scope(vec![raw.to_owned()])
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn is_subset_of(&self, other: &Scope) -> bool {
        self.0.iter().all(|token| other.0.contains(token))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, token) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(token)?;
        }
        Ok(())
    }
}

impl ScopeRule {
    /// Parses a non-empty `scope` value in this syntax. On failure, returns a
    /// description fit for `error_description`.
    pub(crate) fn parse(self, raw: &str, allowed: &[String]) -> Result<Scope, String> {
        match self {
            ScopeRule::SpaceDelimited | ScopeRule::Unused => Scope::parse(raw, allowed),
            ScopeRule::Accelo => check_accelo(raw).map(|()| Scope::verbatim(raw)),
            ScopeRule::Opaque if raw.is_empty() => Err("scope must not be empty".to_owned()),
            ScopeRule::Opaque => Ok(Scope::verbatim(raw)),
        }
    }
}

/// Checks Accelo's scope grammar:
///
/// ```text
/// scope    = group *( "," group )
/// group    = ( "read" / "write" ) "(" ( "all" / resource *( "," resource ) ) ")"
/// resource = 1*( %x61-7A / DIGIT / "_" )     ; lower-case letters, digits, "_"
/// ```
///
/// The document lists `read(all)`, `write(all)`, `read({resource})` and
/// `write({resource})`, groups "concatenated and delimited by a comma", and
/// resources as a comma-separated list inside a group. `all` stands alone:
/// it is not a resource name to mix with others.
fn check_accelo(raw: &str) -> Result<(), String> {
    let mut rest = raw;
    loop {
        let (verb, after_verb) = rest
            .split_once('(')
            .ok_or_else(|| format!("`{rest}` is not of the form read(…) or write(…)"))?;
        if verb != "read" && verb != "write" {
            return Err(format!("unknown scope `{verb}`: expected read(…) or write(…)"));
        }
        let (inner, after_group) = after_verb
            .split_once(')')
            .ok_or_else(|| format!("`{verb}(` is not closed"))?;
        check_resources(verb, inner)?;
        match after_group.strip_prefix(',') {
            None if after_group.is_empty() => return Ok(()),
            None => return Err(format!("unexpected `{after_group}` after `{verb}({inner})`")),
            Some(next) => rest = next,
        }
    }
}

fn check_resources(verb: &str, inner: &str) -> Result<(), String> {
    if inner == "all" {
        return Ok(());
    }
    for resource in inner.split(',') {
        let valid = !resource.is_empty()
            && resource
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(format!(
                "`{verb}({inner})` must list `all` or resource names (a-z, 0-9, _)"
            ));
        }
        if resource == "all" {
            return Err(format!(
                "`all` cannot be combined with resources in `{verb}({inner})`"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<String> {
        vec!["read".to_owned(), "write".to_owned()]
    }

    #[test]
    fn scopes_are_parsed_deduplicated_and_checked() {
        let scope = Scope::parse("write read write", &allowed()).unwrap();
        assert_eq!(scope.to_string(), "write read");
        assert!(Scope::parse("", &allowed()).unwrap().is_empty());
        assert!(Scope::parse("read admin", &allowed()).is_err());
        assert!(Scope::parse("read  write", &allowed()).is_err());
        assert!(Scope::parse(" read", &allowed()).is_err());
    }

    #[test]
    fn scope_subsets() {
        let both = Scope::parse("read write", &allowed()).unwrap();
        let read = Scope::parse("read", &allowed()).unwrap();
        assert!(read.is_subset_of(&both));
        assert!(!both.is_subset_of(&read));
        assert!(Scope::default().is_subset_of(&read));
    }

    #[test]
    fn accelo_grammar_accepts_the_documented_forms() {
        for good in [
            "read(all)",
            "write(all)",
            "read(companies)",
            "read(all),write(companies,contacts)",
            "write(contacts,issues)",
            "read(staff_2),write(all)",
        ] {
            let scope = ScopeRule::Accelo.parse(good, &[]).unwrap();
            assert_eq!(scope.to_string(), good);
        }
    }

    #[test]
    fn accelo_grammar_rejects_everything_else() {
        for bad in [
            "read",
            "read()",
            "read(all) write(all)",
            "read(all),",
            ",read(all)",
            "read(all)write(all)",
            "admin(all)",
            "Read(all)",
            "read(Companies)",
            "read(companies,)",
            "read(all,companies)",
            "read(com panies)",
            "read(all",
            "read(all))",
            "read all",
        ] {
            assert!(ScopeRule::Accelo.parse(bad, &[]).is_err(), "{bad}");
        }
    }

    #[test]
    fn opaque_scopes_are_kept_verbatim() {
        let scope = ScopeRule::Opaque.parse("email  and more", &[]).unwrap();
        assert_eq!(scope.to_string(), "email  and more");
        assert!(ScopeRule::Opaque.parse("", &[]).is_err());
    }
}
