//! Accelo's scope syntax.
//!
//! Accelo scopes are `read(...)` and `write(...)` groups naming resources (or `all`),
//! joined by commas: `read(all),write(companies,contacts)`. [`AcceloScope`] builds
//! them so that the punctuation is always right.
//!
//! ```
//! use tower_oauth2::providers::accelo::AcceloScope;
//!
//! let scope = AcceloScope::read_all().and(AcceloScope::write(["companies", "contacts"]));
//! assert_eq!(scope.to_string(), "read(all),write(companies,contacts)");
//! ```

use std::fmt;

/// A set of Accelo scopes: what may be read and what may be written.
///
/// Pass it to [`Credential::scopes`](crate::Credential::scopes); it becomes one scope
/// string. Resource names are lowercased; a name that is not made of letters, digits
/// and `_` is refused by the Accelo token endpoint with `invalid_scope`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcceloScope {
    read: Access,
    write: Access,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Access {
    #[default]
    Nothing,
    All,
    Resources(Vec<String>),
}

impl Access {
    fn merge(self, other: Access) -> Access {
        match (self, other) {
            (Access::All, _) | (_, Access::All) => Access::All,
            (Access::Nothing, other) | (other, Access::Nothing) => other,
            (Access::Resources(mut a), Access::Resources(b)) => {
                a.extend(b);
                a.sort();
                a.dedup();
                Access::Resources(a)
            }
        }
    }

    fn resources<I, S>(resources: I) -> Access
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut names: Vec<String> = resources
            .into_iter()
            .map(|r| r.as_ref().trim().to_ascii_lowercase())
            .collect();
        names.sort();
        names.dedup();
        if names.iter().any(|n| n == "all") {
            Access::All
        } else if names.is_empty() {
            Access::Nothing
        } else {
            Access::Resources(names)
        }
    }

    fn write_group(&self, verb: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Access::Nothing => Ok(()),
            Access::All => write!(f, "{verb}(all)"),
            Access::Resources(names) => write!(f, "{verb}({})", names.join(",")),
        }
    }
}

impl AcceloScope {
    /// Read-only access to everything the user can see: `read(all)`.
    pub fn read_all() -> Self {
        Self {
            read: Access::All,
            ..Self::default()
        }
    }

    /// Read and write access to everything: `write(all)`.
    pub fn write_all() -> Self {
        Self {
            write: Access::All,
            ..Self::default()
        }
    }

    /// Read-only access to the named resources: `read(companies,contacts)`.
    pub fn read<I, S>(resources: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self {
            read: Access::resources(resources),
            ..Self::default()
        }
    }

    /// Read and write access to the named resources: `write(contacts,issues)`.
    pub fn write<I, S>(resources: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self {
            write: Access::resources(resources),
            ..Self::default()
        }
    }

    /// Both sets of permissions together.
    pub fn and(self, other: AcceloScope) -> Self {
        Self {
            read: self.read.merge(other.read),
            write: self.write.merge(other.write),
        }
    }
}

impl fmt::Display for AcceloScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.read.write_group("read", f)?;
        if self.read != Access::Nothing && self.write != Access::Nothing {
            f.write_str(",")?;
        }
        self.write.write_group("write", f)
    }
}

impl From<AcceloScope> for String {
    fn from(scope: AcceloScope) -> String {
        scope.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_printed_in_accelo_syntax() {
        assert_eq!(AcceloScope::read_all().to_string(), "read(all)");
        assert_eq!(
            AcceloScope::write(["Contacts", "issues", "contacts"]).to_string(),
            "write(contacts,issues)"
        );
        assert_eq!(
            AcceloScope::read(["companies"])
                .and(AcceloScope::read(["all"]))
                .and(AcceloScope::write(["companies"]))
                .and(AcceloScope::write(["contacts"]))
                .to_string(),
            "read(all),write(companies,contacts)"
        );
        assert_eq!(AcceloScope::read(Vec::<String>::new()).to_string(), "");
    }
}
