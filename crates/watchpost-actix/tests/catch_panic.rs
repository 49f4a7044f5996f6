//! `watchpost_actix::CatchPanic`: a panicking handler (or middleware)
//! answers the same 500 as the tower and axum adapters, the worker keeps
//! serving, and without watchpost's hook (never installed in this binary)
//! the middleware alerts itself, once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step should panic

use std::time::Duration;

use actix_web::dev::Service;
use actix_web::{test, web, App, HttpServer};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use watchpost::alert::{Alerter, MemorySink};
use watchpost::panic::{PANIC_BODY, PANIC_CONTENT_TYPE};
use watchpost_actix::CatchPanic;

async fn panics() -> String {
    actix_web::rt::task::yield_now().await;
    panic!("stock count went negative");
}

fn app(
    catch: CatchPanic,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .route("/", web::get().to(|| async { "hello" }))
        .route("/panic", web::get().to(panics))
        // Middleware whose `call` panics before any future exists.
        .wrap_fn(|req, srv| {
            if req.path() == "/panic-in-call" {
                panic!("middleware exploded");
            }
            srv.call(req)
        })
        .wrap(catch)
}

/// The 500 a panic becomes, as the client gets it: status, headers, body.
async fn panic_answer<S, B>(app: &S, path: &str) -> (u16, Vec<(String, String)>, String)
where
    S: Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<B>,
        Error = actix_web::Error,
    >,
    B: actix_web::body::MessageBody,
{
    let req = test::TestRequest::get().uri(path).to_request();
    let err = test::try_call_service(app, req)
        .await
        .err()
        .expect("a panic is answered through actix's error path");
    let res = err.error_response();
    let status = res.status().as_u16();
    let headers = res
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
        .collect();
    let body = actix_web::body::to_bytes(res.into_body()).await.unwrap();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

#[actix_web::test]
async fn panicking_handler_answers_the_same_500_as_every_adapter() {
    let app = test::init_service(app(CatchPanic::new())).await;
    for path in ["/panic", "/panic-in-call"] {
        let (status, headers, body) = panic_answer(&app, path).await;
        assert_eq!(status, 500, "{path}");
        assert_eq!(
            headers,
            [("content-type".to_owned(), PANIC_CONTENT_TYPE.to_owned())],
            "{path}"
        );
        assert_eq!(body, PANIC_BODY, "{path}");
    }
    // The same service goes on serving.
    let res = test::call_service(&app, test::TestRequest::get().uri("/").to_request()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(test::read_body(res).await, "hello");
}

#[actix_web::test]
async fn without_the_hook_the_middleware_alerts_once() {
    assert!(!watchpost::panic::is_installed());
    let sink = MemorySink::new();
    let alerter = Alerter::builder().sink(sink.clone()).build().unwrap();
    let app = test::init_service(app(CatchPanic::new().alerter(&alerter))).await;
    panic_answer(&app, "/panic?token=secret").await;
    panic_answer(&app, "/panic-in-call").await;
    let ok = test::call_service(&app, test::TestRequest::get().uri("/").to_request()).await;
    assert_eq!(ok.status(), 200);

    assert!(alerter.flush(Duration::from_secs(10)));
    let sent = sink.notifications();
    let titles: Vec<_> = sent.iter().map(|n| n.alert().title()).collect();
    assert_eq!(
        titles,
        [
            "panic: stock count went negative",
            "panic: middleware exploded"
        ]
    );
    let labels: Vec<_> = sent[0].alert().labels().collect();
    assert!(labels.contains(&("request", "GET /panic")), "{labels:?}");
    assert!(!sent[0].alert().detail_text().unwrap().contains("secret"));
}

#[actix_web::test]
async fn real_server_answers_500_then_serves_on_the_same_connection() {
    // One worker: the request after the panic lands on the same one.
    let server = HttpServer::new(|| app(CatchPanic::new()))
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);

    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut conn = BufReader::new(stream);
    let (status, head, body) = exchange(&mut conn, "/panic").await;
    assert_eq!(status, 500, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-type: {PANIC_CONTENT_TYPE}")),
        "{head}"
    );
    assert_eq!(body, PANIC_BODY);
    // Same connection, kept alive.
    let (status, _, body) = exchange(&mut conn, "/").await;
    assert_eq!(status, 200);
    assert_eq!(body, "hello");
    // And a new one.
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (status, _, _) = exchange(&mut BufReader::new(stream), "/panic-in-call").await;
    assert_eq!(status, 500);

    handle.stop(false).await;
}

/// One HTTP/1.1 request on a kept-alive connection: status, head, body.
async fn exchange(
    conn: &mut BufReader<tokio::net::TcpStream>,
    path: &str,
) -> (u16, String, String) {
    let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n");
    conn.get_mut().write_all(request.as_bytes()).await.unwrap();
    let read = async {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            assert!(
                conn.read_line(&mut line).await.unwrap() > 0,
                "connection closed: {head}"
            );
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().unwrap())
            })
            .unwrap();
        let mut body = vec![0; length];
        conn.read_exact(&mut body).await.unwrap();
        let status = head[9..12].parse().unwrap();
        (status, head, String::from_utf8(body).unwrap())
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the server answers")
}

#[actix_web::test]
async fn an_outer_rate_limit_adds_its_headers_to_the_panic_500_as_in_tower() {
    use watchpost::ratelimit::RateLimiter;
    let limiter = RateLimiter::per_ip("60/min".parse().unwrap());
    let app =
        test::init_service(app(CatchPanic::new()).wrap(watchpost_actix::RateLimit::new(limiter)))
            .await;
    let req = test::TestRequest::get()
        .uri("/panic")
        .peer_addr("203.0.113.9:5000".parse().unwrap())
        .to_request();
    let err = test::try_call_service(&app, req).await.err().unwrap();
    let res = err.error_response();
    assert_eq!(res.status().as_u16(), 500);
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(header("content-type").as_deref(), Some(PANIC_CONTENT_TYPE));
    assert_eq!(
        header("ratelimit-policy").as_deref(),
        Some("\"default\";q=60;w=60")
    );
    assert!(header("ratelimit").is_some());
    let body = actix_web::body::to_bytes(res.into_body()).await.unwrap();
    assert_eq!(body, PANIC_BODY.as_bytes());
}
