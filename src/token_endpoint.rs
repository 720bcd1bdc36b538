//! Talking to a provider's token and revocation endpoints: a credential's configuration
//! checked once ([`CheckedCredential`]), each token request built in the provider's
//! dialect from what it presents ([`GrantInput`]), and its answer read.

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;

use crate::{
    error::{Error, MalformedResponse, ReauthorizationRequired, RefusedGrant, UnreachableError},
    grant::GrantType,
    provider::{ClientAuth, ParameterEncoding, RefreshTokens, Revocation},
    redact::{without_userinfo, Redactor},
    secret::{AuthorizationCode, PkceVerifier, RefreshToken},
    token::{parse_token_response, ResponseRules, TokenSet},
    transport::{TokenRequest, TokenTransport},
    Credential, Grant,
};

/// What the next token request presents: the grant's input.
#[derive(Debug, Clone)]
pub(crate) enum GrantInput {
    ClientCredentials,
    Refresh(RefreshToken),
    Code(PendingCode),
}

/// An authorization code waiting to be exchanged.
#[derive(Debug, Clone)]
pub(crate) struct PendingCode {
    pub(crate) code: AuthorizationCode,
    pub(crate) redirect_uri: String,
    pub(crate) pkce_verifier: Option<PkceVerifier>,
}

impl GrantInput {
    /// Which grant this is, without its secrets.
    pub(crate) fn grant_type(&self) -> GrantType {
        match self {
            GrantInput::ClientCredentials => GrantType::ClientCredentials,
            GrantInput::Refresh(_) => GrantType::RefreshToken,
            GrantInput::Code(..) => GrantType::AuthorizationCode,
        }
    }
}

/// A credential with its configuration checked and parsed, ready to request tokens.
#[derive(Debug)]
pub(crate) struct CheckedCredential {
    pub(crate) credential: Credential,
    pub(crate) token_url: Uri,
    pub(crate) scope: Option<String>,
    pub(crate) rules: ResponseRules,
    /// What signs the JWT client assertions, when the client authenticates with one.
    #[cfg(feature = "jose")]
    assertion_signer: Option<crate::client_assertion::Signer>,
}

impl CheckedCredential {
    pub(crate) fn new(credential: Credential) -> Result<Self, Error> {
        let provider = &credential.client.provider;
        if let Some(reason) = &provider.invalid {
            return Err(Error::config(reason.to_string()));
        }
        if provider.name.is_empty() || provider.name.chars().any(char::is_control) {
            // The name is in every log line and error of the credential.
            return Err(Error::config(format!(
                "provider name `{}` is empty or has control characters",
                provider.name
            )));
        }
        let lifetimes = provider.lifetimes;
        if lifetimes.min > lifetimes.max || !(lifetimes.min..=lifetimes.max).contains(&lifetimes.default) {
            return Err(Error::config(format!(
                "the token lifetimes of `{}` do not hold together: min {:?} <= default {:?} <= max {:?}",
                provider.name, lifetimes.min, lifetimes.default, lifetimes.max
            )));
        }
        let token_url = checked_url("token URL", &provider.token_url)?;
        if let Some(url) = &provider.authorize_url {
            checked_url("authorization URL", url)?;
        }
        if let Some(Revocation::Rfc7009 { url } | Revocation::Header { url, .. }) = &provider.revocation {
            checked_url("revocation URL", url)?;
        }
        if credential.client.client_id.is_empty() && provider.client_auth != ClientAuth::None {
            return Err(Error::config(format!(
                "client id for `{}` is empty",
                provider.name
            )));
        }
        let needs_secret = match provider.client_auth {
            ClientAuth::Basic | ClientAuth::RequestBody => true,
            #[cfg(feature = "jose")]
            ClientAuth::ClientSecretJwt(_) => true,
            _ => false,
        };
        if needs_secret && credential.client.client_secret.is_none() {
            return Err(Error::config(format!(
                "`{}` authenticates clients with a secret, but none was given",
                provider.name
            )));
        }
        let scopes = credential.requested_scopes();
        if let Some(bad) = scopes.iter().find(|s| !is_scope_token(s)) {
            return Err(Error::config(format!(
                "scope `{bad}` is not a valid scope token (RFC 6749 §3.3)"
            )));
        }
        let needs_refresh_tokens = !matches!(credential.grant, Grant::ClientCredentials);
        if needs_refresh_tokens && provider.refresh_tokens == RefreshTokens::NotIssued {
            return Err(Error::config(format!(
                "`{}` issues no refresh tokens; use the client credentials grant",
                provider.name
            )));
        }
        if provider.repeat_authorization_params
            && needs_refresh_tokens
            && credential.client.redirect_uri.is_none()
        {
            return Err(Error::config(format!(
                "`{}` wants the redirect URI on every token request; set `Credential::redirect_uri`",
                provider.name
            )));
        }
        #[cfg(feature = "jose")]
        let dpop = credential.client.dpop.is_some();
        #[cfg(not(feature = "jose"))]
        let dpop = false;
        if dpop && provider.placement != crate::provider::TokenPlacement::AuthorizationBearer {
            return Err(Error::config(format!(
                "`{}` places tokens outside the Authorization header, where a DPoP-bound token cannot go",
                provider.name
            )));
        }
        let rules = ResponseRules {
            provider: provider.name.clone(),
            expires_in: provider.expires_in,
            lifetimes: provider.lifetimes,
            dpop,
        };
        let scope = (!scopes.is_empty()).then(|| provider.scope_syntax.join(&scopes));
        #[cfg(feature = "jose")]
        let assertion_signer = crate::client_assertion::Signer::new(&credential)?;
        Ok(Self {
            credential,
            token_url,
            scope,
            rules,
            #[cfg(feature = "jose")]
            assertion_signer,
        })
    }

    /// A new JWT client assertion, when the client authenticates with one: built for
    /// each request, never reused, so a retried request carries a fresh `jti`.
    fn client_assertion(&self) -> Result<Option<String>, Error> {
        #[cfg(feature = "jose")]
        if let Some(signer) = &self.assertion_signer {
            return signer.sign(&self.credential.client.client_id).map(Some);
        }
        Ok(None)
    }

    pub(crate) fn provider_name(&self) -> &Arc<str> {
        &self.rules.provider
    }

    /// What the first token request presents.
    pub(crate) fn initial_input(&self) -> (Option<RefreshToken>, Option<PendingCode>) {
        match &self.credential.grant {
            Grant::ClientCredentials => (None, None),
            Grant::RefreshToken(rt) => (Some(rt.clone()), None),
            Grant::AuthorizationCode {
                code,
                redirect_uri,
                pkce_verifier,
            } => (
                None,
                Some(PendingCode {
                    code: code.clone(),
                    redirect_uri: redirect_uri.clone(),
                    pkce_verifier: pkce_verifier.clone(),
                }),
            ),
        }
    }

    /// Builds the token request for `input`, in the provider's dialect, with a new
    /// client assertion if the client authenticates with one.
    #[cfg(test)]
    pub(crate) fn request(&self, input: &GrantInput) -> Result<TokenRequest, Error> {
        let assertion = self.client_assertion()?;
        self.build_request(input, assertion.as_deref())
    }

    /// Builds the token request for `input`, with a new client assertion if the client
    /// authenticates with one; the assertion joins `redactor`.
    #[cfg_attr(not(feature = "jose"), allow(unused_variables))]
    fn request_redacted(&self, input: &GrantInput, redactor: &mut Redactor) -> Result<TokenRequest, Error> {
        let assertion = self.client_assertion()?;
        #[cfg(feature = "jose")]
        if let Some(assertion) = &assertion {
            redact_jws(redactor, assertion);
        }
        self.build_request(input, assertion.as_deref())
    }

    /// Builds the token request for `input`, in the provider's dialect, carrying
    /// `assertion` if the client authenticates with one.
    fn build_request(&self, input: &GrantInput, assertion: Option<&str>) -> Result<TokenRequest, Error> {
        let cred = &self.credential;
        let provider = &cred.client.provider;
        let repeat = provider.repeat_authorization_params;
        let mut params: Params<'_> = vec![("grant_type", input.grant_type().as_str())];
        match input {
            GrantInput::ClientCredentials => {}
            GrantInput::Refresh(refresh_token) => {
                params.push(("refresh_token", refresh_token.secret()));
                if repeat {
                    if let Some(uri) = &cred.client.redirect_uri {
                        params.push(("redirect_uri", uri));
                    }
                }
            }
            GrantInput::Code(pending) => {
                params.push(("code", pending.code.secret()));
                params.push(("redirect_uri", &pending.redirect_uri));
                if let Some(verifier) = &pending.pkce_verifier {
                    params.push(("code_verifier", verifier.secret()));
                }
            }
        }
        // RFC 6749 asks for the scope on client credentials and refresh requests, not on
        // the code exchange (the code carries it); some dialects repeat it everywhere.
        if let Some(scope) = &self.scope {
            if repeat || !matches!(input, GrantInput::Code(..)) {
                params.push(("scope", scope));
            }
        }
        let (basic, client_params) = client_authentication(cred, assertion)?;
        params.extend(client_params);

        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(self.token_url.clone())
            .header(header::ACCEPT, "application/json");
        if let Some(basic) = basic {
            builder = builder.header(header::AUTHORIZATION, basic);
        }
        let body = match &provider.encoding {
            ParameterEncoding::Form => {
                builder = builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                let mut form = form_urlencoded::Serializer::new(String::new());
                for (name, value) in &params {
                    form.append_pair(name, value);
                }
                Bytes::from(form.finish())
            }
            ParameterEncoding::Headers(names) => {
                builder = builder.header(header::CONTENT_TYPE, names.request_content_type().clone());
                for (name, value) in &params {
                    let header = names.header_for(name).ok_or_else(|| {
                        Error::config(format!("parameter `{name}` has no valid header name"))
                    })?;
                    builder = builder.header(header, parameter_header(name, value)?);
                }
                Bytes::new()
            }
        };
        #[cfg(feature = "jose")]
        if let Some(proof) = self.dpop_proof() {
            builder = builder.header(crate::dpop::DPOP, proof);
        }
        builder
            .body(Full::new(body))
            .map_err(|_| Error::config("token request could not be built"))
    }

    /// A DPoP proof for a token request, if the credential is DPoP-bound.
    #[cfg(feature = "jose")]
    fn dpop_proof(&self) -> Option<HeaderValue> {
        let key = self.credential.client.dpop.as_ref()?;
        let target = crate::dpop::ProofTarget::token_endpoint(&self.token_url)?;
        key.binding().proof("POST", &target, None)
    }

    /// Sends the token request for `input`; for a DPoP-bound credential, remembers the
    /// nonce the answer carries, and sends the request once more, with a new proof, if
    /// the answer asks for a nonce (RFC 9449 §8). The proofs sent join `redactor`.
    async fn send_token_request(
        &self,
        transport: &TokenTransport,
        input: &GrantInput,
        redactor: &mut Redactor,
    ) -> Result<(http::StatusCode, http::HeaderMap, Vec<u8>), Error> {
        let request = self.request_redacted(input, redactor)?;
        #[cfg(feature = "jose")]
        if let Some(key) = &self.credential.client.dpop {
            let proof = |request: &TokenRequest| {
                request
                    .headers()
                    .get(crate::dpop::DPOP)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let Some(target) = crate::dpop::ProofTarget::token_endpoint(&self.token_url) else {
                return self.exchange(transport, request).await;
            };
            if let Some(proof) = proof(&request) {
                redact_jws(redactor, &proof);
            }
            let (status, headers, body) = self.exchange(transport, request).await?;
            let has_nonce = key.binding().observe(target.nonce_key(), &headers);
            if !(has_nonce && crate::dpop::token_endpoint_wants_nonce(status, &body)) {
                return Ok((status, headers, body));
            }
            tracing::debug!(provider = %self.provider_name(), "the token endpoint asked for a DPoP nonce; sending once more");
            let request = self.request_redacted(input, redactor)?;
            if let Some(proof) = proof(&request) {
                redact_jws(redactor, &proof);
            }
            let answer = self.exchange(transport, request).await?;
            key.binding().observe(target.nonce_key(), &answer.1);
            return Ok(answer);
        }
        self.exchange(transport, request).await
    }

    /// Sends one token request and reads the answer.
    pub(crate) async fn fetch(
        &self,
        transport: &TokenTransport,
        input: &GrantInput,
    ) -> Result<TokenSet, Error> {
        let mut redactor = self.redactor(Some(input));
        let (status, headers, body) = self.send_token_request(transport, input, &mut redactor).await?;
        let refused = match input {
            GrantInput::ClientCredentials => None,
            GrantInput::Refresh(_) => Some(RefusedGrant::RefreshToken),
            GrantInput::Code(_) => Some(RefusedGrant::AuthorizationCode),
        };
        let now = Instant::now();
        let mut tokens = parse_token_response(&self.rules, status, &headers, &body, now, &redactor).map_err(
            |err| match (err, refused) {
                (Error::OAuth(oauth), Some(grant))
                    if self.credential.client.provider.refuses_grant(oauth.error()) =>
                {
                    Error::ReauthorizationRequired(ReauthorizationRequired {
                        provider: oauth.provider.clone(),
                        grant: Some(grant),
                        cause: Some(oauth),
                    })
                }
                (err, _) => err,
            },
        )?;
        if let (ParameterEncoding::Headers(_), Some(refresh_token)) =
            (&self.credential.client.provider.encoding, tokens.refresh_token())
        {
            // It goes back in a header on the next refresh: refuse it now, as the
            // server's fault, rather than fail that refresh as a configuration error.
            if HeaderValue::try_from(refresh_token.secret()).is_err() {
                return Err(Error::Malformed(MalformedResponse {
                    provider: self.provider_name().clone(),
                    status,
                    content_type: None,
                    reason: "`refresh_token` has characters a header cannot carry".into(),
                }));
            }
        }
        let used = match input {
            GrantInput::Refresh(rt) => Some(rt),
            _ => None,
        };
        match self.credential.client.provider.refresh_tokens {
            RefreshTokens::NotIssued => tokens.set_refresh_token(None),
            _ if tokens.refresh_token().is_some() => {}
            RefreshTokens::KeepWhenOmitted => tokens.set_refresh_token(used.cloned()),
            RefreshTokens::Rotated => {
                if used.is_some() {
                    tracing::warn!(
                        provider = %self.provider_name(),
                        "the provider rotates refresh tokens, but its answer carried none; keeping the old one"
                    );
                }
                tokens.set_refresh_token(used.cloned());
            }
        }
        Ok(tokens)
    }

    /// Revokes `token` at the provider, in its dialect. `hint` is `access_token` or
    /// `refresh_token` (RFC 7009 §2.1).
    pub(crate) async fn revoke(
        &self,
        transport: &TokenTransport,
        revocation: &Revocation,
        token: &str,
        hint: &'static str,
    ) -> Result<(), Error> {
        // Only RFC 7009 revocation authenticates the client.
        let assertion = match revocation {
            Revocation::Rfc7009 { .. } => self.client_assertion()?,
            Revocation::Header { .. } => None,
        };
        let request = self.revocation_request(revocation, token, hint, assertion.as_deref())?;
        let (status, headers, body) = self.exchange(transport, request).await?;
        if status.is_success() {
            return Ok(());
        }
        #[cfg_attr(not(feature = "jose"), allow(unused_mut))]
        let mut redactor = self.redactor(None).secret(token);
        #[cfg(feature = "jose")]
        if let Some(assertion) = &assertion {
            redact_jws(&mut redactor, assertion);
        }
        match parse_token_response(&self.rules, status, &headers, &body, Instant::now(), &redactor) {
            Err(err) => Err(err),
            Ok(_) => Err(Error::Malformed(MalformedResponse {
                provider: self.provider_name().clone(),
                status,
                content_type: None,
                reason: "the revocation endpoint answered with an error status".into(),
            })),
        }
    }

    fn revocation_request(
        &self,
        revocation: &Revocation,
        token: &str,
        hint: &str,
        assertion: Option<&str>,
    ) -> Result<TokenRequest, Error> {
        let cred = &self.credential;
        let (url, mut builder, body) = match revocation {
            Revocation::Header { url, header } => {
                let builder = Request::builder().header(header.clone(), sensitive(token.to_owned())?);
                (url, builder, Bytes::new())
            }
            Revocation::Rfc7009 { url } => {
                let mut form = form_urlencoded::Serializer::new(String::new());
                form.append_pair("token", token)
                    .append_pair("token_type_hint", hint);
                let mut builder =
                    Request::builder().header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                let (basic, client_params) = client_authentication(cred, assertion)?;
                if let Some(basic) = basic {
                    builder = builder.header(header::AUTHORIZATION, basic);
                }
                for (name, value) in client_params {
                    form.append_pair(name, value);
                }
                (url, builder, Bytes::from(form.finish()))
            }
        };
        let uri: Uri = url.parse().map_err(|_| {
            Error::config(format!(
                "revocation URL `{}` is not a valid URL",
                without_userinfo(url)
            ))
        })?;
        builder = builder.method(Method::POST).uri(uri);
        builder
            .body(Full::new(body))
            .map_err(|_| Error::config("revocation request could not be built"))
    }

    /// A redactor for the answer to a request that presented `input`: it knows every
    /// secret such a request carries (the client's secret, also as the `Basic` value it
    /// travels in, and the grant's refresh token, code or PKCE verifier). The client
    /// assertion and the DPoP proof of each request join it as the request is built.
    fn redactor(&self, input: Option<&GrantInput>) -> Redactor {
        let cred = &self.credential;
        let mut redactor = Redactor::none();
        if let Some(secret) = &cred.client.client_secret {
            redactor = redactor.secret(secret.secret());
        }
        if cred.client.provider.client_auth == ClientAuth::Basic {
            redactor = redactor.exact(&basic_credentials(cred));
        }
        match input {
            None | Some(GrantInput::ClientCredentials) => redactor,
            Some(GrantInput::Refresh(refresh_token)) => redactor.secret(refresh_token.secret()),
            Some(GrantInput::Code(pending)) => {
                let redactor = redactor.secret(pending.code.secret());
                match &pending.pkce_verifier {
                    Some(verifier) => redactor.secret(verifier.secret()),
                    None => redactor,
                }
            }
        }
    }

    /// Sends a request to the provider and reads the answer under the size cap, refusing
    /// redirects.
    async fn exchange(
        &self,
        transport: &TokenTransport,
        request: TokenRequest,
    ) -> Result<(http::StatusCode, http::HeaderMap, Vec<u8>), Error> {
        let provider = self.provider_name().clone();
        let unreachable = |source| {
            Error::Unreachable(UnreachableError {
                provider: provider.clone(),
                backoff: None,
                source: Some(share(source)),
            })
        };
        let response = transport.send(request).await.map_err(unreachable)?;
        let (parts, mut body) = response.into_parts();
        let max = self.credential.client.provider.max_response_bytes;
        let mut buf = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(unreachable)?;
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
        if parts.status.is_redirection() {
            return Err(Error::Malformed(MalformedResponse {
                provider,
                status: parts.status,
                content_type: None,
                reason: "redirects are not followed on token requests".into(),
            }));
        }
        Ok((parts.status, parts.headers, buf))
    }
}

/// Request parameters: name and value.
type Params<'a> = Vec<(&'static str, &'a str)>;

/// Adds a signed JWT the request carried (a DPoP proof, a client assertion) to the
/// secrets `redactor` takes out of an answer: the whole of it, as sent and encoded, and
/// each of its three parts, so that a server quoting only its claims or its signature
/// gets nothing of it back out either.
#[cfg(feature = "jose")]
fn redact_jws(redactor: &mut Redactor, jws: &str) {
    let mut with_jws = std::mem::replace(redactor, Redactor::none()).secret(jws);
    for part in jws.split('.') {
        with_jws = with_jws.exact(part);
    }
    *redactor = with_jws;
}

/// How `cred` authenticates: an `Authorization: Basic` value, and parameters, among
/// them `assertion` for the JWT methods.
#[cfg_attr(not(feature = "jose"), allow(unused_variables))]
fn client_authentication<'a>(
    cred: &'a Credential,
    assertion: Option<&'a str>,
) -> Result<(Option<HeaderValue>, Params<'a>), Error> {
    let secret = cred.client.client_secret.as_ref().map(|s| s.secret());
    Ok(match cred.client.provider.client_auth {
        ClientAuth::Basic => {
            let encoded = basic_credentials(cred);
            (Some(sensitive(format!("Basic {encoded}"))?), Vec::new())
        }
        ClientAuth::RequestBody => {
            let mut params = vec![("client_id", cred.client.client_id.as_str())];
            params.extend(secret.map(|secret| ("client_secret", secret)));
            (None, params)
        }
        ClientAuth::PublicClient => (None, vec![("client_id", cred.client.client_id.as_str())]),
        ClientAuth::None => (None, Vec::new()),
        #[cfg(feature = "jose")]
        ClientAuth::PrivateKeyJwt | ClientAuth::ClientSecretJwt(_) => {
            let assertion = assertion.ok_or_else(|| Error::config("the client assertion is missing"))?;
            // RFC 7521 §4.2: `client_id` may come along; servers that look the client
            // up by it before reading the assertion get it.
            let params = vec![
                ("client_id", cred.client.client_id.as_str()),
                ("client_assertion_type", crate::client_assertion::JWT_BEARER),
                ("client_assertion", assertion),
            ];
            (None, params)
        }
    })
}

/// The base64 credentials `Authorization: Basic` carries for `cred`.
fn basic_credentials(cred: &Credential) -> String {
    // RFC 6749 §2.3.1: id and secret are form-encoded before being joined.
    let secret = cred.client.client_secret.as_ref().map_or("", |s| s.secret());
    let pair = format!("{}:{}", form_encode(&cred.client.client_id), form_encode(secret));
    base64::engine::general_purpose::STANDARD.encode(pair)
}

fn checked_url(what: &str, url: &str) -> Result<Uri, Error> {
    crate::origin::Origin::parse(what, url)?;
    url.parse()
        .map_err(|_| Error::config(format!("{what} `{}` is not a valid URL", without_userinfo(url))))
}

fn sensitive(value: String) -> Result<HeaderValue, Error> {
    let mut value = HeaderValue::try_from(value)
        .map_err(|_| Error::config("a credential cannot be carried in a header"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// A parameter carried as a header. Every such value is marked sensitive: codes, refresh
/// tokens and secrets travel this way, and the rest is not worth telling apart.
fn parameter_header(name: &str, value: &str) -> Result<HeaderValue, Error> {
    let mut header = HeaderValue::try_from(value)
        .map_err(|_| Error::config(format!("the value of `{name}` cannot be carried in a header")))?;
    header.set_sensitive(true);
    Ok(header)
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
    use crate::{
        provider::{HeaderParameters, Provider, ScopeSyntax},
        secret::ClientSecret,
        token::Lifetimes,
    };
    use http::HeaderName;
    use std::time::Duration;

    fn body_of(req: &TokenRequest) -> String {
        let collected = futures_util::FutureExt::now_or_never(req.body().clone().collect())
            .unwrap()
            .unwrap();
        String::from_utf8(collected.to_bytes().to_vec()).unwrap()
    }

    fn header<'a>(req: &'a TokenRequest, name: &str) -> Option<&'a str> {
        req.headers().get(name).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn basic_auth_form_encodes_id_and_secret() {
        let provider = Provider::standard("https://auth.example/token");
        let cred = Credential::client_credentials(provider, "my id:1", ClientSecret::new("p@ss word+%"))
            .scopes(["write", "read"]);
        let config = CheckedCredential::new(cred).unwrap();
        let req = config.request(&GrantInput::ClientCredentials).unwrap();
        let auth = req.headers()[header::AUTHORIZATION].clone();
        assert!(auth.is_sensitive());
        let b64 = auth.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let decoded = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), "my+id%3A1:p%40ss+word%2B%25");
        assert_eq!(body_of(&req), "grant_type=client_credentials&scope=read+write");
        assert_eq!(
            header(&req, "content-type"),
            Some("application/x-www-form-urlencoded")
        );
    }

    #[test]
    fn body_auth_public_clients_and_no_client_auth() {
        let provider = Provider::standard("https://auth.example/token").client_auth(ClientAuth::RequestBody);
        let config = CheckedCredential::new(Credential::client_credentials(provider, "id", "s")).unwrap();
        let req = config.request(&GrantInput::ClientCredentials).unwrap();
        assert!(req.headers().get(header::AUTHORIZATION).is_none());
        assert_eq!(
            body_of(&req),
            "grant_type=client_credentials&client_id=id&client_secret=s"
        );

        let public = Provider::standard("https://auth.example/token").client_auth(ClientAuth::PublicClient);
        let config = CheckedCredential::new(Credential::refresh_token(public, "id", None, "rt")).unwrap();
        let req = config
            .request(&GrantInput::Refresh(RefreshToken::new("r t")))
            .unwrap();
        assert_eq!(
            body_of(&req),
            "grant_type=refresh_token&refresh_token=r+t&client_id=id"
        );

        // Grindery: nothing identifies the client, and its id may be empty.
        let anonymous = Provider::standard("https://auth.example/token").client_auth(ClientAuth::None);
        let config = CheckedCredential::new(Credential::refresh_token(anonymous, "", None, "rt")).unwrap();
        let req = config
            .request(&GrantInput::Refresh(RefreshToken::new("rt")))
            .unwrap();
        assert_eq!(body_of(&req), "grant_type=refresh_token&refresh_token=rt");
        assert!(req.headers().get(header::AUTHORIZATION).is_none());
    }

    #[test]
    fn code_exchange_sends_the_redirect_uri_but_not_the_scope() {
        let provider = Provider::standard("https://auth.example/token").client_auth(ClientAuth::RequestBody);
        let cred = Credential::authorization_code(
            provider,
            "id",
            Some("s".into()),
            "the-code",
            "https://app.example/cb",
        )
        .scopes(["read"]);
        let config = CheckedCredential::new(cred).unwrap();
        let (refresh, code) = config.initial_input();
        assert!(refresh.is_none());
        let req = config.request(&GrantInput::Code(code.unwrap())).unwrap();
        assert_eq!(
            body_of(&req),
            "grant_type=authorization_code&code=the-code&redirect_uri=https%3A%2F%2Fapp.example%2Fcb\
             &client_id=id&client_secret=s"
        );
    }

    #[test]
    fn a_pkce_verifier_goes_with_the_code() {
        let provider = Provider::standard("https://auth.example/token").client_auth(ClientAuth::PublicClient);
        let config =
            CheckedCredential::new(Credential::refresh_token(provider, "id", None, "unused")).unwrap();
        let code = PendingCode {
            code: AuthorizationCode::new("c"),
            redirect_uri: "https://app.example/cb".into(),
            pkce_verifier: Some(PkceVerifier::new("v".repeat(43))),
        };
        let body = body_of(&config.request(&GrantInput::Code(code)).unwrap());
        assert!(
            body.ends_with(&format!("&code_verifier={}&client_id=id", "v".repeat(43))),
            "{body}"
        );
    }

    #[test]
    fn header_encoding_carries_every_parameter_in_its_own_sensitive_header() {
        let names = HeaderParameters::prefixed("x-").rename("code", HeaderName::from_static("x-auth-code"));
        let provider = Provider::standard("https://site.example/external/api/oauth2/token")
            .client_auth(ClientAuth::PublicClient)
            .parameter_encoding(ParameterEncoding::Headers(names))
            .repeat_authorization_params(true)
            .default_scopes(["email"]);
        let cred = Credential::authorization_code(provider, "cid", None, "c0de", "https://app.example/cb");
        let config = CheckedCredential::new(cred).unwrap();

        let code = config.initial_input().1.unwrap();
        let req = config.request(&GrantInput::Code(code)).unwrap();
        assert_eq!(body_of(&req), "");
        assert_eq!(header(&req, "content-type"), Some("application/json"));
        assert_eq!(header(&req, "x-grant-type"), Some("authorization_code"));
        assert_eq!(header(&req, "x-auth-code"), Some("c0de"));
        assert_eq!(header(&req, "x-redirect-uri"), Some("https://app.example/cb"));
        assert_eq!(header(&req, "x-client-id"), Some("cid"));
        assert_eq!(header(&req, "x-scope"), Some("email"));
        assert!(req.headers()["x-auth-code"].is_sensitive());

        let req = config
            .request(&GrantInput::Refresh(RefreshToken::new("rt1")))
            .unwrap();
        assert_eq!(header(&req, "x-grant-type"), Some("refresh_token"));
        assert_eq!(header(&req, "x-refresh-token"), Some("rt1"));
        assert_eq!(header(&req, "x-redirect-uri"), Some("https://app.example/cb"));
        assert_eq!(header(&req, "x-scope"), Some("email"));
        assert!(req.headers()["x-refresh-token"].is_sensitive());
        assert!(req.headers().get("x-auth-code").is_none());

        // A value a header cannot carry is a typed error, not a panic.
        let err = config
            .request(&GrantInput::Refresh(RefreshToken::new("bad\nvalue")))
            .unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
    }

    #[test]
    fn comma_delimited_scopes() {
        let provider =
            Provider::standard("https://auth.example/token").scope_syntax(ScopeSyntax::CommaDelimited);
        let cred =
            Credential::client_credentials(provider, "id", "s").scopes(["write(contacts)", "read(all)"]);
        let req = CheckedCredential::new(cred)
            .unwrap()
            .request(&GrantInput::ClientCredentials)
            .unwrap();
        assert_eq!(
            body_of(&req),
            "grant_type=client_credentials&scope=read%28all%29%2Cwrite%28contacts%29"
        );
    }

    #[test]
    fn revocation_requests_in_both_dialects() {
        let provider = Provider::standard("https://auth.example/token").client_auth(ClientAuth::RequestBody);
        let config = CheckedCredential::new(Credential::client_credentials(provider, "id", "s")).unwrap();
        let rfc = Revocation::Rfc7009 {
            url: "https://auth.example/revoke".into(),
        };
        let req = config
            .revocation_request(&rfc, "tok", "refresh_token", None)
            .unwrap();
        assert_eq!(req.uri(), "https://auth.example/revoke");
        assert_eq!(
            body_of(&req),
            "token=tok&token_type_hint=refresh_token&client_id=id&client_secret=s"
        );
        let header_style = Revocation::Header {
            url: "https://site.example/external/api/oauth2/revoke".into(),
            header: HeaderName::from_static("x-token"),
        };
        let req = config
            .revocation_request(&header_style, "tok", "access_token", None)
            .unwrap();
        assert_eq!(header(&req, "x-token"), Some("tok"));
        assert!(req.headers()["x-token"].is_sensitive());
        assert_eq!(body_of(&req), "");
        assert_eq!(req.method(), Method::POST);
    }

    #[test]
    fn configuration_is_checked() {
        let insecure = Provider::standard("http://auth.example/token");
        assert!(CheckedCredential::new(Credential::client_credentials(insecure, "id", "s")).is_err());
        let upside_down = Provider::standard("https://auth.example/token").lifetimes(Lifetimes {
            min: Duration::from_secs(60),
            default: Duration::from_secs(3600),
            max: Duration::from_secs(30),
        });
        let err = CheckedCredential::new(Credential::client_credentials(upside_down, "id", "s")).unwrap_err();
        assert!(err.to_string().contains("do not hold together"), "{err}");
        let forged = Provider::standard("https://auth.example/token").name("acme\nFORGED");
        let err = CheckedCredential::new(Credential::client_credentials(forged, "id", "s")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: provider name `acme\\nFORGED` is empty or has control characters"
        );
        let provider = Provider::standard("https://auth.example/token");
        assert!(CheckedCredential::new(Credential::client_credentials(provider.clone(), "", "s")).is_err());
        let bad_scope = Credential::client_credentials(provider.clone(), "id", "s").scopes(["a b"]);
        assert!(CheckedCredential::new(bad_scope).is_err());
        let no_secret = Credential::refresh_token(provider.clone(), "id", None, "rt");
        assert!(CheckedCredential::new(no_secret).is_err());
        let repeats = provider.repeat_authorization_params(true);
        let no_redirect = Credential::refresh_token(repeats, "id", Some("s".into()), "rt");
        let err = CheckedCredential::new(no_redirect).unwrap_err();
        assert!(err.to_string().contains("redirect URI"), "{err}");
    }
}
