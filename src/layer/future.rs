use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{atomic::Ordering, Arc},
    task::{ready, Context, Poll},
};

use http::{Request, Response};
use pin_project::pin_project;
use tower_service::Service;

use super::service::{attach_token, prepare_replay, ReplayCopy, Shared};
use crate::{
    body::ReplayableBody,
    cache::{Acquire, CredentialState},
    error::{BoxError, Error},
};

/// Response future of [`OAuth2`](super::OAuth2).
#[pin_project]
pub struct ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    #[pin]
    state: State<S, B>,
    shared: Option<Arc<Shared<S>>>,
    index: usize,
}

#[pin_project(project = StateProj)]
enum State<S, B>
where
    S: Service<Request<B>>,
{
    /// Not for any credential: the inner future, untouched.
    Passthrough {
        #[pin]
        fut: S::Future,
    },
    /// No usable token: waiting for one, holding the ready service and the request.
    /// Boxed: the future stays small for the common states, at the price of one
    /// allocation on the path that waits for a token anyway.
    Acquiring {
        acquire: Acquire,
        pending: Option<Box<(S, Request<B>)>>,
        retry: bool,
    },
    /// Sent with token `generation`.
    Sent {
        #[pin]
        fut: S::Future,
        generation: u64,
        spare: Option<ReplayCopy<B>>,
    },
    /// The answer declared the token dead: waiting for its successor.
    Refreshing {
        acquire: Acquire,
        spare: Option<ReplayCopy<B>>,
    },
    /// Fresh token attached: waiting for the spare service to be ready.
    RetryReady {
        pending: Option<Box<(S, Request<B>)>>,
        generation: u64,
    },
    /// The one retry.
    Retrying {
        #[pin]
        fut: S::Future,
        generation: u64,
    },
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn passthrough(fut: S::Future) -> Self {
        Self {
            state: State::Passthrough { fut },
            shared: None,
            index: 0,
        }
    }

    pub(crate) fn acquiring(
        shared: Arc<Shared<S>>,
        index: usize,
        acquire: Acquire,
        svc: S,
        req: Request<B>,
        retry: bool,
    ) -> Self {
        Self {
            state: State::Acquiring {
                acquire,
                pending: Some(Box::new((svc, req))),
                retry,
            },
            shared: Some(shared),
            index,
        }
    }

    pub(crate) fn sent(
        fut: S::Future,
        shared: Arc<Shared<S>>,
        index: usize,
        generation: u64,
        spare: Option<ReplayCopy<B>>,
    ) -> Self {
        Self {
            state: State::Sent {
                fut,
                generation,
                spare,
            },
            shared: Some(shared),
            index,
        }
    }
}

fn credential<S>(shared: &Option<Arc<Shared<S>>>, index: usize) -> &Arc<CredentialState> {
    // NOTE: every state but `Passthrough` is built with `shared`, and `Passthrough` never
    // asks for it.
    let shared = shared.as_ref().expect("credential state of a routed request");
    &shared.layer.credentials.registry.states[index]
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    B: ReplayableBody,
{
    type Output = Result<Response<ResBody>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Passthrough { fut } => return fut.poll(cx).map_err(Error::inner),

                StateProj::Acquiring {
                    acquire,
                    pending,
                    retry,
                } => {
                    let token = match ready!(Pin::new(acquire).poll(cx)) {
                        Ok(token) => token,
                        Err(err) => return Poll::Ready(Err(err)),
                    };
                    let state = credential(this.shared, *this.index);
                    let (mut svc, mut req) = *pending.take().expect("polled after completion");
                    let limit = this.shared.as_ref().map_or(0, |s| s.layer.replay_limit);
                    let spare = if *retry {
                        prepare_replay(&mut req, limit)
                    } else {
                        None
                    };
                    attach_token(&mut req, &token, &state.config.credential.provider.placement);
                    // NOTE: `svc` was polled ready before `call` took it from the service.
                    let fut = svc.call(req);
                    this.state.set(State::Sent {
                        fut,
                        generation: token.generation,
                        spare,
                    });
                }

                StateProj::Sent {
                    fut,
                    generation,
                    spare,
                } => {
                    let response = ready!(fut.poll(cx)).map_err(Error::inner)?;
                    let state = credential(this.shared, *this.index);
                    let provider = &state.config.credential.provider;
                    if !provider.is_dead_token(response.status(), response.headers()) {
                        return Poll::Ready(Ok(response));
                    }
                    // Invalidates `generation` only if it is still the current token, and
                    // starts (or joins) the one refresh, retry or not.
                    let acquire = state.acquire(Some(*generation));
                    if acquire.is_ready_with(*generation) {
                        // The token was refused right after it was fetched: the answer is
                        // not about the token. Nothing to refresh, nothing to retry.
                        return Poll::Ready(Ok(response));
                    }
                    match spare.take() {
                        Some(spare) if spare.body.is_replayable() => {
                            tracing::debug!(provider = %provider.name, status = response.status().as_u16(), "dead-token answer; retrying once with a fresh token");
                            drop(response);
                            this.state.set(State::Refreshing {
                                acquire,
                                spare: Some(spare),
                            });
                        }
                        _ => return Poll::Ready(Ok(response)),
                    }
                }

                StateProj::Refreshing { acquire, spare } => {
                    let token = match ready!(Pin::new(acquire).poll(cx)) {
                        Ok(token) => token,
                        Err(err) => return Poll::Ready(Err(err)),
                    };
                    let state = credential(this.shared, *this.index);
                    let copy = spare.take().expect("polled after completion");
                    let mut req = copy.into_request();
                    let shared = this
                        .shared
                        .as_ref()
                        .expect("credential state of a routed request");
                    let svc = shared.spare_service();
                    attach_token(&mut req, &token, &state.config.credential.provider.placement);
                    state.stats.retries.fetch_add(1, Ordering::Relaxed);
                    this.state.set(State::RetryReady {
                        pending: Some(Box::new((svc, req))),
                        generation: token.generation,
                    });
                }

                StateProj::RetryReady { pending, generation } => {
                    let (service, _) = &mut **pending.as_mut().expect("polled after completion");
                    ready!(service.poll_ready(cx)).map_err(Error::inner)?;
                    let (mut service, req) = *pending.take().expect("polled after completion");
                    let fut = service.call(req);
                    let generation = *generation;
                    this.state.set(State::Retrying { fut, generation });
                }

                StateProj::Retrying { fut, generation } => {
                    let response = ready!(fut.poll(cx)).map_err(Error::inner)?;
                    let state = credential(this.shared, *this.index);
                    if state
                        .config
                        .credential
                        .provider
                        .is_dead_token(response.status(), response.headers())
                    {
                        state.refused_when_fresh(*generation);
                    }
                    return Poll::Ready(Ok(response));
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
