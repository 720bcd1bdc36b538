use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use http::{response::Parts, Request, Response};
use http_body::Body;
use pin_project::pin_project;
use tower_service::Service;

use super::{
    family::CloneFamily,
    replay::{prepare_replay, ReplayCopy},
};
use crate::{
    body::ReplayableBody,
    credential::{Acquire, CredentialState},
    dead_token::{ApiAnswer, ReadPrefix, ResponseBody, Verdict},
    error::{BoxError, Error},
    protocol::{self, AfterDead, AttachPoint},
    registry::{RouteRef, Subject},
};

/// Response future of [`OAuth2`](super::OAuth2), for requests with bodies of type `B`
/// to an inner service `S` whose responses have bodies of type `T`.
///
/// Two states: the request was sent (the common one, and the only one of a request
/// that found a fresh token or needed none), or something rare is under way (waiting
/// for a token, reading the start of an error answer's body, refreshing a dead token,
/// retrying), boxed so that it does not make the common state larger.
#[pin_project]
pub struct ResponseFuture<S, B, T>
where
    S: Service<Request<B>>,
    T: Body,
{
    #[pin]
    state: State<S, B, T>,
}

#[pin_project(project = StateProj)]
enum State<S, B, T>
where
    S: Service<Request<B>>,
    T: Body,
{
    /// Sent to the inner service. `watch` is `None` for a request that carries no token
    /// (not for any credential): its answer is returned untouched.
    Sent {
        #[pin]
        fut: S::Future,
        watch: Option<Watch<S, B>>,
    },
    /// Waiting for a token, reading a body, refreshing a dead token, or retrying.
    Slow { slow: SlowState<S, B, T> },
}

/// What a request sent with a token needs to judge its answer, and to be sent again if
/// the answer declares the token dead.
pub(crate) struct Watch<S, B> {
    pub(crate) family: Arc<CloneFamily<S>>,
    pub(crate) index: usize,
    /// A user's credential (the request carried a `Subject`); `index` is unused then.
    pub(crate) user: Option<Arc<CredentialState>>,
    pub(crate) generation: u64,
    pub(crate) replay: Option<ReplayCopy<B>>,
}

impl<S, B> Watch<S, B> {
    fn credential(&self) -> &Arc<CredentialState> {
        credential(&self.family, self.index, &self.user)
    }

    #[inline]
    fn verdict<T>(&self, response: &Response<T>) -> Verdict {
        match &self.user {
            None => {
                self.family.layer.plans[self.index].verdict(response.status(), response.headers(), || {
                    &self.credential().config.credential.client.provider
                })
            }
            Some(user) => protocol::verdict_of(user, response.status(), response.headers()),
        }
    }
}

fn credential<'a, S>(
    family: &'a CloneFamily<S>,
    index: usize,
    user: &'a Option<Arc<CredentialState>>,
) -> &'a Arc<CredentialState> {
    match user {
        Some(user) => user,
        None => &family.layer.credentials.routing.states[index],
    }
}

/// The rare states, boxed and pinned.
type SlowState<S, B, T> = Pin<Box<Slow<S, B, T>>>;

/// The rare states, behind one allocation.
#[pin_project]
pub(crate) struct Slow<S, B, T>
where
    S: Service<Request<B>>,
    T: Body,
{
    family: Arc<CloneFamily<S>>,
    index: usize,
    user: Option<Arc<CredentialState>>,
    /// A DPoP-bound request's origin, whose nonces its answers bring.
    #[cfg(feature = "jose")]
    origin: Option<Box<str>>,
    /// The retry under way is the one a DPoP nonce asked for, with the same token.
    #[cfg(feature = "jose")]
    nonce_retry: bool,
    #[pin]
    step: Step<S, B, T>,
}

#[pin_project(project = StepProj)]
enum Step<S, B, T>
where
    S: Service<Request<B>>,
    T: Body,
{
    /// No usable token: waiting for one, holding the ready service and the request, and
    /// where it was routed if it may be retried.
    Acquiring {
        acquire: Acquire,
        pending: Option<(S, Request<B>)>,
        retry: Option<RouteRef>,
    },
    /// The answer declared the token dead: waiting for its successor, holding the
    /// request to send again (nothing attached yet).
    Refreshing {
        acquire: Acquire,
        req: Option<Request<B>>,
    },
    /// Fresh token attached: waiting for the spare service to be ready.
    RetryReady {
        pending: Option<(S, Request<B>)>,
        generation: u64,
    },
    /// The one retry.
    Retrying {
        #[pin]
        fut: S::Future,
        generation: u64,
    },
    /// A DPoP-bound request, sent with token `generation` and its own proof: its answer
    /// may ask for a nonce before it is judged as any other.
    #[cfg(feature = "jose")]
    DpopSent {
        #[pin]
        fut: S::Future,
        generation: u64,
        replay: Option<ReplayCopy<B>>,
    },
    /// An answer whose status asks the provider's body test: reading the start of its
    /// body. `replay` is the copy to send again if this is the first answer and it
    /// declares the token dead; `retried` when this is the retry's answer.
    Reading {
        #[pin]
        read: ReadPrefix<T>,
        parts: Option<Parts>,
        generation: u64,
        replay: Option<ReplayCopy<B>>,
        retried: bool,
    },
}

/// What the rare states come to.
enum SlowOutput<S, B, T>
where
    S: Service<Request<B>>,
    T: Body,
{
    /// The request was sent after waiting for a token: back to the common state.
    Sent(S::Future, Watch<S, B>),
    /// The answer to return.
    Done(Result<Response<ResponseBody<T>>, Error>),
}

impl<S, B, T> ResponseFuture<S, B, T>
where
    S: Service<Request<B>>,
    T: Body,
{
    #[inline]
    pub(crate) fn passthrough(fut: S::Future) -> Self {
        Self {
            state: State::Sent { fut, watch: None },
        }
    }

    /// Sent with token `generation` of credential `index`. Takes the watch's parts rather
    /// than a `Watch`, so that the replay copy is moved once, into its place.
    #[inline(always)]
    pub(crate) fn sent(
        fut: S::Future,
        family: Arc<CloneFamily<S>>,
        index: usize,
        generation: u64,
        replay: Option<ReplayCopy<B>>,
    ) -> Self {
        Self {
            state: State::Sent {
                fut,
                watch: Some(Watch {
                    family,
                    index,
                    user: None,
                    generation,
                    replay,
                }),
            },
        }
    }

    /// Sent with a token whose watch is already built (a user's request).
    pub(crate) fn sent_watched(fut: S::Future, watch: Watch<S, B>) -> Self {
        Self {
            state: State::Sent {
                fut,
                watch: Some(watch),
            },
        }
    }

    /// A DPoP-bound request sent with token `generation` to `origin`.
    #[cfg(feature = "jose")]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn dpop_sent(
        family: Arc<CloneFamily<S>>,
        index: usize,
        user: Option<Arc<CredentialState>>,
        origin: Option<Box<str>>,
        fut: S::Future,
        generation: u64,
        replay: Option<ReplayCopy<B>>,
    ) -> Self {
        let step = Step::DpopSent {
            fut,
            generation,
            replay,
        };
        let mut slow = Slow::new(family, index, user, step);
        slow.origin = origin;
        Self {
            state: State::Slow { slow: Box::pin(slow) },
        }
    }

    pub(crate) fn acquiring(
        family: Arc<CloneFamily<S>>,
        index: usize,
        user: Option<Arc<CredentialState>>,
        acquire: Acquire,
        svc: S,
        req: Request<B>,
        retry: Option<RouteRef>,
    ) -> Self {
        let step = Step::Acquiring {
            acquire,
            pending: Some((svc, req)),
            retry,
        };
        Self {
            state: State::Slow {
                slow: Box::pin(Slow::new(family, index, user, step)),
            },
        }
    }
}

impl<S, B, T> Future for ResponseFuture<S, B, T>
where
    S: Service<Request<B>, Response = Response<T>> + Clone,
    S::Error: Into<BoxError>,
    B: ReplayableBody,
    T: Body,
{
    type Output = Result<Response<ResponseBody<T>>, Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Sent { fut, watch } => {
                    let response = ready!(fut.poll(cx)).map_err(Error::inner)?;
                    #[cfg(feature = "follow-redirect")]
                    if let Some(w) = &*watch {
                        let registry = &w.family.layer.credentials.routing;
                        crate::redirect::check_followed(registry, w.index, w.user.as_deref(), &response);
                    }
                    let verdict = match watch {
                        Some(w) => w.verdict(&response),
                        None => Verdict::Answer,
                    };
                    if verdict == Verdict::Answer {
                        return Poll::Ready(Ok(response.map(ResponseBody::new)));
                    }
                    let watch = watch.take().expect("polled after completion");
                    match judge(watch, response, verdict) {
                        Ok(response) => return Poll::Ready(Ok(response)),
                        Err(slow) => this.state.set(State::Slow { slow }),
                    }
                }
                StateProj::Slow { slow } => match ready!(slow.as_mut().poll(cx)) {
                    SlowOutput::Sent(fut, watch) => this.state.set(State::Sent {
                        fut,
                        watch: Some(watch),
                    }),
                    SlowOutput::Done(result) => return Poll::Ready(result),
                },
            }
        }
    }
}

/// An answer to a request sent with token `watch.generation` that is dead, or that only
/// its body can tell about. Gives the answer back when the request is not to be retried,
/// or the state that reads the body or retries.
#[cold]
#[inline(never)]
fn judge<S, B, T>(
    watch: Watch<S, B>,
    response: Response<T>,
    verdict: Verdict,
) -> Result<Response<ResponseBody<T>>, SlowState<S, B, T>>
where
    S: Service<Request<B>>,
    B: ReplayableBody,
    T: Body,
{
    let Watch {
        family,
        index,
        user,
        generation,
        replay,
    } = watch;
    let step = if verdict == Verdict::ReadBody {
        let limit = credential(&family, index, &user)
            .config
            .credential
            .client
            .provider
            .dead_token_body_limit;
        let (parts, body) = response.into_parts();
        Step::Reading {
            read: ReadPrefix::new(body, limit),
            parts: Some(parts),
            generation,
            replay,
            retried: false,
        }
    } else {
        match dead_token(&family, index, &user, generation, replay, response.status()) {
            Some(step) => step,
            None => return Ok(response.map(ResponseBody::new)),
        }
    };
    Err(Box::pin(Slow::new(family, index, user, step)))
}

/// A dead-token answer (of `status`) to a request sent with token `generation`:
/// invalidates the token (if still current) and starts or joins the one refresh, retry
/// or not. The step that sends the request again, or `None` when the answer is to be
/// given back.
fn dead_token<S, B, T>(
    family: &Arc<CloneFamily<S>>,
    index: usize,
    user: &Option<Arc<CredentialState>>,
    generation: u64,
    replay: Option<ReplayCopy<B>>,
    status: http::StatusCode,
) -> Option<Step<S, B, T>>
where
    S: Service<Request<B>>,
    B: ReplayableBody,
    T: Body,
{
    let state = credential(family, index, user);
    let req = replay_request(family, user, replay);
    match protocol::after_dead(state, generation, req.is_some(), status) {
        AfterDead::Return => None,
        AfterDead::Retry(acquire) => Some(Step::Refreshing { acquire, req }),
    }
}

/// The inner service's answer to a request the slow states sent, checked for a redirect
/// that took the token elsewhere; its error as the crate's.
fn received<S, T, E: Into<BoxError>>(
    result: Result<Response<T>, E>,
    family: &CloneFamily<S>,
    index: usize,
    user: &Option<Arc<CredentialState>>,
) -> Result<Response<T>, Error> {
    let response = result.map_err(Error::inner)?;
    #[cfg(feature = "follow-redirect")]
    crate::redirect::check_followed(
        &family.layer.credentials.routing,
        index,
        user.as_deref(),
        &response,
    );
    #[cfg(not(feature = "follow-redirect"))]
    let _ = (family, index, user);
    Ok(response)
}

/// The request to send again from `replay`, if its body can be sent again.
fn replay_request<S, B: ReplayableBody>(
    family: &CloneFamily<S>,
    user: &Option<Arc<CredentialState>>,
    replay: Option<ReplayCopy<B>>,
) -> Option<Request<B>> {
    replay
        .filter(|replay| replay.body.is_replayable())
        .and_then(|replay| replay.into_request(&family.layer.credentials.routing))
        .map(|mut req| {
            // A user's `Subject` was not copied with the rest (see `prepare_replay`).
            if let Some(subject) = user.as_ref().and_then(|user| user.credential_key().subject()) {
                req.extensions_mut().insert(Subject::new(subject));
            }
            req
        })
}

/// Where credential `state`'s token goes: the layer's plan for an application
/// credential, the user provider's placement for a user's.
fn placement_of<S>(
    family: &CloneFamily<S>,
    index: usize,
    user: &Option<Arc<CredentialState>>,
) -> AttachPoint {
    match user {
        None => family.layer.plans[index].placement.clone(),
        Some(user) => AttachPoint::for_credential(&user.config),
    }
}

impl<S, B, T> Slow<S, B, T>
where
    S: Service<Request<B>>,
    T: Body,
{
    fn new(
        family: Arc<CloneFamily<S>>,
        index: usize,
        user: Option<Arc<CredentialState>>,
        step: Step<S, B, T>,
    ) -> Self {
        Self {
            family,
            index,
            user,
            #[cfg(feature = "jose")]
            origin: None,
            #[cfg(feature = "jose")]
            nonce_retry: false,
            step,
        }
    }

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<SlowOutput<S, B, T>>
    where
        S: Service<Request<B>, Response = Response<T>> + Clone,
        S::Error: Into<BoxError>,
        B: ReplayableBody,
    {
        let mut this = self.project();
        loop {
            match this.step.as_mut().project() {
                StepProj::Acquiring {
                    acquire,
                    pending,
                    retry,
                } => {
                    let token = match ready!(Pin::new(acquire).poll(cx)) {
                        Ok(token) => token,
                        Err(err) => return Poll::Ready(SlowOutput::Done(Err(err))),
                    };
                    let (mut svc, mut req) = pending.take().expect("polled after completion");
                    let replay = match *retry {
                        Some(route) => prepare_replay(&mut req, route, this.family.layer.replay_limit),
                        None => None,
                    };
                    let placement = placement_of(this.family, *this.index, this.user);
                    #[cfg(feature = "jose")]
                    if placement.is_dpop() {
                        *this.origin =
                            crate::dpop::ProofTarget::of_uri(req.uri()).map(|at| at.nonce_key().into());
                        protocol::attach(&mut req, &placement, token.value.clone());
                        let fut = svc.call(req);
                        let generation = token.generation;
                        this.step.set(Step::DpopSent {
                            fut,
                            generation,
                            replay,
                        });
                        continue;
                    }
                    protocol::attach(&mut req, &placement, token.value.clone());
                    // NOTE: `svc` was polled ready before `call` took it from the service.
                    let fut = svc.call(req);
                    let watch = Watch {
                        family: Arc::clone(this.family),
                        index: *this.index,
                        user: this.user.clone(),
                        generation: token.generation,
                        replay,
                    };
                    return Poll::Ready(SlowOutput::Sent(fut, watch));
                }

                StepProj::Refreshing { acquire, req } => {
                    let token = match ready!(Pin::new(acquire).poll(cx)) {
                        Ok(token) => token,
                        Err(err) => return Poll::Ready(SlowOutput::Done(Err(err))),
                    };
                    let mut req = req.take().expect("polled after completion");
                    let svc = this.family.spare_service();
                    let placement = placement_of(this.family, *this.index, this.user);
                    protocol::attach(&mut req, &placement, token.value.clone());
                    protocol::retrying(credential(this.family, *this.index, this.user));
                    this.step.set(Step::RetryReady {
                        pending: Some((svc, req)),
                        generation: token.generation,
                    });
                }

                StepProj::RetryReady { pending, generation } => {
                    let (service, _) = pending.as_mut().expect("polled after completion");
                    if let Err(err) = ready!(service.poll_ready(cx)) {
                        return Poll::Ready(SlowOutput::Done(Err(Error::inner(err))));
                    }
                    let (mut service, req) = pending.take().expect("polled after completion");
                    let fut = service.call(req);
                    let generation = *generation;
                    this.step.set(Step::Retrying { fut, generation });
                }

                StepProj::Retrying { fut, generation } => {
                    let response = match received(ready!(fut.poll(cx)), this.family, *this.index, this.user) {
                        Ok(response) => response,
                        Err(err) => return Poll::Ready(SlowOutput::Done(Err(err))),
                    };
                    let state = credential(this.family, *this.index, this.user);
                    #[cfg(feature = "jose")]
                    if this.origin.is_some() {
                        let placement = placement_of(this.family, *this.index, this.user);
                        let origin = this.origin.as_deref();
                        let dpop =
                            protocol::dpop_verdict(&placement, origin, response.status(), response.headers());
                        if dpop.wants_nonce() {
                            // The one retry is spent; a nonce demand says nothing of the
                            // token, which is kept.
                            return Poll::Ready(SlowOutput::Done(Ok(response.map(ResponseBody::new))));
                        }
                    }
                    let verdict = protocol::verdict_of(state, response.status(), response.headers());
                    #[cfg(feature = "jose")]
                    if *this.nonce_retry && verdict == Verdict::Dead {
                        // The retry the nonce asked for kept its token: a dead answer is
                        // about that token, which is then refreshed for the next request.
                        protocol::after_dead(state, *generation, false, response.status());
                        return Poll::Ready(SlowOutput::Done(Ok(response.map(ResponseBody::new))));
                    }
                    if verdict == Verdict::ReadBody {
                        let limit = state.config.credential.client.provider.dead_token_body_limit;
                        let generation = *generation;
                        let (parts, body) = response.into_parts();
                        this.step.set(Step::Reading {
                            read: ReadPrefix::new(body, limit),
                            parts: Some(parts),
                            generation,
                            replay: None,
                            retried: true,
                        });
                        continue;
                    }
                    protocol::after_retry(state, *generation, verdict == Verdict::Dead);
                    return Poll::Ready(SlowOutput::Done(Ok(response.map(ResponseBody::new))));
                }

                #[cfg(feature = "jose")]
                StepProj::DpopSent {
                    fut,
                    generation,
                    replay,
                } => {
                    let response = match received(ready!(fut.poll(cx)), this.family, *this.index, this.user) {
                        Ok(response) => response,
                        Err(err) => return Poll::Ready(SlowOutput::Done(Err(err))),
                    };
                    let generation = *generation;
                    let state = credential(this.family, *this.index, this.user);
                    let placement = placement_of(this.family, *this.index, this.user);
                    let (status, headers) = (response.status(), response.headers());
                    match protocol::dpop_verdict(&placement, this.origin.as_deref(), status, headers) {
                        protocol::DpopVerdict::Judge => {}
                        protocol::DpopVerdict::Answer => {
                            return Poll::Ready(SlowOutput::Done(Ok(response.map(ResponseBody::new))))
                        }
                        protocol::DpopVerdict::Nonce => {
                            let Some(mut req) = replay_request(this.family, this.user, replay.take()) else {
                                return Poll::Ready(SlowOutput::Done(Ok(response.map(ResponseBody::new))));
                            };
                            tracing::debug!(
                                provider = %state.config.provider_name(),
                                "the API asked for a DPoP nonce; sending once more"
                            );
                            match protocol::token_value(state) {
                                Ok((generation, value)) => {
                                    protocol::attach(&mut req, &placement, value);
                                    protocol::retrying(state);
                                    *this.nonce_retry = true;
                                    let svc = this.family.spare_service();
                                    this.step.set(Step::RetryReady {
                                        pending: Some((svc, req)),
                                        generation,
                                    });
                                }
                                Err(acquire) => this.step.set(Step::Refreshing {
                                    acquire,
                                    req: Some(req),
                                }),
                            }
                            continue;
                        }
                    }
                    match protocol::verdict_of(state, status, headers) {
                        Verdict::Answer => {
                            return Poll::Ready(SlowOutput::Done(Ok(response.map(ResponseBody::new))))
                        }
                        Verdict::ReadBody => {
                            let limit = state.config.credential.client.provider.dead_token_body_limit;
                            let (parts, body) = response.into_parts();
                            let replay = replay.take();
                            this.step.set(Step::Reading {
                                read: ReadPrefix::new(body, limit),
                                parts: Some(parts),
                                generation,
                                replay,
                                retried: false,
                            });
                        }
                        Verdict::Dead => {
                            let status = response.status();
                            match dead_token(
                                this.family,
                                *this.index,
                                this.user,
                                generation,
                                replay.take(),
                                status,
                            ) {
                                Some(step) => this.step.set(step),
                                None => {
                                    return Poll::Ready(SlowOutput::Done(Ok(response.map(ResponseBody::new))))
                                }
                            }
                        }
                    }
                }

                StepProj::Reading {
                    read,
                    parts,
                    generation,
                    replay,
                    retried,
                } => {
                    let (prefix, rest) = ready!(read.poll(cx));
                    let parts = parts.take().expect("polled after completion");
                    let state = credential(this.family, *this.index, this.user);
                    let provider = &state.config.credential.client.provider;
                    let (bytes, complete) = prefix.bytes(provider.dead_token_body_limit);
                    let answer = ApiAnswer::new(parts.status, &parts.headers, &bytes, complete);
                    let dead = provider.is_dead_body(&answer);
                    let status = parts.status;
                    let response = Response::from_parts(parts, ResponseBody::prefixed(prefix, rest));
                    if *retried {
                        protocol::after_retry(state, *generation, dead);
                        return Poll::Ready(SlowOutput::Done(Ok(response)));
                    }
                    if !dead {
                        return Poll::Ready(SlowOutput::Done(Ok(response)));
                    }
                    let (generation, replay) = (*generation, replay.take());
                    match dead_token(this.family, *this.index, this.user, generation, replay, status) {
                        Some(step) => this.step.set(step),
                        None => return Poll::Ready(SlowOutput::Done(Ok(response))),
                    }
                }
            }
        }
    }
}

impl<S, B, T> fmt::Debug for ResponseFuture<S, B, T>
where
    S: Service<Request<B>>,
    T: Body,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
