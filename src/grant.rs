//! Token requests in a provider's dialect, and reading their answers.

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;

use crate::{
    error::{Error, MalformedResponse, ReauthorizationRequired, UnreachableError},
    provider::{ClientAuth, Credential, Grant},
    secret::RefreshToken,
    token::{parse_token_response, ResponseRules, TokenSet},
    transport::{TokenRequest, TokenTransport},
};

/// A credential with its configuration checked and parsed, ready to request tokens.
#[derive(Debug)]
pub(crate) struct GrantConfig {
    pub(crate) credential: Credential,
    pub(crate) token_url: Uri,
    pub(crate) rules: ResponseRules,
}

impl GrantConfig {
    pub(crate) fn new(credential: Credential) -> Result<Self, Error> {
        let provider = &credential.provider;
        crate::origin::Origin::parse("token URL", &provider.token_url)?;
        let token_url: Uri = provider
            .token_url
            .parse()
            .map_err(|_| Error::config(format!("token URL `{}` is not a valid URL", provider.token_url)))?;
        if credential.client_id.is_empty() {
            return Err(Error::config(format!(
                "client id for `{}` is empty",
                provider.name
            )));
        }
        if provider.client_auth != ClientAuth::None && credential.client_secret.is_none() {
            return Err(Error::config(format!(
                "`{}` authenticates clients with a secret, but none was given",
                provider.name
            )));
        }
        if let Some(bad) = credential.scopes.iter().find(|s| !is_scope_token(s)) {
            return Err(Error::config(format!(
                "scope `{bad}` is not a valid scope token (RFC 6749 §3.3)"
            )));
        }
        let rules = ResponseRules {
            provider: provider.name.clone(),
            expires_in: provider.expires_in,
            lifetimes: provider.lifetimes,
        };
        Ok(Self {
            credential,
            token_url,
            rules,
        })
    }

    pub(crate) fn provider_name(&self) -> &Arc<str> {
        &self.rules.provider
    }

    /// Builds the token request: `client_credentials`, or `refresh_token` when one is held.
    pub(crate) fn request(&self, refresh_token: Option<&RefreshToken>) -> Result<TokenRequest, Error> {
        let cred = &self.credential;
        let mut form = form_urlencoded::Serializer::new(String::new());
        match refresh_token {
            Some(refresh_token) => {
                form.append_pair("grant_type", "refresh_token");
                form.append_pair("refresh_token", refresh_token.secret());
            }
            None => {
                form.append_pair("grant_type", "client_credentials");
            }
        }
        if !cred.scopes.is_empty() {
            form.append_pair("scope", &cred.scopes.join(" "));
        }

        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(self.token_url.clone())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json");

        match cred.provider.client_auth {
            ClientAuth::Basic => {
                let secret = cred
                    .client_secret
                    .as_ref()
                    .map(|s| s.secret())
                    .unwrap_or_default();
                // RFC 6749 §2.3.1: id and secret are form-encoded before being joined.
                let pair = format!("{}:{}", form_encode(&cred.client_id), form_encode(secret));
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                let mut value = HeaderValue::try_from(format!("Basic {encoded}"))
                    .map_err(|_| Error::config("client credentials cannot form a header"))?;
                value.set_sensitive(true);
                builder = builder.header(header::AUTHORIZATION, value);
            }
            ClientAuth::RequestBody => {
                form.append_pair("client_id", &cred.client_id);
                if let Some(secret) = &cred.client_secret {
                    form.append_pair("client_secret", secret.secret());
                }
            }
            ClientAuth::None => {
                form.append_pair("client_id", &cred.client_id);
            }
        }

        builder
            .body(Full::new(Bytes::from(form.finish())))
            .map_err(|_| Error::config("token request could not be built"))
    }

    /// Sends one token request and reads the answer. `held` is the refresh token in use.
    pub(crate) async fn fetch(
        &self,
        transport: &TokenTransport,
        held: Option<&RefreshToken>,
    ) -> Result<TokenSet, Error> {
        let refresh_token = match (&self.credential.grant, held) {
            (Grant::ClientCredentials, _) => None,
            (Grant::RefreshToken(_), Some(held)) => Some(held),
            // Never fall back to another grant: without a refresh token, only a new
            // authorization helps.
            (Grant::RefreshToken(_), None) => {
                return Err(Error::ReauthorizationRequired(ReauthorizationRequired {
                    provider: self.provider_name().clone(),
                    cause: None,
                }))
            }
        };
        let request = self.request(refresh_token)?;
        let provider = self.provider_name().clone();
        let response = transport.send(request).await.map_err(|source| {
            Error::Unreachable(UnreachableError {
                provider: provider.clone(),
                backoff: None,
                source: Some(share(source)),
            })
        })?;
        let (parts, body) = response.into_parts();
        let max = self.credential.provider.max_response_bytes;
        let mut body = body;
        let mut buf = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|source| {
                Error::Unreachable(UnreachableError {
                    provider: provider.clone(),
                    backoff: None,
                    source: Some(share(source)),
                })
            })?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > max {
                    return Err(Error::Malformed(MalformedResponse {
                        provider,
                        status: parts.status,
                        content_type: None,
                        reason: format!("the body is larger than {max} bytes"),
                    }));
                }
                buf.extend_from_slice(&data);
            }
        }
        let body = buf;
        if parts.status.is_redirection() {
            return Err(Error::Malformed(MalformedResponse {
                provider,
                status: parts.status,
                content_type: None,
                reason: "redirects are not followed on token requests".into(),
            }));
        }
        let mut tokens =
            parse_token_response(&self.rules, parts.status, &parts.headers, &body, Instant::now()).map_err(
                |err| match (err, refresh_token) {
                    (Error::OAuth(oauth), Some(_)) if oauth.error() == "invalid_grant" => {
                        Error::ReauthorizationRequired(ReauthorizationRequired {
                            provider: oauth.provider.clone(),
                            cause: Some(oauth),
                        })
                    }
                    (err, _) => err,
                },
            )?;
        if tokens.refresh_token().is_none() {
            // An answer without a refresh token keeps the one that was used (RFC 6749 §6).
            tokens.set_refresh_token(refresh_token.cloned());
        }
        Ok(tokens)
    }
}

fn share(error: crate::error::BoxError) -> Arc<dyn std::error::Error + Send + Sync + 'static> {
    Arc::from(error)
}

fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{provider::Provider, secret::ClientSecret};

    fn body_of(req: &TokenRequest) -> String {
        let collected = futures_util::FutureExt::now_or_never(req.body().clone().collect())
            .unwrap()
            .unwrap();
        String::from_utf8(collected.to_bytes().to_vec()).unwrap()
    }

    #[test]
    fn basic_auth_form_encodes_id_and_secret() {
        let provider = Provider::standard("https://auth.example/token");
        let cred = Credential::client_credentials(provider, "my id:1", ClientSecret::new("p@ss word+%"))
            .scopes(["write", "read"]);
        let config = GrantConfig::new(cred).unwrap();
        let req = config.request(None).unwrap();
        let auth = req.headers()[header::AUTHORIZATION].clone();
        assert!(auth.is_sensitive());
        let b64 = auth.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let decoded = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), "my+id%3A1:p%40ss+word%2B%25");
        assert_eq!(body_of(&req), "grant_type=client_credentials&scope=read+write");
        assert_eq!(
            req.headers()[header::CONTENT_TYPE],
            "application/x-www-form-urlencoded"
        );
    }

    #[test]
    fn body_auth_and_public_clients() {
        let provider = Provider::standard("https://auth.example/token").client_auth(ClientAuth::RequestBody);
        let config = GrantConfig::new(Credential::client_credentials(provider, "id", "s")).unwrap();
        let req = config.request(None).unwrap();
        assert!(req.headers().get(header::AUTHORIZATION).is_none());
        assert_eq!(
            body_of(&req),
            "grant_type=client_credentials&client_id=id&client_secret=s"
        );

        let provider = Provider::standard("https://auth.example/token").client_auth(ClientAuth::None);
        let config = GrantConfig::new(Credential::refresh_token(provider, "id", None, "rt")).unwrap();
        let req = config.request(Some(&RefreshToken::new("r t"))).unwrap();
        assert_eq!(
            body_of(&req),
            "grant_type=refresh_token&refresh_token=r+t&client_id=id"
        );
    }

    #[test]
    fn configuration_is_checked() {
        let insecure = Provider::standard("http://auth.example/token");
        assert!(GrantConfig::new(Credential::client_credentials(insecure, "id", "s")).is_err());
        let provider = Provider::standard("https://auth.example/token");
        assert!(GrantConfig::new(Credential::client_credentials(provider.clone(), "", "s")).is_err());
        let bad_scope = Credential::client_credentials(provider.clone(), "id", "s").scopes(["a b"]);
        assert!(GrantConfig::new(bad_scope).is_err());
        let no_secret = Credential::refresh_token(provider, "id", None, "rt");
        assert!(GrantConfig::new(no_secret).is_err());
    }
}
