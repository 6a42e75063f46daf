//! A small HTTP proxy between an operator and the API server, to make the API server throttle (HTTP 429),
//! slow down, or vanish for that operator only.
//!
//! The operator gets a kubeconfig naming `http://127.0.0.1:<port>` (plain HTTP, no credentials); the proxy
//! forwards every request with the cluster's admin client (the operator's usual identity in the suite) and
//! streams the answer back (watches included). Modes ([`Mode`]): `Pass`; `Throttle` answers every request
//! `429 Too Many Requests` with `Retry-After: 1`, as the API server's priority and fairness does;
//! `Delay(d)` holds every request `d` before forwarding it; `Cut` breaks every open stream and every new
//! request's connection, as a network partition would.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{self, HeaderMap, StatusCode};
use axum::response::Response;
use futures::StreamExt;
use http_body_util::BodyExt;
use kube::Client;
use tokio::sync::watch;

use super::*;

/// What the proxy does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Throttle,
    Delay(Duration),
    Cut,
}

#[derive(Default)]
struct Counts {
    forwarded: AtomicU64,
    watches: AtomicU64,
    writes: AtomicU64,
    throttled: AtomicU64,
    cut: AtomicU64,
}

#[derive(Clone)]
struct Shared {
    upstream: Client,
    mode: watch::Receiver<Mode>,
    counts: Arc<Counts>,
}

/// A running proxy; stops when dropped.
pub struct ApiProxy {
    pub port: u16,
    /// A kubeconfig that talks to the API server through this proxy.
    pub kubeconfig: PathBuf,
    mode: watch::Sender<Mode>,
    counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

impl ApiProxy {
    /// Starts a proxy named `name` (its kubeconfig: `<log dir>/<name>.kubeconfig`) in `Pass` mode.
    pub async fn start(name: &str) -> anyhow::Result<ApiProxy> {
        let upstream = client().await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (tx, rx) = watch::channel(Mode::Pass);
        let counts = Arc::new(Counts::default());
        let shared = Shared { upstream, mode: rx, counts: counts.clone() };
        let app = axum::Router::new().fallback(forward).with_state(shared);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("  api proxy stopped: {e}");
            }
        });
        std::fs::create_dir_all(log_dir())?;
        let kubeconfig = log_dir().join(format!("{name}.kubeconfig"));
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: proxy\n  cluster:\n    server: http://127.0.0.1:{port}\n\
                 contexts:\n- name: proxy\n  context:\n    cluster: proxy\n    user: proxy\n\
                 current-context: proxy\nusers:\n- name: proxy\n  user: {{}}\n"
            ),
        )?;
        eprintln!("  api proxy {name} on 127.0.0.1:{port}");
        Ok(ApiProxy { port, kubeconfig, mode: tx, counts, task })
    }

    pub fn set(&self, mode: Mode) {
        eprintln!("  api proxy on :{}: {mode:?}", self.port);
        let _ = self.mode.send(mode);
    }

    /// Requests forwarded so far: `(all, watches, writes)` (writes: every method but GET).
    pub fn traffic(&self) -> (u64, u64, u64) {
        let c = &self.counts;
        (c.forwarded.load(Ordering::Relaxed), c.watches.load(Ordering::Relaxed), c.writes.load(Ordering::Relaxed))
    }

    /// `(forwarded, answered 429, cut)` requests so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        let c = &self.counts;
        (c.forwarded.load(Ordering::Relaxed), c.throttled.load(Ordering::Relaxed), c.cut.load(Ordering::Relaxed))
    }
}

impl Drop for ApiProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Hop-by-hop headers and the ones the upstream client sets itself.
fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (k, v) in from {
        let n = k.as_str();
        if matches!(
            n,
            "host"
                | "connection"
                | "keep-alive"
                | "transfer-encoding"
                | "content-length"
                | "accept-encoding"
                | "content-encoding"
                | "upgrade"
                | "authorization"
        ) {
            continue;
        }
        to.append(k.clone(), v.clone());
    }
}

/// A broken connection: the body fails, so the server aborts it.
fn broken() -> Response {
    let s = futures::stream::once(async { Err::<Bytes, std::io::Error>(std::io::Error::other("cut off")) });
    Response::new(Body::from_stream(s))
}

async fn forward(State(s): State<Shared>, req: Request) -> Result<Response, Infallible> {
    let mode = *s.mode.borrow();
    match mode {
        Mode::Cut => {
            s.counts.cut.fetch_add(1, Ordering::Relaxed);
            return Ok(broken());
        }
        Mode::Throttle => {
            s.counts.throttled.fetch_add(1, Ordering::Relaxed);
            let body = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Too many requests, please try again later.","reason":"TooManyRequests","details":{"retryAfterSeconds":1},"code":429}"#;
            let mut r = Response::new(Body::from(body));
            *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            r.headers_mut().insert("retry-after", http::HeaderValue::from_static("1"));
            r.headers_mut().insert("content-type", http::HeaderValue::from_static("application/json"));
            return Ok(r);
        }
        Mode::Delay(d) => tokio::time::sleep(d).await,
        Mode::Pass => {}
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = body.collect().await.map(|b| b.to_bytes()) else { return Ok(broken()) };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let mut up = http::Request::builder().method(parts.method.clone()).uri(path);
    if let Some(h) = up.headers_mut() {
        copy_headers(&parts.headers, h);
    }
    let Ok(up) = up.body(kube::client::Body::from(bytes.to_vec())) else { return Ok(broken()) };
    s.counts.forwarded.fetch_add(1, Ordering::Relaxed);
    if parts.uri.query().is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1")) {
        s.counts.watches.fetch_add(1, Ordering::Relaxed);
    }
    if parts.method != http::Method::GET {
        s.counts.writes.fetch_add(1, Ordering::Relaxed);
    }
    let resp = match s.upstream.send(up).await {
        Ok(r) => r,
        Err(_) => return Ok(broken()),
    };
    let (rparts, rbody) = resp.into_parts();
    // The answer streams back until it ends or the proxy is cut.
    let mode = s.mode.clone();
    let data = rbody.into_data_stream();
    let stream = futures::stream::unfold((data, mode, false), |(mut data, mut mode, done)| async move {
        if done {
            return None;
        }
        tokio::select! {
            item = data.next() => item.map(|r| (r.map_err(std::io::Error::other), (data, mode, false))),
            _ = wait_cut(&mut mode) => Some((Err(std::io::Error::other("cut off")), (data, mode, true))),
        }
    });
    let mut out = Response::new(Body::from_stream(stream));
    *out.status_mut() = rparts.status;
    copy_headers(&rparts.headers, out.headers_mut());
    Ok(out)
}

async fn wait_cut(mode: &mut watch::Receiver<Mode>) {
    loop {
        if *mode.borrow_and_update() == Mode::Cut {
            return;
        }
        if mode.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
