//! Grant life cycles on paused time: the code exchange, providers without refresh
//! tokens, and revocation, against in-process stand-ins.

mod support;

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use http_body_util::Full;
use tokio::time::advance;
use tower::{Layer, ServiceExt};
use tower_oauth2::{
    error::RefusedGrant, Credential, CredentialRegistry, Error, OAuth2Layer, Provider, RefreshPolicy,
    RefreshTokens, Revocation, Revoked, TokenTransport,
};

use support::*;

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

fn policy() -> RefreshPolicy {
    RefreshPolicy::default()
        .random(no_jitter)
        .backoff(Duration::from_millis(100), Duration::from_secs(1))
}

fn registry(endpoint: &TokenEndpoint, credential: Credential) -> CredentialRegistry {
    CredentialRegistry::builder()
        .credential(credential.refresh_policy(policy()))
        .transport(endpoint.transport())
        .build()
        .unwrap()
}

fn code_credential() -> Credential {
    Credential::authorization_code(
        provider(),
        "client-id",
        Some(CLIENT_SECRET.into()),
        "the-code",
        "https://app.example.com/cb",
    )
}

async fn status_of(client: &tower_oauth2::OAuth2<Api>, id: &str) -> Result<u16, Error> {
    let request = get(id);
    client.clone().oneshot(request).await.map(|r| r.status().as_u16())
}

#[tokio::test(start_paused = true)]
async fn a_code_is_exchanged_once_then_its_refresh_token_is_used() {
    let endpoint = TokenEndpoint::new(Duration::from_secs(120));
    let api = Api::new();
    let client = OAuth2Layer::new(registry(&endpoint, code_credential())).layer(api.clone());

    let ids: Vec<String> = (0..1000).map(|i| format!("r{i}")).collect();
    let results = join_all(ids.iter().map(|id| status_of(&client, id))).await;
    assert!(results.iter().all(|r| matches!(r, Ok(200))));
    assert_eq!(endpoint.requests(), 1);

    // Past the refresh point: the refresh uses the refresh token from the exchange.
    advance(Duration::from_secs(120)).await;
    settle().await;
    assert_eq!(status_of(&client, "later").await.unwrap(), 200);
    let bodies = endpoint.request_bodies();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert!(bodies[0].starts_with("grant_type=authorization_code&code=the-code&redirect_uri="));
    assert!(bodies[1].starts_with("grant_type=refresh_token&refresh_token=refresh-1"));
}

#[tokio::test(start_paused = true)]
async fn a_code_that_never_reached_the_server_is_tried_again() {
    let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
    endpoint.set_mode(Mode::Unreachable);
    let api = Api::new();
    let client = OAuth2Layer::new(registry(&endpoint, code_credential())).layer(api.clone());

    assert!(matches!(
        status_of(&client, "a").await,
        Err(Error::Unreachable(_))
    ));
    endpoint.set_mode(Mode::Ok);
    advance(Duration::from_secs(1)).await;
    assert_eq!(status_of(&client, "b").await.unwrap(), 200);
    let bodies = endpoint.request_bodies();
    assert_eq!(bodies.len(), 2);
    assert!(bodies.iter().all(|b| b.contains("code=the-code")), "{bodies:?}");
}

#[tokio::test(start_paused = true)]
async fn a_refused_code_asks_for_a_new_authorization_and_is_never_sent_again() {
    let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
    endpoint.set_mode(Mode::InvalidGrant);
    let api = Api::new();
    let client = OAuth2Layer::new(registry(&endpoint, code_credential())).layer(api.clone());

    // The error says what was refused (the code, not a refresh token) and why.
    match status_of(&client, "a").await {
        Err(Error::ReauthorizationRequired(e)) => {
            assert_eq!(e.refused(), Some(RefusedGrant::AuthorizationCode));
            assert_eq!(e.cause().map(|c| c.error()), Some("invalid_grant"));
            assert_eq!(
                e.to_string(),
                "the authorization code for `example` was refused; re-authorization required"
            );
        }
        other => panic!("{other:?}"),
    }
    endpoint.set_mode(Mode::Ok);
    for i in 0..5 {
        advance(Duration::from_secs(2)).await;
        assert!(matches!(
            status_of(&client, &format!("again-{i}")).await,
            Err(Error::ReauthorizationRequired(_))
        ));
    }
    assert_eq!(endpoint.requests(), 1, "the dead code was sent again");
    assert!(api.seen().is_empty(), "a request without a token was sent");
}

#[tokio::test(start_paused = true)]
async fn without_refresh_tokens_expiry_runs_the_grant_again() {
    let endpoint = TokenEndpoint::new(Duration::from_secs(60));
    let api = Api::new();
    // The stand-in sends a refresh token anyway; a provider that issues none is not
    // trusted to have meant it.
    let provider = provider().refresh_tokens(RefreshTokens::NotIssued);
    let credential = Credential::client_credentials(provider, "client-id", CLIENT_SECRET);
    let client = OAuth2Layer::new(registry(&endpoint, credential)).layer(api.clone());

    for round in 0..3 {
        assert_eq!(status_of(&client, &format!("r{round}")).await.unwrap(), 200);
        advance(Duration::from_secs(61)).await;
        settle().await;
    }
    let bodies = endpoint.request_bodies();
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    assert!(bodies
        .iter()
        .all(|b| b.starts_with("grant_type=client_credentials")));
}

#[tokio::test(start_paused = true)]
async fn revoke_tells_the_provider_and_forgets_the_tokens() {
    let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
    let api = Api::new();
    let provider = provider().revocation(Revocation::Rfc7009 {
        url: "https://auth.example.com/oauth/revoke".into(),
    });
    let credential = Credential::refresh_token(provider, "client-id", Some(CLIENT_SECRET.into()), "rt-0");
    let credentials = registry(&endpoint, credential);
    let client = OAuth2Layer::new(credentials.clone()).layer(api.clone());
    assert_eq!(status_of(&client, "before").await.unwrap(), 200);

    let key = credentials.keys().remove(0);
    assert_eq!(
        credentials.revoke(&key).await.unwrap(),
        Revoked::AtProvider { tokens: 2 }
    );
    assert_eq!(
        endpoint.revocations(),
        [
            "token=refresh-1&token_type_hint=refresh_token",
            "token=tok-1&token_type_hint=access_token"
        ]
    );
    // Nothing is left to refresh with: a new authorization is needed, and no request
    // goes out without a token.
    match status_of(&client, "after").await {
        Err(Error::ReauthorizationRequired(e)) => {
            assert_eq!(e.refused(), None, "nothing was refused: nothing is held");
            assert!(e.cause().is_none());
            assert_eq!(
                e.to_string(),
                "no refresh token or authorization code is held for `example`; re-authorization required"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(api.seen().len(), 1);
    assert_eq!(endpoint.requests(), 1);
}

#[tokio::test(start_paused = true)]
async fn revoke_waits_for_a_token_request_in_flight_and_revokes_its_token_too() {
    let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
    endpoint.set_delay(Duration::from_millis(200));
    let api = Api::new();
    let provider = provider().revocation(Revocation::Rfc7009 {
        url: "https://auth.example.com/oauth/revoke".into(),
    });
    let credentials = registry(
        &endpoint,
        Credential::client_credentials(provider, "client-id", CLIENT_SECRET),
    );
    let client = OAuth2Layer::new(credentials.clone()).layer(api.clone());
    let request = tokio::spawn(status_of_owned(client.clone()));
    settle().await;
    assert_eq!(endpoint.requests(), 1);

    let key = credentials.keys().remove(0);
    let revoked = credentials.revoke(&key).await.unwrap();
    assert_eq!(revoked, Revoked::AtProvider { tokens: 2 });
    assert_eq!(request.await.unwrap().unwrap(), 200);
    assert!(endpoint.revocations()[1].starts_with("token=tok-1&"));

    // A client-credentials credential simply fetches a new token afterwards.
    assert_eq!(status_of(&client, "after").await.unwrap(), 200);
    assert_eq!(endpoint.requests(), 2);
}

async fn status_of_owned(client: tower_oauth2::OAuth2<Api>) -> Result<u16, Error> {
    status_of(&client, "in-flight").await
}

#[tokio::test(start_paused = true)]
async fn revoke_without_an_endpoint_only_forgets_and_unknown_keys_are_typed_errors() {
    let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
    let api = Api::new();
    let credentials = registry(
        &endpoint,
        Credential::client_credentials(provider(), "client-id", CLIENT_SECRET),
    );
    let client = OAuth2Layer::new(credentials.clone()).layer(api.clone());
    assert_eq!(status_of(&client, "a").await.unwrap(), 200);
    let key = credentials.keys().remove(0);
    assert_eq!(credentials.revoke(&key).await.unwrap(), Revoked::LocallyOnly);
    assert!(endpoint.revocations().is_empty());
    assert_eq!(status_of(&client, "b").await.unwrap(), 200);
    assert_eq!(endpoint.requests(), 2, "the forgotten token was used again");

    let other =
        Credential::client_credentials(Provider::standard("https://other.example/token"), "x", "y").key();
    assert!(matches!(credentials.revoke(&other).await, Err(Error::Config(_))));
}

#[test]
fn keys_include_scopes_and_subject_and_must_be_unique() {
    let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
    let base = Credential::client_credentials(provider(), "client-id", CLIENT_SECRET);
    let read = base.clone().scopes(["read"]);
    let alice = base.clone().subject("alice");
    assert_ne!(base.key(), read.key());
    assert_ne!(base.key(), alice.key());
    assert_eq!(
        read.key().to_string(),
        "example/client-id/client_credentials/read"
    );
    assert_eq!(alice.key().subject(), Some("alice"));
    assert_eq!(
        base.clone().scopes(["b", "a", "b"]).key(),
        base.clone().scopes(["a", "b"]).key()
    );

    let twice = CredentialRegistry::builder()
        .credential(base.clone())
        .credential(base.clone().refresh_policy(policy()))
        .transport(endpoint.transport())
        .build();
    let err = twice.unwrap_err();
    assert!(err.to_string().contains("registered twice"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn stats_count_requests_by_grant_and_tell_the_time_to_the_refresh_point() {
    let endpoint = TokenEndpoint::new(Duration::from_secs(600));
    let api = Api::new();
    let credentials = registry(&endpoint, code_credential());
    let client = OAuth2Layer::new(credentials.clone()).layer(api.clone());
    assert_eq!(credentials.stats()[0].until_refresh, None);
    assert_eq!(status_of(&client, "a").await.unwrap(), 200);
    // A 600 s token is refreshed 60 s before it expires.
    assert_eq!(
        credentials.stats()[0].until_refresh,
        Some(Duration::from_secs(540))
    );
    advance(Duration::from_secs(100)).await;
    assert_eq!(
        credentials.stats()[0].until_refresh,
        Some(Duration::from_secs(440))
    );
    credentials.invalidate_all();
    assert_eq!(status_of(&client, "b").await.unwrap(), 200);
    let stats = &credentials.stats()[0];
    assert_eq!(
        (
            stats.token_requests,
            stats.authorization_code_requests,
            stats.refresh_token_requests,
            stats.client_credentials_requests
        ),
        (2, 1, 1, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_refresh_token_is_named_as_such() {
    let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
    endpoint.set_mode(Mode::InvalidGrant);
    let credential = Credential::refresh_token(provider(), "client-id", Some(CLIENT_SECRET.into()), "rt-0");
    let client = OAuth2Layer::new(registry(&endpoint, credential)).layer(Api::new());
    match status_of(&client, "a").await {
        Err(Error::ReauthorizationRequired(e)) => {
            assert_eq!(e.refused(), Some(RefusedGrant::RefreshToken));
            assert_eq!(e.cause().map(|c| c.error()), Some("invalid_grant"));
            assert_eq!(
                e.to_string(),
                "the refresh token for `example` was refused; re-authorization required"
            );
        }
        other => panic!("{other:?}"),
    }
}

/// iOFFICE sends refresh tokens back in a header. A rotated one that no header can
/// carry is the server's fault, seen when it arrives: not a configuration error at the
/// next refresh.
#[tokio::test(start_paused = true)]
async fn a_refresh_token_a_header_cannot_carry_is_a_malformed_answer() {
    let transport = TokenTransport::new(tower::service_fn(|_req: http::Request<Full<Bytes>>| async {
        let body = r#"{"access_token":"tok-1","expires_in":3600000,"refresh_token":"rt\u0001bad"}"#;
        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from_static(
            body.as_bytes(),
        ))))
    }));
    let provider = tower_oauth2::providers::ioffice("https://site.example.com")
        .api_origins([API])
        .token_placement(tower_oauth2::TokenPlacement::AuthorizationBearer);
    let credential = Credential::refresh_token(provider, "client-id", Some(CLIENT_SECRET.into()), "rt-0")
        .redirect_uri("https://app.example.com/cb");
    let credentials = CredentialRegistry::builder()
        .credential(credential)
        .transport(transport)
        .build()
        .unwrap();
    let api = Api::new();
    let client = OAuth2Layer::new(credentials).layer(api.clone());
    match status_of(&client, "a").await {
        Err(Error::Malformed(e)) => {
            assert_eq!(e.reason(), "`refresh_token` has characters a header cannot carry");
        }
        other => panic!("{other:?}"),
    }
    assert!(api.seen().is_empty());
}
