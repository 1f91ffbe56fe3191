//! The HTTP/1.1 accept loop: a cap on concurrent connections and a deadline for a request's headers,
//! which `axum::serve` has neither of (it gives hyper no timer, so a client that sends half a header
//! holds its connection for ever, before any request timeout starts).
//!
//! ```text
//! listener ─► permit (≤ max_connections) ─► hyper http1 (header_read_timeout) ─► router + ConnectInfo
//! ```
//! A connection beyond the cap waits in the listen backlog until one closes. On shutdown the loop stops
//! accepting, every connection finishes its request in flight and closes, and `serve` returns when the
//! last one has (the caller bounds that with its drain window).

use std::{sync::Arc, time::Duration};

use axum::{Router, extract::ConnectInfo, serve::Listener};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::sync::{Semaphore, watch};

use crate::tls::PeerAddr;

/// The cap on `max_connections` (far above what one process serves).
const MOST_CONNECTIONS: usize = 1 << 20;

/// Limits of the accept loop.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    /// Most connections open at once.
    pub(crate) max_connections: usize,
    /// How long a client has to send a request's headers (also an idle keep-alive connection's next ones).
    pub(crate) header_read_timeout: Duration,
}

/// Serves `router` on `listener` until `shutdown` completes, then drains.
pub(crate) async fn serve<L>(
    mut listener: L,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    L: Listener<Addr = std::net::SocketAddr>,
{
    let max = u32::try_from(limits.max_connections.clamp(1, MOST_CONNECTIONS)).unwrap_or(1);
    let open = Arc::new(Semaphore::new(max as usize));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = open.clone().acquire_owned() => permit.map_err(std::io::Error::other)?,
            () = &mut shutdown => break,
        };
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let service = tower::ServiceExt::map_request(
            router.clone(),
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(PeerAddr(peer)));
                request
            },
        );
        let connection = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = stop.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection closed with an error");
            }
            drop(permit);
        });
    }
    let _ = stop_tx.send(true);
    // Every connection holds a permit until it closes: all of them back means all closed.
    let _all = open.acquire_many(max).await.map_err(std::io::Error::other)?;
    Ok(())
}
