use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use http::{Request, Response};
use pin_project::pin_project;
use tower_service::Service;

use super::{
    replay::{prepare_replay, ReplayCopy},
    shared::Shared,
};
use crate::{
    body::ReplayableBody,
    credential::{Acquire, CredentialState},
    credentials::{RouteRef, Subject},
    error::{BoxError, Error},
    protocol::{self, AfterDead, Placement},
};

/// Response future of [`OAuth2`](super::OAuth2).
///
/// Two states: the request was sent (the common one, and the only one of a request
/// that found a fresh token or needed none), or something rare is under way (waiting
/// for a token, refreshing a dead one, retrying), boxed so that it does not make the
/// common state larger.
#[pin_project]
pub struct ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    #[pin]
    state: State<S, B>,
}

#[pin_project(project = StateProj)]
enum State<S, B>
where
    S: Service<Request<B>>,
{
    /// Sent to the inner service. `watch` is `None` for a request that carries no token
    /// (not for any credential): its answer is returned untouched.
    Sent {
        #[pin]
        fut: S::Future,
        watch: Option<Watch<S, B>>,
    },
    /// Waiting for a token, refreshing a dead one, or retrying.
    Slow { slow: Pin<Box<Slow<S, B>>> },
}

/// What a request sent with a token needs to judge its answer, and to be sent again if
/// the answer declares the token dead.
pub(crate) struct Watch<S, B> {
    pub(crate) shared: Arc<Shared<S>>,
    pub(crate) index: usize,
    /// A user's credential (the request carried a `Subject`); `index` is unused then.
    pub(crate) user: Option<Arc<CredentialState>>,
    pub(crate) generation: u64,
    pub(crate) replay: Option<ReplayCopy<B>>,
}

impl<S, B> Watch<S, B> {
    fn credential(&self) -> &Arc<CredentialState> {
        credential(&self.shared, self.index, &self.user)
    }

    #[inline]
    fn is_dead<T>(&self, response: &Response<T>) -> bool {
        match &self.user {
            None => {
                self.shared.layer.plans[self.index].is_dead(response.status(), response.headers(), || {
                    &self.credential().config.credential.provider
                })
            }
            Some(user) => protocol::is_dead_answer(user, response.status(), response.headers()),
        }
    }
}

fn credential<'a, S>(
    shared: &'a Shared<S>,
    index: usize,
    user: &'a Option<Arc<CredentialState>>,
) -> &'a Arc<CredentialState> {
    match user {
        Some(user) => user,
        None => &shared.layer.credentials.registry.states[index],
    }
}

/// The rare states, behind one allocation.
#[pin_project]
pub(crate) struct Slow<S, B>
where
    S: Service<Request<B>>,
{
    shared: Arc<Shared<S>>,
    index: usize,
    user: Option<Arc<CredentialState>>,
    #[pin]
    step: Step<S, B>,
}

#[pin_project(project = StepProj)]
enum Step<S, B>
where
    S: Service<Request<B>>,
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
}

/// What the rare states come to.
enum SlowOutput<S, B, T>
where
    S: Service<Request<B>>,
{
    /// The request was sent after waiting for a token: back to the common state.
    Sent(S::Future, Watch<S, B>),
    /// The answer to return.
    Done(Result<T, Error>),
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
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
        shared: Arc<Shared<S>>,
        index: usize,
        generation: u64,
        replay: Option<ReplayCopy<B>>,
    ) -> Self {
        Self {
            state: State::Sent {
                fut,
                watch: Some(Watch {
                    shared,
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

    pub(crate) fn acquiring(
        shared: Arc<Shared<S>>,
        index: usize,
        user: Option<Arc<CredentialState>>,
        acquire: Acquire,
        svc: S,
        req: Request<B>,
        retry: Option<RouteRef>,
    ) -> Self {
        Self {
            state: State::Slow {
                slow: Box::pin(Slow {
                    shared,
                    index,
                    user,
                    step: Step::Acquiring {
                        acquire,
                        pending: Some((svc, req)),
                        retry,
                    },
                }),
            },
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    B: ReplayableBody,
{
    type Output = Result<Response<ResBody>, Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Sent { fut, watch } => {
                    let response = ready!(fut.poll(cx)).map_err(Error::inner)?;
                    #[cfg(feature = "follow-redirect")]
                    if let Some(w) = &*watch {
                        let registry = &w.shared.layer.credentials.registry;
                        crate::redirect::check_followed(registry, w.index, w.user.as_deref(), &response);
                    }
                    match watch {
                        Some(w) if w.is_dead(&response) => {}
                        _ => return Poll::Ready(Ok(response)),
                    }
                    let watch = watch.take().expect("polled after completion");
                    match dead_token(watch, response) {
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

/// A dead-token answer to a request sent with token `watch.generation`: invalidates the
/// token (if still current) and starts or joins the one refresh, retry or not. Gives
/// the answer back when the request is not to be retried, or the state that retries it.
#[cold]
#[inline(never)]
fn dead_token<S, B, T>(watch: Watch<S, B>, response: Response<T>) -> Result<Response<T>, Pin<Box<Slow<S, B>>>>
where
    S: Service<Request<B>>,
    B: ReplayableBody,
{
    let Watch {
        shared,
        index,
        user,
        generation,
        replay,
    } = watch;
    let state = credential(&shared, index, &user);
    let req = replay
        .filter(|replay| replay.body.is_replayable())
        .and_then(|replay| replay.into_request(&shared.layer.credentials.registry))
        .map(|mut req| {
            // A user's `Subject` was not copied with the rest (see `prepare_replay`).
            if let Some(subject) = user.as_ref().and_then(|user| user.credential_key().subject()) {
                req.extensions_mut().insert(Subject::new(subject));
            }
            req
        });
    let acquire = match protocol::after_dead(state, generation, req.is_some(), response.status()) {
        AfterDead::Return => return Ok(response),
        AfterDead::Retry(acquire) => acquire,
    };
    Err(Box::pin(Slow {
        shared,
        index,
        user,
        step: Step::Refreshing { acquire, req },
    }))
}

/// Where credential `state`'s token goes: the layer's plan for an application
/// credential, the user provider's placement for a user's.
fn placement_of<S>(shared: &Shared<S>, index: usize, user: &Option<Arc<CredentialState>>) -> Placement {
    match user {
        None => shared.layer.plans[index].placement.clone(),
        Some(user) => Placement::of(&user.config.credential.provider.placement),
    }
}

impl<S, B> Slow<S, B>
where
    S: Service<Request<B>>,
{
    fn poll<T>(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<SlowOutput<S, B, Response<T>>>
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
                        Some(route) => prepare_replay(&mut req, route, this.shared.layer.replay_limit),
                        None => None,
                    };
                    let placement = placement_of(this.shared, *this.index, this.user);
                    protocol::attach(&mut req, &placement, token.value.clone());
                    // NOTE: `svc` was polled ready before `call` took it from the service.
                    let fut = svc.call(req);
                    let watch = Watch {
                        shared: Arc::clone(this.shared),
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
                    let svc = this.shared.spare_service();
                    let placement = placement_of(this.shared, *this.index, this.user);
                    protocol::attach(&mut req, &placement, token.value.clone());
                    protocol::retrying(credential(this.shared, *this.index, this.user));
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
                    let response = match ready!(fut.poll(cx)) {
                        Ok(response) => response,
                        Err(err) => return Poll::Ready(SlowOutput::Done(Err(Error::inner(err)))),
                    };
                    #[cfg(feature = "follow-redirect")]
                    crate::redirect::check_followed(
                        &this.shared.layer.credentials.registry,
                        *this.index,
                        this.user.as_deref(),
                        &response,
                    );
                    let state = credential(this.shared, *this.index, this.user);
                    let dead = protocol::is_dead_answer(state, response.status(), response.headers());
                    protocol::after_retry(state, *generation, dead);
                    return Poll::Ready(SlowOutput::Done(Ok(response)));
                }
            }
        }
    }
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
