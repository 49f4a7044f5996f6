//! The shared conformance suite through plain tower: `HealthService`,
//! `RateLimitLayer` over a service that routes probes to it,
//! `CatchPanicLayer`, and `MonitorLayer` with routes named by a
//! `RoutePattern`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step should panic

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use tower::util::BoxCloneService;
use tower::{service_fn, Layer, ServiceBuilder, ServiceExt};
use watchpost_testkit::{Harness, TestRequest, TestResponse};
use watchpost_tower::{CatchPanicLayer, HealthService, MonitorLayer, RateLimitLayer, RoutePattern};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Tower<S>(S);

impl<S, B> Harness for Tower<S>
where
    S: tower::Service<Request<Empty<Bytes>>, Response = Response<B>, Error = Infallible> + Clone,
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    async fn call(&self, req: TestRequest) -> TestResponse {
        let mut builder = Request::builder().method(req.method).uri(&req.uri);
        for (name, value) in &req.headers {
            builder = builder.header(*name, value.as_slice());
        }
        let mut request = builder.body(Empty::<Bytes>::new()).unwrap();
        if let Some(peer) = req.peer {
            request.extensions_mut().insert(peer);
        }
        let res = self.0.clone().oneshot(request).await.unwrap();
        let status = res.status().as_u16();
        let headers: Vec<(String, Vec<u8>)> = res
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect();
        let body = match res.into_body().collect().await {
            Ok(collected) => collected.to_bytes().to_vec(),
            Err(_) => panic!("body error"),
        };
        TestResponse::new(
            status,
            headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())),
            body,
        )
    }
}

#[tokio::test]
async fn health_probes_conform() {
    watchpost_testkit::health::run(|health| async move { Tower(HealthService::new(health)) }).await;
}

/// The app every rate-limiting run mounts.
async fn rate_limited(fixture: watchpost_testkit::rate_limit::Fixture) -> impl Harness {
    let health = HealthService::new(fixture.health);
    let app = service_fn(move |req: Request<Empty<Bytes>>| {
        let health = health.clone();
        async move {
            if health.get_ref().is_probe_path(req.uri().path()) {
                health.oneshot(req).await
            } else {
                Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
            }
        }
    });
    let svc = RateLimitLayer::new(fixture.limiter).layer(app);
    Tower(BoxCloneService::new(svc))
}

#[tokio::test]
async fn rate_limiting_conforms() {
    watchpost_testkit::rate_limit::run(rate_limited).await;
}

#[tokio::test]
async fn rate_limiting_through_a_shared_store_conforms() {
    watchpost_testkit::rate_limit::run_shared(rate_limited).await;
}

type Branch = BoxCloneService<Request<Empty<Bytes>>, Response<Full<Bytes>>, Infallible>;

/// One route's handler, answering `body`, under `limiter`.
fn limited(limiter: watchpost::ratelimit::RateLimiter, body: &'static str) -> Branch {
    let handler = service_fn(move |_req: Request<Empty<Bytes>>| async move { Ok(text(200, body)) });
    BoxCloneService::new(RateLimitLayer::new(limiter).layer(handler))
}

/// Plain tower has no router: the app routes by hand, and puts each
/// limiter on its own branch (route and method) only.
#[tokio::test]
async fn limits_per_route_method_and_key_conform() {
    use watchpost::ratelimit::RateLimitKey;
    use watchpost_testkit::keys::{user_key, USER_HEADER};

    watchpost_testkit::keys::run(|fixture| async move {
        let chat = limited(fixture.chat, "chat");
        let data = limited(fixture.by_api_key, "data");
        let me = limited(fixture.by_user, "me");
        let app = service_fn(move |mut req: Request<Empty<Bytes>>| {
            let (chat, data, me) = (chat.clone(), data.clone(), me.clone());
            async move {
                let method = req.method().as_str().to_owned();
                match (method.as_str(), req.uri().path()) {
                    ("POST", "/api/chat") => chat.oneshot(req).await,
                    (_, "/api/chat") => Ok(text(405, "")),
                    ("GET", "/api/data") => data.oneshot(req).await,
                    ("GET", "/api/me") => {
                        // The app's authentication, in front of the limiter.
                        let user = user_key(req.headers().get(USER_HEADER).map(|v| v.as_bytes()));
                        if let Some(user) = user {
                            req.extensions_mut().insert::<RateLimitKey>(user);
                        }
                        me.oneshot(req).await
                    }
                    ("GET", "/") => Ok(text(200, "home")),
                    _ => Ok(text(404, "")),
                }
            }
        });
        Tower(BoxCloneService::new(app))
    })
    .await;
}

fn text(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(body.into()));
    *res.status_mut() = http::StatusCode::from_u16(status).unwrap();
    res
}

/// The panics app: plain tower has no router, the handler matches paths.
async fn panicking(req: Request<Empty<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    use watchpost_testkit::panics;

    let path = req.uri().path();
    let body = if path == "/ok" {
        "ok".to_owned()
    } else if path.starts_with("/panic/") {
        panics::str_panic().await
    } else if let Some(id) = path.strip_prefix("/panic-string/") {
        panics::string_panic(id.to_owned()).await
    } else if path == "/panic-any" {
        panics::other_panic().await
    } else {
        return Ok(text(404, ""));
    };
    Ok(text(200, body))
}

#[tokio::test]
async fn handler_panics_conform() {
    watchpost_testkit::panics::run(|fixture| async move {
        let svc = CatchPanicLayer::new()
            .alerter(&fixture.alerter)
            .layer(service_fn(panicking));
        Tower(BoxCloneService::new(svc))
    })
    .await;
}

/// The route a request matched, set by the "router" in front of the
/// monitor (plain tower has none: [`route_of`] plays it).
#[derive(Clone, Copy, Debug)]
struct Matched(&'static str);

/// Names routes from the [`Matched`] extension.
#[derive(Clone, Copy, Debug, Default)]
struct MatchedRoute;

impl RoutePattern for MatchedRoute {
    type Route = &'static str;

    fn route(&self, extensions: &http::Extensions) -> Option<&'static str> {
        extensions.get::<Matched>().map(|m| m.0)
    }

    fn as_str<'a>(route: &'a &'static str) -> &'a str {
        route
    }
}

/// The pattern `path` matches, as a router would find it.
fn route_of(path: &str) -> Option<&'static str> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["users", id] if !id.is_empty() => Some("/users/{id}"),
        ["reports", id] if !id.is_empty() => Some("/reports/{id}"),
        ["crash", id] if !id.is_empty() => Some("/crash/{id}"),
        _ => None,
    }
}

/// The monitored handlers; `GET /reports/{id}` fails with the service's
/// error, the tower way.
async fn monitored(req: Request<Empty<Bytes>>) -> Result<Response<Full<Bytes>>, BoxError> {
    use watchpost_testkit::monitor;

    let route = req.extensions().get::<Matched>().map(|m| m.0);
    Ok(match (req.method().as_str(), route) {
        ("GET", Some("/users/{id}")) => text(200, "user"),
        ("POST", Some("/users/{id}")) => text(500, ""),
        ("GET", Some("/reports/{id}")) => return Err(monitor::REPORT_ERROR.into()),
        ("GET", Some("/crash/{id}")) => text(200, monitor::crash().await),
        _ => text(404, ""),
    })
}

#[tokio::test]
async fn http_monitor_conforms() {
    watchpost_testkit::monitor::run(|fixture| async move {
        let monitored = ServiceBuilder::new()
            .map_request(|mut req: Request<Empty<Bytes>>| {
                if let Some(pattern) = route_of(req.uri().path()) {
                    req.extensions_mut().insert(Matched(pattern));
                }
                req
            })
            .layer(MonitorLayer::with_routes(fixture.monitor, MatchedRoute))
            .layer(CatchPanicLayer::new())
            .service_fn(monitored);
        let monitored = BoxCloneService::new(monitored);
        // The probes outside the monitor.
        let health = HealthService::new(fixture.health);
        let app = service_fn(move |req: Request<Empty<Bytes>>| {
            let (health, monitored) = (health.clone(), monitored.clone());
            async move {
                if health.get_ref().is_probe_path(req.uri().path()) {
                    health.oneshot(req).await
                } else {
                    // What serving does with a service error: a 500.
                    let result = monitored.oneshot(req).await;
                    Ok(result.unwrap_or_else(|e| text(500, e.to_string())))
                }
            }
        });
        Tower(BoxCloneService::new(app))
    })
    .await;
}

/// A `Watchpost`'s layers, with the probes routed outside them.
#[tokio::test]
async fn the_handle_gives_one_message_for_one_bug() {
    use watchpost_tower::WatchpostLayer;

    watchpost_testkit::handle::run(|fixture| async move {
        let wp = fixture.watchpost;
        let health = HealthService::new(wp.health().clone());
        let app = service_fn(move |req: Request<Empty<Bytes>>| {
            let health = health.clone();
            async move {
                Ok::<_, Infallible>(match req.uri().path() {
                    "/" => text(200, "ok"),
                    "/panic" => text(200, watchpost_testkit::panics::str_panic().await),
                    "/error" => text(500, ""),
                    path if health.get_ref().is_probe_path(path) => health.oneshot(req).await?,
                    _ => text(404, ""),
                })
            }
        });
        let app = ServiceBuilder::new()
            .layer(WatchpostLayer::new(&wp))
            .service(app);
        Tower(BoxCloneService::new(app))
    })
    .await;
}
