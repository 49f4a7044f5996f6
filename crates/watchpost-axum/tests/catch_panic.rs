//! `watchpost_axum::CatchPanicLayer` on a `Router`: a panicking handler
//! answers 500, the router keeps serving, and with watchpost's hook
//! installed (once, for this whole binary) each panic is alerted exactly
//! once, by the hook, even though the layer has the alerter too.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step should panic

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;
use watchpost::alert::{Alerter, MemorySink, Notification};
use watchpost::panic::{PANIC_BODY, PANIC_CONTENT_TYPE};
use watchpost_axum::CatchPanicLayer;

/// The alerter behind the hook, shared by every test here (the hook is
/// process-global).
fn alerts() -> &'static (Alerter, MemorySink) {
    static SHARED: OnceLock<(Alerter, MemorySink)> = OnceLock::new();
    SHARED.get_or_init(|| {
        let sink = MemorySink::new();
        let alerter = Alerter::builder()
            .service("axum-test")
            .sink(sink.clone())
            .build()
            .unwrap();
        watchpost::panic::try_install(&alerter).unwrap();
        (alerter, sink)
    })
}

/// The alerts whose title is `title`, once everything queued is delivered.
fn delivered(title: &str) -> Vec<Notification> {
    let (alerter, sink) = alerts();
    assert!(alerter.flush(Duration::from_secs(10)));
    sink.notifications()
        .into_iter()
        .filter(|n| n.alert().title() == title)
        .collect()
}

/// Each test panics at its own line: the hook's alerts are keyed (and
/// deduplicated) by location.
fn app(panicking: fn() -> String) -> Router {
    let (alerter, _) = alerts();
    Router::new()
        .route("/", get(|| async { "hello" }))
        .route(
            "/panic",
            get(move || async move {
                tokio::task::yield_now().await;
                panicking()
            }),
        )
        .layer(CatchPanicLayer::new().alerter(alerter))
}

async fn send(app: &Router, path: &str) -> (StatusCode, Option<String>, String) {
    let req = Request::get(path).body(Body::empty()).unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn panicking_handler_answers_500_and_the_router_keeps_serving() {
    let app = app(|| panic!("cart total overflowed"));
    let (status, content_type, body) = send(&app, "/panic").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(content_type.as_deref(), Some(PANIC_CONTENT_TYPE));
    assert_eq!(body, PANIC_BODY);

    let (status, _, body) = send(&app, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "hello");
}

#[tokio::test]
async fn hook_and_layer_alert_exactly_once() {
    let app = app(|| panic!("invoice {} not found", 7));
    let (status, _, _) = send(&app, "/panic?id=7").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);

    let sent = delivered("panic: invoice 7 not found");
    assert_eq!(
        sent.len(),
        1,
        "one alert, not one from the hook and one from the layer"
    );
    let alert = sent[0].alert();
    let labels: Vec<_> = alert.labels().collect();
    // Sent by the hook: it alone knows the location.
    assert!(
        labels
            .iter()
            .any(|(n, v)| *n == "location" && v.contains("catch_panic.rs:")),
        "{labels:?}"
    );
    assert!(labels.contains(&("request", "GET /panic")), "{labels:?}");
    assert!(sent[0].key().starts_with("panic:"), "{}", sent[0].key());
    assert_eq!(sent[0].service().name, "axum-test");
}

#[tokio::test]
async fn real_server_answers_500_then_serves_the_next_request() {
    let app = app(|| panic!("database pool poisoned"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let first = http_get(addr, "/panic").await;
    assert!(first.starts_with("HTTP/1.1 500"), "{first}");
    assert!(
        first.contains(&format!("content-type: {PANIC_CONTENT_TYPE}")),
        "{first}"
    );
    assert!(first.ends_with(PANIC_BODY), "{first}");
    let second = http_get(addr, "/").await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    assert!(second.ends_with("hello"), "{second}");

    assert_eq!(delivered("panic: database pool poisoned").len(), 1);
    server.abort();
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .expect("the server answers and closes")
    .unwrap();
    response
}
