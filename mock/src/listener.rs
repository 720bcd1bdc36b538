//! Connections: the accept loop a server owns and one HTTP/1.1 connection task per
//! client, each request handed to `routing`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::routing::route;
use crate::state::ServerState;

/// Accepts connections until the task is aborted. Connection tasks live in a
/// [`JoinSet`] owned by this future, so aborting it aborts them all.
pub(crate) async fn accept_loop(listener: TcpListener, state: Arc<ServerState>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(serve_connection(stream, peer, Arc::clone(&state)));
                }
                Err(error) => {
                    // Typically out of file descriptors; give it a moment.
                    tracing::warn!(%error, "mock server failed to accept a connection");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(finished) = connections.join_next(), if !connections.is_empty() => {
                if let Err(error) = finished {
                    if error.is_panic() {
                        tracing::error!(%error, "mock server connection task panicked");
                    }
                }
            }
        }
    }
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, state: Arc<ServerState>) {
    // Latency tests measure the server, not Nagle's algorithm.
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request| route(Arc::clone(&state), request));
    let served = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(error) = served {
        tracing::debug!(%peer, %error, "mock server connection closed with an error");
    }
}
