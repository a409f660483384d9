//! The admin listener (`weir serve --admin-port`, on 127.0.0.1 unless `--admin-host`
//! says otherwise): what operates the server, kept off the public port.
//!
//! - `GET /`: a page that draws every served graph and updates each node's figures
//!   every second (`page.html`, embedded in the binary: nothing is fetched from
//!   elsewhere);
//! - `GET /admin/graphs`: each graph's revision, file, nodes and edges (as `weir graph`
//!   draws them, [`weir_engine::render::topology`]);
//! - `GET /admin/stats`: per graph and per node, the figures of the last second
//!   ([`stats`]);
//! - `POST /admin/reload`: reads every graph file again and swaps in those that changed
//!   (what SIGHUP does; see `weir serve`'s reload). 200 with each graph's revision and
//!   whether it was reloaded; 422 `reload_refused` with the reason when a file fails its
//!   check (every graph then serves as before); 503 when the server is stopping.

pub mod stats;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json as JsonBody, Router};
use serde_json::{json, Value as Json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use super::error::ApiError;
use super::AppState;
use stats::Sampler;

/// The page, embedded at build time.
const PAGE: &str = include_str!("page.html");

/// What a reload did to one graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphReload {
    /// The graph's name.
    pub name: String,
    /// Its file.
    pub file: String,
    /// Its revision serving now.
    pub revision: u64,
    /// Whether this reload swapped in a new revision.
    pub reloaded: bool,
}

/// A reload's outcome: every graph, or why the reload was refused (every graph then
/// serves as before).
pub type ReloadOutcome = Result<Vec<GraphReload>, String>;

/// A request for a reload, answered with its outcome.
pub type ReloadRequest = oneshot::Sender<ReloadOutcome>;

/// What the admin routes share.
#[derive(Clone)]
struct Admin {
    state: Arc<AppState>,
    reloads: mpsc::Sender<ReloadRequest>,
    sampler: Arc<Sampler>,
}

/// The admin router: the page, the graphs, the stats `sampler` keeps, and reloads sent
/// to `reloads` (whoever receives them reloads, one at a time, and answers each).
fn router(state: Arc<AppState>, reloads: mpsc::Sender<ReloadRequest>, sampler: Arc<Sampler>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/admin/graphs", get(graphs))
        .route("/admin/stats", get(stats))
        .route("/admin/reload", post(reload))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such admin route") })
        .with_state(Admin { state, reloads, sampler })
}

/// Serves the admin routes for `state`'s graphs on `listener`, sending reloads to
/// `reloads`, and samples the stats every [`stats::INTERVAL`], until `state`'s shutdown
/// is requested.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    reloads: mpsc::Sender<ReloadRequest>,
) -> std::io::Result<()> {
    let sampler = Sampler::new();
    let router = router(Arc::clone(&state), reloads, Arc::clone(&sampler));
    let shutdown = state.shutdown.clone();
    let sampling = {
        let shutdown = shutdown.clone();
        async move {
            let mut tick = tokio::time::interval(stats::INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.requested() => return,
                    _ = tick.tick() => sampler.sample(&state),
                }
            }
        }
    };
    let server = axum::serve(listener, router).with_graceful_shutdown(async move { shutdown.requested().await });
    let (served, ()) = tokio::join!(async move { server.await }, sampling);
    served
}

async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], PAGE).into_response()
}

async fn graphs(State(admin): State<Admin>) -> JsonBody<Json> {
    let graphs: Vec<Json> = admin
        .state
        .live()
        .iter()
        .map(|live| {
            let revision = live.current();
            let plan = revision.handle().plan();
            let topology = weir_engine::render::topology(plan);
            json!({
                "name": live.name(),
                "revision": revision.number(),
                "file": plan.origin,
                "nodes": topology.nodes.iter().map(|n| json!({ "name": n.name, "kind": n.kind, "label": n.label })).collect::<Vec<_>>(),
                "edges": topology.edges.iter().map(|e| json!({ "from": e.from, "to": e.to, "branch": e.branch })).collect::<Vec<_>>(),
            })
        })
        .collect();
    JsonBody(json!({ "graphs": graphs }))
}

async fn stats(State(admin): State<Admin>) -> JsonBody<Json> {
    JsonBody(admin.sampler.latest())
}

async fn reload(State(admin): State<Admin>) -> Response {
    let unavailable = || {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the server is stopping: no reload")
            .into_response()
    };
    let (tx, rx) = oneshot::channel();
    if admin.reloads.send(tx).await.is_err() {
        return unavailable();
    }
    match rx.await {
        Ok(Ok(graphs)) => {
            let graphs: Vec<Json> = graphs
                .iter()
                .map(|g| json!({ "name": g.name, "file": g.file, "revision": g.revision, "reloaded": g.reloaded }))
                .collect();
            JsonBody(json!({ "graphs": graphs })).into_response()
        }
        Ok(Err(reason)) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "reload_refused", reason).into_response(),
        Err(_) => unavailable(),
    }
}
