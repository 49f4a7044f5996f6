//! The shared conformance suite through an actix-web `App`: the probes,
//! `RateLimit`, `CatchPanic` and `Monitor`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step should panic

use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header::HeaderValue;
use actix_web::{test, web, App};
use watchpost_testkit::{Harness, TestRequest, TestResponse};

struct Actix<S>(S);

impl<S, B> Harness for Actix<S>
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: actix_web::body::MessageBody + 'static,
{
    async fn call(&self, req: TestRequest) -> TestResponse {
        let method = actix_web::http::Method::from_bytes(req.method.as_bytes()).unwrap();
        let mut builder = test::TestRequest::default().method(method).uri(&req.uri);
        for (name, value) in req.headers {
            builder = builder.append_header((name, HeaderValue::from_bytes(&value).unwrap()));
        }
        if let Some(peer) = req.peer {
            builder = builder.peer_addr(peer);
        }
        // An `Err` is answered with its error response, as the server does.
        let res = match test::try_call_service(&self.0, builder.to_request()).await {
            Ok(res) => res.map_into_boxed_body().into_parts().1,
            Err(err) => err.error_response(),
        };
        let status = res.status().as_u16();
        let headers: Vec<(String, Vec<u8>)> = res
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect();
        let body = actix_web::body::to_bytes(res.into_body())
            .await
            .unwrap_or_else(|_| panic!("body error"))
            .to_vec();
        TestResponse::new(
            status,
            headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())),
            body,
        )
    }
}

#[actix_web::test]
async fn health_probes_conform() {
    watchpost_testkit::health::run(|health| async move {
        let app = App::new()
            .route("/", web::get().to(|| async { "hello" }))
            .configure(watchpost_actix::configure(health));
        Actix(test::init_service(app).await)
    })
    .await;
}

/// The app every rate-limiting run mounts.
async fn rate_limited(fixture: watchpost_testkit::rate_limit::Fixture) -> impl Harness {
    let app = App::new()
        .configure(watchpost_actix::configure(fixture.health))
        .default_service(web::to(|| async { "ok" }))
        .wrap(watchpost_actix::RateLimit::new(fixture.limiter));
    Actix(test::init_service(app).await)
}

#[actix_web::test]
async fn rate_limiting_conforms() {
    watchpost_testkit::rate_limit::run(rate_limited).await;
}

#[actix_web::test]
async fn rate_limiting_through_a_shared_store_conforms() {
    watchpost_testkit::rate_limit::run_shared(rate_limited).await;
}

/// The actix-web way to limit one route and method: `Route::wrap`; the
/// app's authentication (a middleware) in front, on the resource.
#[actix_web::test]
async fn limits_per_route_method_and_key_conform() {
    use actix_web::HttpMessage;
    use watchpost::ratelimit::RateLimitKey;
    use watchpost_actix::RateLimit;
    use watchpost_testkit::keys::{user_key, USER_HEADER};

    watchpost_testkit::keys::run(|fixture| async move {
        let app = App::new()
            .service(
                web::resource("/api/chat").route(
                    web::post()
                        .to(|| async { "chat" })
                        .wrap(RateLimit::new(fixture.chat)),
                ),
            )
            .service(
                web::resource("/api/data").route(
                    web::get()
                        .to(|| async { "data" })
                        .wrap(RateLimit::new(fixture.by_api_key)),
                ),
            )
            .service(
                web::resource("/api/me")
                    .route(
                        web::get()
                            .to(|| async { "me" })
                            .wrap(RateLimit::new(fixture.by_user)),
                    )
                    .wrap_fn(|req, srv| {
                        let user = user_key(req.headers().get(USER_HEADER).map(|v| v.as_bytes()));
                        if let Some(user) = user {
                            req.extensions_mut().insert::<RateLimitKey>(user);
                        }
                        srv.call(req)
                    }),
            )
            .route("/", web::get().to(|| async { "home" }));
        Actix(test::init_service(app).await)
    })
    .await;
}

#[actix_web::test]
async fn handler_panics_conform() {
    use watchpost_testkit::panics;

    panics::run(|fixture| async move {
        let app = App::new()
            .route("/ok", web::get().to(|| async { "ok" }))
            .route("/panic/{id}", web::get().to(panics::str_panic))
            .route(
                "/panic-string/{id}",
                web::get().to(|id: web::Path<String>| panics::string_panic(id.into_inner())),
            )
            .route("/panic-any", web::get().to(panics::other_panic))
            .wrap(watchpost_actix::CatchPanic::new().alerter(&fixture.alerter));
        Actix(test::init_service(app).await)
    })
    .await;
}

#[actix_web::test]
async fn http_monitor_conforms() {
    use actix_web::error::ErrorInternalServerError;
    use actix_web::HttpResponse;
    use watchpost_actix::{CatchPanic, Monitor};
    use watchpost_testkit::monitor;

    monitor::run(|fixture| async move {
        let app = App::new()
            // The probes first, outside the monitor.
            .configure(watchpost_actix::configure(fixture.health))
            .service(
                web::scope("")
                    .route("/users/{id}", web::get().to(|| async { "user" }))
                    .route(
                        "/users/{id}",
                        web::post().to(|| async { HttpResponse::InternalServerError().finish() }),
                    )
                    .route(
                        "/reports/{id}",
                        web::get().to(|| async {
                            Err::<String, _>(ErrorInternalServerError(monitor::REPORT_ERROR))
                        }),
                    )
                    .route("/crash/{id}", web::get().to(monitor::crash))
                    .wrap(CatchPanic::new())
                    .wrap(Monitor::new(fixture.monitor)),
            );
        Actix(test::init_service(app).await)
    })
    .await;
}

/// A `Watchpost`'s layers and probes, mounted as the crate docs say.
#[actix_web::test]
async fn the_handle_gives_one_message_for_one_bug() {
    use actix_web::HttpResponse;
    use watchpost_actix::WatchpostExt;

    watchpost_testkit::handle::run(|fixture| async move {
        let wp = fixture.watchpost;
        let app = App::new()
            .wrap(wp.layers()) // the probes too
            .route("/", web::get().to(|| async { "ok" }))
            .route(
                "/panic",
                web::get().to(watchpost_testkit::panics::str_panic),
            )
            .route(
                "/error",
                web::get().to(|| async { HttpResponse::InternalServerError().finish() }),
            );
        Actix(test::init_service(app).await)
    })
    .await;
}
