//! `CatchPanicLayer` through plain tower: panics in `call` and in the
//! response future become the same 500, the service keeps serving, and
//! without watchpost's hook (never installed in this binary) the layer
//! alerts itself, once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step should panic

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{service_fn, Layer, Service, ServiceExt};
use watchpost::alert::{Alerter, MemorySink};
use watchpost::panic::{PANIC_BODY, PANIC_CONTENT_TYPE};
use watchpost_tower::catch_panic::ResponseFuture;
use watchpost_tower::{CatchPanic, CatchPanicLayer};

/// Answers `ok`, panics in its future on `/panic`.
async fn handler(req: Request<String>) -> Result<Response<Full<Bytes>>, Infallible> {
    tokio::task::yield_now().await;
    if req.uri().path() == "/panic" {
        panic!("order {} has no lines", 42);
    }
    Ok(Response::builder()
        .header("x-handler", "yes")
        .body(Full::new(Bytes::from("ok")))
        .unwrap())
}

/// A service whose `call` itself panics, before returning a future.
#[derive(Clone)]
struct PanicsInCall;

impl Service<Request<String>> for PanicsInCall {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<String>) -> Self::Future {
        if req.uri().path() == "/panic" {
            panic!("panicked in call");
        }
        ready(Ok(Response::new(Full::new(Bytes::from("ok")))))
    }
}

fn get(path: &str) -> Request<String> {
    Request::get(path).body(String::new()).unwrap()
}

async fn assert_panic_response(res: Response<Full<Bytes>>) {
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(res.headers()["content-type"], PANIC_CONTENT_TYPE);
    assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(res.headers().len(), 1);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, PANIC_BODY);
    assert_eq!(body, "Internal Server Error");
}

#[tokio::test]
async fn panic_in_future() {
    let svc = CatchPanicLayer::new().layer(service_fn(handler));
    assert_panic_response(svc.oneshot(get("/panic")).await.unwrap()).await;
}

#[tokio::test]
async fn panic_in_call() {
    let svc = CatchPanicLayer::new().layer(PanicsInCall);
    assert_panic_response(svc.oneshot(get("/panic")).await.unwrap()).await;
}

#[tokio::test]
async fn responses_pass_through_untouched() {
    let svc = CatchPanicLayer::new().layer(service_fn(handler));
    // The inner body type is kept: no boxing, no wrapper.
    let res: Response<Full<Bytes>> = svc.oneshot(get("/")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-handler"], "yes");
    assert!(res.headers().get("content-type").is_none());
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "ok");
}

#[tokio::test]
async fn inner_errors_pass_through() {
    let svc = CatchPanicLayer::new().layer(service_fn(|_: Request<String>| async {
        Err::<Response<Full<Bytes>>, _>("refused")
    }));
    assert_eq!(svc.oneshot(get("/")).await.unwrap_err(), "refused");
}

#[tokio::test]
async fn keeps_serving_after_a_panic() {
    for svc in [
        CatchPanic::new(service_fn(handler)).boxed_clone(),
        CatchPanic::new(PanicsInCall).boxed_clone(),
    ] {
        let mut svc = svc;
        for _ in 0..3 {
            let res = svc
                .ready()
                .await
                .unwrap()
                .call(get("/panic"))
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
            let res = svc.ready().await.unwrap().call(get("/")).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
        }
    }
}

#[tokio::test]
async fn without_the_hook_the_layer_alerts_once() {
    assert!(!watchpost::panic::is_installed());
    let sink = MemorySink::new();
    let alerter = Alerter::builder().sink(sink.clone()).build().unwrap();
    let layer = CatchPanicLayer::new().alerter(&alerter);

    let res = layer
        .layer(service_fn(handler))
        .oneshot(get("/panic?token=secret"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let res = layer
        .layer(PanicsInCall)
        .oneshot(get("/panic"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);

    assert!(alerter.flush(Duration::from_secs(10)));
    let titles: Vec<_> = sink
        .notifications()
        .iter()
        .map(|n| n.alert().title().to_owned())
        .collect();
    assert_eq!(
        titles,
        ["panic: order 42 has no lines", "panic: panicked in call"]
    );
    let first = &sink.notifications()[0];
    let labels: Vec<_> = first.alert().labels().collect();
    assert!(labels.contains(&("request", "GET /panic")), "{labels:?}");
    assert!(
        !first.alert().detail_text().unwrap().contains("secret"),
        "no query string in alerts"
    );
}

#[tokio::test]
async fn without_an_alerter_nothing_is_sent() {
    let sink = MemorySink::new();
    let alerter = Alerter::builder().sink(sink.clone()).build().unwrap();
    let svc = CatchPanicLayer::new().layer(service_fn(handler));
    let res = svc.oneshot(get("/panic")).await.unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(alerter.flush(Duration::from_secs(10)));
    assert!(sink.is_empty());
}

#[test]
fn layer_service_and_future_are_send_sync_clone() {
    fn clone_send_sync<T: Clone + Send + Sync + 'static>() {}
    fn send<T: Send>() {}
    clone_send_sync::<CatchPanicLayer>();
    clone_send_sync::<CatchPanic<PanicsInCall>>();
    send::<ResponseFuture<Ready<Result<Response<Full<Bytes>>, Infallible>>>>();
}

#[test]
fn accessors_reach_the_inner_service() {
    let mut svc = CatchPanic::new(PanicsInCall);
    let _: &PanicsInCall = svc.get_ref();
    let _: &mut PanicsInCall = svc.get_mut();
    let _: PanicsInCall = svc.into_inner();
}

/// Polls `future` once with a waker that does nothing.
fn poll_once<F: std::future::Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    std::pin::Pin::new(future).poll(&mut cx)
}

#[test]
#[should_panic(expected = "`CatchPanic`'s `ResponseFuture` polled after completion")]
fn a_response_future_polled_after_completion_panics() {
    let mut svc = CatchPanicLayer::new().layer(PanicsInCall);
    let mut future = svc.call(get("/panic"));
    assert!(matches!(poll_once(&mut future), Poll::Ready(Ok(_))));
    let _ = poll_once(&mut future);
}

#[test]
#[should_panic(expected = "`RateLimit`'s `ResponseFuture` polled after completion")]
fn a_rate_limit_response_future_polled_after_completion_panics() {
    let limiter = watchpost::ratelimit::RateLimiter::per_ip("1/min".parse().unwrap());
    let mut svc = watchpost_tower::RateLimitLayer::new(limiter).layer(PanicsInCall);
    let request = || {
        let mut req = get("/");
        req.extensions_mut()
            .insert(std::net::SocketAddr::from(([203, 0, 113, 1], 1)));
        req
    };
    let mut allowed = Box::pin(svc.call(request()));
    assert!(matches!(poll_once(&mut allowed), Poll::Ready(Ok(_))));
    let mut rejected = Box::pin(svc.call(request()));
    let Poll::Ready(Ok(response)) = poll_once(&mut rejected) else {
        panic!("the 429 is ready at once");
    };
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let _ = poll_once(&mut rejected);
}
