//! [`Subject`]: the user a request acts for.

use std::sync::Arc;

/// Names the user a request acts for: put it in the request's extensions, and the layer
/// attaches that user's token for the provider the request goes to.
///
/// A user with no stored grant gets [`Error::NotAuthorized`](crate::Error::NotAuthorized) and the request is not
/// sent. Requests without a `Subject` use the application's own credential.
///
/// ```
/// use tower_oauth2::Subject;
///
/// let mut request = http::Request::get("https://api.agrello.io/v1/documents").body(()).unwrap();
/// request.extensions_mut().insert(Subject::new("user-42"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subject(pub(super) Arc<str>);

impl Subject {
    /// The user with this id (the application's own id for them).
    pub fn new(subject: impl Into<Arc<str>>) -> Self {
        Self(subject.into())
    }

    /// The user's id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
