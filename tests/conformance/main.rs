//! One conformance suite for both adapters: every behaviour here is written once and run
//! against the tower layer (over hyper-util's client) and the reqwest middleware, over
//! real HTTP to the strict mock server on 127.0.0.1. Each `both!` test becomes a module
//! with two tests, `tower` and `reqwest`.
//!
//! - `single_flight`: concurrent callers at cold start, at expiry and in the refresh
//!   window cause one token request.
//! - `storm`: concurrent callers given a dead-token answer cause one refresh.
//! - `retries`: retry once, a second dead answer returned as is, bodies that cannot be
//!   replayed sent once, retries off; origins that get no token.
//! - `subjects`: each user's requests carry that user's token, refreshed once per user.
//! - `secrecy`: no token or secret in `Debug`, errors or logs.
//! - `dead_in_body`: Grindery's dead tokens, declared in a `400` body.
//! - `dpop` (feature `jose`): DPoP-bound tokens, a proof per request, both nonce flows.
#![cfg(all(feature = "hyper-transport", feature = "reqwest"))]

#[path = "../support/adapter.rs"]
mod adapter;
#[path = "../support/mod.rs"]
mod support;

/// Runs tests once per adapter: `both!(a, b)` next to `async fn a(kind: Kind)` and
/// `async fn b(kind: Kind)` makes the modules `a` and `b`, each with the tests `tower`
/// and `reqwest`, which call the function with their `Kind`; `both!(multi_thread: a)`
/// runs them on two worker threads.
macro_rules! both {
    (multi_thread: $($name:ident),+ $(,)?) => {
        $(both!(@one $name, #[tokio::test(flavor = "multi_thread", worker_threads = 2)]);)+
    };
    ($($name:ident),+ $(,)?) => {
        $(both!(@one $name, #[tokio::test]);)+
    };
    (@one $name:ident, #[$test:meta]) => {
        mod $name {
            #[$test]
            async fn tower() {
                super::$name($crate::adapter::Kind::Tower).await
            }

            #[$test]
            async fn reqwest() {
                super::$name($crate::adapter::Kind::Reqwest).await
            }
        }
    };
}

mod common;
mod dead_in_body;
#[cfg(feature = "jose")]
mod dpop;
mod retries;
mod secrecy;
mod single_flight;
mod storm;
mod subjects;
