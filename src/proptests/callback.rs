//! Authorization callbacks: `PendingAuthorization::complete` reading a callback URL, its
//! query or its fragment, and the raw query as the axum callback route hands it over.

use proptest::{collection::vec, prelude::*, sample::select};

use super::{config, hostile_string};
use crate::{
    authorize::PendingAuthorization,
    error::{AuthorizationErrorKind, Error},
    invariants::has_control,
    Provider,
};

fn pending() -> PendingAuthorization {
    Provider::standard("https://auth.example.com/token")
        .authorize_url("https://auth.example.com/authorize")
        .authorization("app", "https://app.example.com/callback")
        .start()
        .expect("the provider has an authorization URL")
}

/// How the callback reaches `complete`.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// `https://app.example.com/callback?<query>`
    Url,
    /// `?<query>`
    Query,
    /// `<query>`: what the axum route passes (its raw query).
    Bare,
    /// `#<query>`: iOFFICE's fragment, handed over by the page script.
    Fragment,
    /// `https://app.example.com/callback?iss=x#<query>`
    UrlAndFragment,
}

fn shape() -> BoxedStrategy<Shape> {
    select(vec![
        Shape::Url,
        Shape::Query,
        Shape::Bare,
        Shape::Fragment,
        Shape::UrlAndFragment,
    ])
    .boxed()
}

fn callback(shape: Shape, params: &[(String, String)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        query.append_pair(name, value);
    }
    let query = query.finish();
    match shape {
        Shape::Url => format!("https://app.example.com/callback?{query}"),
        Shape::Query => format!("?{query}"),
        Shape::Bare => query,
        Shape::Fragment => format!("#{query}"),
        Shape::UrlAndFragment => format!("https://app.example.com/callback?iss=x#{query}"),
    }
}

/// Parameters a provider may add, none of them `code`, `state` or `error`.
fn extras() -> BoxedStrategy<Vec<(String, String)>> {
    vec(
        (
            prop_oneof![
                hostile_string(),
                select(vec!["iss", "session_state", "scope"]).prop_map(str::to_owned)
            ]
            .prop_filter("not a parameter `complete` reads", |name| {
                !["code", "state", "error", "error_description"].contains(&name.as_str())
            }),
            hostile_string(),
        ),
        0..4,
    )
    .boxed()
}

/// A code as a provider would issue it, or anything non-empty.
fn code() -> BoxedStrategy<String> {
    prop_oneof![
        "code_[A-Za-z0-9._~+/=-]{8,40}",
        hostile_string().prop_filter("a code is not empty", |c| !c.is_empty()),
    ]
    .boxed()
}

/// How a callback's `state` misses the one sent.
#[derive(Debug, Clone)]
enum Miss {
    Absent,
    Empty,
    Truncated,
    Extended,
    Spaced,
    Uppercase,
    Replaced(prop::sample::Index, char),
    Other(String),
}

fn miss() -> BoxedStrategy<Miss> {
    prop_oneof![
        Just(Miss::Absent),
        Just(Miss::Empty),
        Just(Miss::Truncated),
        Just(Miss::Extended),
        Just(Miss::Spaced),
        Just(Miss::Uppercase),
        (any::<prop::sample::Index>(), any::<char>()).prop_map(|(at, c)| Miss::Replaced(at, c)),
        hostile_string().prop_map(Miss::Other),
    ]
    .boxed()
}

/// The `state` a callback carries instead of `state`, or none.
fn missed(state: &str, miss: &Miss) -> Option<String> {
    let wrong = match miss {
        Miss::Absent => return None,
        Miss::Empty => String::new(),
        Miss::Truncated => state[..state.len() - 1].to_owned(),
        Miss::Extended => format!("{state}x"),
        Miss::Spaced => format!(" {state}"),
        Miss::Uppercase => state.to_ascii_uppercase(),
        Miss::Replaced(at, c) => {
            let mut chars: Vec<char> = state.chars().collect();
            let at = at.index(chars.len());
            chars[at] = if chars[at] == *c { '!' } else { *c };
            chars.into_iter().collect()
        }
        Miss::Other(other) => other.clone(),
    };
    Some(wrong)
}

/// What the error shows, checked: no control character, never the code or the state.
fn assert_clean(err: &Error, code: &str, state: &str) -> Result<(), TestCaseError> {
    for shown in [err.to_string(), format!("{err:?}")] {
        prop_assert!(!has_control(&shown), "control character in {:?}", shown);
        prop_assert!(!shown.contains(state), "the state in {:?}", shown);
        prop_assert!(code.len() < 4 || !shown.contains(code), "the code in {:?}", shown);
    }
    Ok(())
}

fn kind(outcome: Result<crate::authorize::AuthorizedCode, Error>) -> Option<AuthorizationErrorKind> {
    match outcome {
        Err(Error::Authorization(e)) => Some(e.kind()),
        _ => None,
    }
}

proptest! {
    #![proptest_config(config(1024))]

    /// Anything at all, alone or around the right state: `complete` answers, and a
    /// refusal shows no control character and not the state.
    #[test]
    fn any_callback_is_a_code_or_a_clean_refusal(
        before in hostile_string(),
        after in hostile_string(),
        with_state in any::<bool>(),
    ) {
        let pending = pending();
        let state = pending.state().to_owned();
        let callback = if with_state { format!("{before}state={state}{after}") } else { format!("{before}{after}") };
        match pending.complete(&callback) {
            Ok(_) => prop_assert!(with_state),
            Err(err) => {
                prop_assert!(matches!(err, Error::Authorization(_)));
                for shown in [err.to_string(), format!("{err:?}")] {
                    prop_assert!(!has_control(&shown), "control character in {:?}", shown);
                    prop_assert!(!shown.contains(&state), "the state in {:?}", shown);
                }
            }
        }
    }

    /// With the state it sent, `complete` returns the code exactly, whatever its
    /// characters (percent-encoded in the callback), in every shape of callback.
    #[test]
    fn the_right_state_yields_the_code_exactly(
        code in code(),
        extras in extras(),
        shape in shape(),
        order in any::<prop::sample::Index>(),
    ) {
        let pending = pending();
        let mut params = extras;
        let at = order.index(params.len() + 1);
        params.insert(at, ("code".to_owned(), code.clone()));
        params.insert(order.index(params.len() + 1), ("state".to_owned(), pending.state().to_owned()));
        let callback = callback(shape, &params);
        let authorized = pending
            .complete(&callback)
            .map_err(|e| TestCaseError::fail(format!("refused {shape:?}: {e}")))?;
        let pending_code = authorized.into_pending();
        prop_assert_eq!(pending_code.code.secret(), code.as_str());
    }

    /// Without the exact state (none, a near miss, or the right one only after a wrong
    /// one), a callback is refused as a state mismatch, whatever else it carries, and
    /// the refusal shows neither the code nor either state.
    #[test]
    fn without_the_exact_state_a_callback_is_refused(
        miss in miss(),
        code in code(),
        error in prop::option::of(hostile_string()),
        right_later in any::<bool>(),
        extras in extras(),
        shape in shape(),
    ) {
        let pending = pending();
        let state = pending.state().to_owned();
        let wrong = missed(&state, &miss);
        // An all-uppercase state would come out unchanged: one chance in 2^100 or so.
        prop_assume!(wrong.as_deref() != Some(state.as_str()));
        let mut params = extras;
        if let Some(wrong) = &wrong {
            params.push(("state".to_owned(), wrong.clone()));
            if right_later {
                params.push(("state".to_owned(), state.clone()));
            }
        }
        params.push(("code".to_owned(), code.clone()));
        if let Some(error) = &error {
            params.push(("error".to_owned(), error.clone()));
        }
        let outcome = pending.complete(&callback(shape, &params));
        let err = match outcome {
            Err(err) => err,
            Ok(_) => return Err(TestCaseError::fail(format!("accepted with state {wrong:?}"))),
        };
        prop_assert_eq!(kind(Err(err.clone())), Some(AuthorizationErrorKind::StateMismatch));
        assert_clean(&err, &code, &state)?;
        if let Some(wrong) = wrong.filter(|w| w.len() >= 8) {
            let shown = format!("{err} {err:?}");
            prop_assert!(!shown.contains(&wrong), "the wrong state in {:?}", shown);
        }
    }

    /// With the right state and an `error`, the refusal is `Denied`, and what the
    /// provider wrote is shown without control characters, never with the state.
    #[test]
    fn a_denial_is_shown_clean(
        error in hostile_string(),
        description in prop::option::of(hostile_string()),
        shape in shape(),
    ) {
        let pending = pending();
        let state = pending.state().to_owned();
        let mut params = vec![("state".to_owned(), state.clone()), ("error".to_owned(), error)];
        if let Some(description) = description {
            params.push(("error_description".to_owned(), description));
        }
        let err = match pending.complete(&callback(shape, &params)) {
            Err(err) => err,
            Ok(_) => return Err(TestCaseError::fail("accepted a denial")),
        };
        prop_assert_eq!(kind(Err(err.clone())), Some(AuthorizationErrorKind::Denied));
        assert_clean(&err, "", &state)?;
    }
}

// ===== regressions =====

/// RFC 3986 allows `?` unencoded in a query, and a form-urlencoded parser reads it as
/// itself. The axum route passes the raw query, without its leading `?`, and `complete`
/// then takes the first `?` inside a value for the start of the query.
#[test]
fn a_bare_query_with_a_literal_question_mark_keeps_its_parameters() {
    let pending = pending();
    let query = format!(
        "code=abc&state={}&iss=https://idp.example/?tenant=1",
        pending.state()
    );
    let code = pending
        .complete(&query)
        .expect("the bare query carries the state and the code");
    assert_eq!(code.into_pending().code.secret(), "abc");
}
