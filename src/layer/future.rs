use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{atomic::Ordering, Arc},
    task::{ready, Context, Poll},
};

use http::{Request, Response, StatusCode};
use pin_project::pin_project;
use tower_service::Service;

use super::service::{attach_token, prepare_replay, ReplayCopy, Shared};
use crate::{
    body::ReplayableBody,
    credential::{Acquire, CredentialState},
    error::{BoxError, Error},
    provider::Provider,
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

/// How to tell a dead-token answer, precomputed from the provider for the hot path.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DeadCheck {
    /// The provider declares no answer a dead token.
    Never,
    /// Exactly one status, and no predicate (the default: 401).
    Only(StatusCode),
    /// Ask the provider (several statuses, or a predicate on the answer).
    Provider,
}

impl DeadCheck {
    pub(crate) fn of(provider: &Provider) -> Self {
        match (&provider.dead_token_statuses[..], &provider.dead_token_when) {
            ([], None) => DeadCheck::Never,
            ([status], None) => DeadCheck::Only(*status),
            _ => DeadCheck::Provider,
        }
    }
}

impl<S, B> Watch<S, B> {
    fn credential(&self) -> &Arc<CredentialState> {
        credential(&self.shared, self.index, &self.user)
    }

    #[inline]
    fn is_dead<T>(&self, response: &Response<T>) -> bool {
        let check = match self.user {
            None => self.shared.layer.dead[self.index],
            Some(_) => DeadCheck::Provider,
        };
        match check {
            DeadCheck::Never => false,
            DeadCheck::Only(status) => response.status() == status,
            DeadCheck::Provider => self
                .credential()
                .config
                .credential
                .provider
                .is_dead_token(response.status(), response.headers()),
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
    /// No usable token: waiting for one, holding the ready service and the request.
    Acquiring {
        acquire: Acquire,
        pending: Option<(S, Request<B>)>,
        retry: bool,
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
        retry: bool,
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
    let acquire = state.acquire(Some(generation));
    if acquire.is_ready_with(generation) {
        // The token was refused right after it was fetched: the answer is not about the
        // token. Nothing to refresh, nothing to retry.
        return Ok(response);
    }
    let req = replay
        .filter(|replay| replay.body.is_replayable())
        .and_then(ReplayCopy::into_request);
    match req {
        Some(req) => {
            let provider = &state.config.credential.provider;
            tracing::debug!(provider = %provider.name, status = response.status().as_u16(), "dead-token answer; retrying once with a fresh token");
            Err(Box::pin(Slow {
                shared,
                index,
                user,
                step: Step::Refreshing {
                    acquire,
                    req: Some(req),
                },
            }))
        }
        None => Ok(response),
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
            let state = credential(this.shared, *this.index, this.user);
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
                    let replay = if *retry {
                        prepare_replay(&mut req, this.shared.layer.replay_limit)
                    } else {
                        None
                    };
                    let provider = &state.config.credential.provider;
                    attach_token(&mut req, &token, &provider.placement);
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
                    attach_token(&mut req, &token, &state.config.credential.provider.placement);
                    state.stats.retries.fetch_add(1, Ordering::Relaxed);
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
                    if state
                        .config
                        .credential
                        .provider
                        .is_dead_token(response.status(), response.headers())
                    {
                        state.refused_when_fresh(*generation);
                    }
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
