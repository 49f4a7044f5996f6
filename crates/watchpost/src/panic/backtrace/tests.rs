//! Tests of the trimmed, folded backtrace.
use super::*;

/// A backtrace as `Backtrace`'s `Display` prints it for a panic in a
/// request handler under a catch-panic layer on a Tokio worker.
const HANDLER_BACKTRACE: &str = "   0: watchpost::panic::backtrace::capture
         at ./src/panic/backtrace.rs:30:21
   1: watchpost::panic::hook::on_panic
         at ./src/panic/hook.rs:250:5
   2: <alloc::boxed::Box<dyn for<'a, 'b> core::ops::function::Fn<(&'a std::panic::PanicHookInfo<'b>,), Output = ()> + core::marker::Sync + core::marker::Send> as core::ops::function::Fn<(&std::panic::PanicHookInfo,)>>::call
         at /rustc/hash/library/alloc/src/boxed.rs:2254:9
   3: std::panicking::panic_with_hook
         at /rustc/hash/library/std/src/panicking.rs:833:13
   4: std::panicking::panic_handler::{closure#0}
         at /rustc/hash/library/std/src/panicking.rs:691:13
   5: std::sys::backtrace::__rust_end_short_backtrace::<std::panicking::panic_handler::{closure#0}, !>
         at /rustc/hash/library/std/src/sys/backtrace.rs:182:18
   6: __rustc::rust_begin_unwind
         at /rustc/hash/library/std/src/panicking.rs:689:5
   7: core::panicking::panic_fmt
         at /rustc/hash/library/core/src/panicking.rs:80:14
   8: core::panicking::panic
         at /rustc/hash/library/core/src/panicking.rs:150:5
   9: core::option::unwrap_failed
         at /rustc/hash/library/core/src/option.rs:2236:5
  10: core::option::Option<T>::unwrap
         at /rustc/hash/library/core/src/option.rs:1016:21
  11: shop::orders::total
         at ./src/orders.rs:88:41
  12: shop::orders::show::{{closure}}
         at ./src/orders.rs:31:17
  13: <watchpost::panic::catch::CatchUnwind<F> as core::future::future::Future>::poll::{{closure}}
         at ./crates/watchpost/src/panic/catch.rs:200:20
  14: <core::panic::unwind_safe::AssertUnwindSafe<F> as core::ops::function::FnOnce<()>>::call_once
         at /rustc/hash/library/core/src/panic/unwind_safe.rs:274:9
  15: std::panicking::catch_unwind::do_call
         at /rustc/hash/library/std/src/panicking.rs:581:40
  16: __rust_try
  17: std::panicking::catch_unwind
         at /rustc/hash/library/std/src/panicking.rs:544:19
  18: tokio::runtime::task::harness::poll_future
  19: tokio::runtime::scheduler::multi_thread::worker::run
";

/// The quickstart's `GET /panic` (axum 0.8, watchpost's catch-panic
/// layer, a Tokio worker), as printed: the handler is a `#[path]`
/// include of `examples/quickstart.rs` into a binary in `src/bin/`, run
/// from the package's directory (hence `./`); the rest is absolute.
const AXUM_BACKTRACE: &str = "   0: watchpost::panic::backtrace::capture
         at /build/watchpost/crates/watchpost/src/panic/backtrace.rs:127:21
   1: watchpost::panic::hook::on_panic
         at /build/watchpost/crates/watchpost/src/panic/hook.rs:293:42
   2: watchpost::panic::hook::set::{{closure}}::{{closure}}
         at /build/watchpost/crates/watchpost/src/panic/hook.rs:64:17
   3: <alloc::boxed::Box<dyn for<'a, 'b> core::ops::function::Fn<(&'a std::panic::PanicHookInfo<'b>,), Output = ()> + core::marker::Sync + core::marker::Send> as core::ops::function::Fn<(&std::panic::PanicHookInfo,)>>::call
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/alloc/src/boxed.rs:2254:9
   4: std::panicking::panic_with_hook
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/panicking.rs:833:13
   5: std::panicking::panic_handler::{closure#0}
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/panicking.rs:691:13
   6: std::sys::backtrace::__rust_end_short_backtrace::<std::panicking::panic_handler::{closure#0}, !>
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/sys/backtrace.rs:182:18
   7: __rustc::rust_begin_unwind
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/panicking.rs:689:5
   8: core::panicking::panic_fmt
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/panicking.rs:80:14
   9: quickstart_e2e::quickstart::panic_handler::{{closure}}
         at ./src/bin/../../quickstart.rs:167:5
  10: <F as axum::handler::Handler<((),),S>>::call::{{closure}}
         at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/axum-0.8.9/src/handler/mod.rs:217:38
  11: <core::pin::Pin<P> as core::future::future::Future>::poll
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/future/future.rs:133:9
  12: <futures_util::future::future::map::Map<Fut,F> as core::future::future::Future>::poll
         at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/futures-util-0.3.34/src/future/future/map.rs:55:44
  13: <futures_util::future::future::Map<Fut,F> as core::future::future::Future>::poll
         at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/futures-util-0.3.34/src/lib.rs:85:35
  14: <axum::handler::future::IntoServiceFuture<F> as core::future::future::Future>::poll
         at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/axum-0.8.9/src/macros.rs:42:39
  15: <axum::util::MapIntoResponseFuture<F> as core::future::future::Future>::poll
         at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/axum-0.8.9/src/util.rs:94:47
  16: <core::pin::Pin<P> as core::future::future::Future>::poll
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/future/future.rs:133:9
  17: <tower::util::oneshot::Oneshot<S,Req> as core::future::future::Future>::poll
         at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tower-0.5.3/src/util/oneshot.rs:96:42
  18: <axum::routing::route::RouteFuture<E> as core::future::future::Future>::poll
         at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/axum-0.8.9/src/routing/route.rs:149:41
  19: <watchpost::panic::catch::CatchUnwind<F> as core::future::future::Future>::poll::{{closure}}
         at /build/watchpost/crates/watchpost/src/panic/catch.rs:207:40
  20: <core::panic::unwind_safe::AssertUnwindSafe<F> as core::ops::function::FnOnce<()>>::call_once
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/panic/unwind_safe.rs:274:9
  21: std::panicking::catch_unwind::do_call
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/panicking.rs:581:40
  22: __rust_try
  23: std::panicking::catch_unwind
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/panicking.rs:544:19
  24: std::panic::catch_unwind
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/panic.rs:359:14
  25: watchpost::panic::catch::CatchScope::run
         at /build/watchpost/crates/watchpost/src/panic/catch.rs:123:22
  26: <watchpost::panic::catch::CatchUnwind<F> as core::future::future::Future>::poll
         at /build/watchpost/crates/watchpost/src/panic/catch.rs:207:15
  27: <watchpost_tower::catch_panic::ResponseFuture<F> as core::future::future::Future>::poll
         at /build/watchpost/crates/watchpost-tower/src/catch_panic.rs:219:58
  28: <hyper_util::service::oneshot::Oneshot<S,Req> as core::future::future::Future>::poll
         at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/hyper-util-0.1.21/src/service/oneshot.rs:53:42
  29: <hyper::proto::h1::dispatch::Server<S,hyper::body::incoming::Incoming> as hyper::proto::h1::dispatch::Dispatch>::poll_msg
         at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/hyper-1.12.0/src/proto/h1/dispatch.rs:603:48
  30: tokio::runtime::task::core::Core<T,S>::poll::{{closure}}
         at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.54.1/src/runtime/task/core.rs:380:24
  31: tokio::runtime::task::harness::poll_future::{{closure}}
         at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.54.1/src/runtime/task/harness.rs:537:30
  32: <core::panic::unwind_safe::AssertUnwindSafe<F> as core::ops::function::FnOnce<()>>::call_once
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/panic/unwind_safe.rs:274:9
  33: std::panicking::catch_unwind::do_call
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/panicking.rs:581:40
  34: __rust_try
  35: std::panicking::catch_unwind
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/panicking.rs:544:19
  36: tokio::runtime::task::harness::poll_future
         at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.54.1/src/runtime/task/harness.rs:525:18
  37: tokio::runtime::scheduler::multi_thread::worker::Context::run_task
         at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.54.1/src/runtime/scheduler/multi_thread/worker.rs:696:9
  38: std::sys::backtrace::__rust_begin_short_backtrace
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/sys/backtrace.rs:166:18
  39: std::thread::lifecycle::spawn_unchecked::{{closure}}::{{closure}}
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/thread/lifecycle.rs:91:13
  40: start_thread
         at ./nptl/pthread_create.c:442:8
  41: clone3
         at ./misc/../sysdeps/unix/sysv/linux/x86_64/clone3.S:81:0
";

/// A `#[get("/panic")]` handler under actix-web 4 with watchpost's
/// catch-panic middleware, the binary run from elsewhere than its
/// build directory (absolute paths).
const ACTIX_BACKTRACE: &str = "   0: watchpost::panic::backtrace::capture
         at /home/ci/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/watchpost-0.1.0/src/panic/backtrace.rs:127:21
   1: watchpost::panic::hook::on_panic
         at /home/ci/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/watchpost-0.1.0/src/panic/hook.rs:293:42
   2: std::panicking::panic_with_hook
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/panicking.rs:833:13
   3: std::panicking::panic_handler::{closure#0}
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/panicking.rs:691:13
   4: std::sys::backtrace::__rust_end_short_backtrace::<std::panicking::panic_handler::{closure#0}, !>
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/sys/backtrace.rs:182:18
   5: __rustc::rust_begin_unwind
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/panicking.rs:689:5
   6: core::panicking::panic_fmt
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/panicking.rs:80:14
   7: <shop::panic_handler as actix_web::service::HttpServiceFactory>::register::panic_handler::{{closure}}
         at /home/ci/build/shop/src/main.rs:31:5
   8: actix_web::handler::handler_service::{{closure}}::{{closure}}
         at /home/ci/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/actix-web-4.12.1/src/handler.rs:113:22
   9: <core::pin::Pin<P> as core::future::future::Future>::poll
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/future/future.rs:133:9
  10: <actix_web::resource::Resource<T> as actix_web::service::HttpServiceFactory>::register::{{closure}}::{{closure}}
         at /home/ci/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/actix-web-4.12.1/src/resource.rs:451:28
  11: <core::pin::Pin<P> as core::future::future::Future>::poll
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/future/future.rs:133:9
  12: <actix_service::map_err::MapErrFuture<A,Req,F,E> as core::future::future::Future>::poll
         at /home/ci/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/actix-service-2.0.3/src/map_err.rs:99:18
  13: <core::pin::Pin<P> as core::future::future::Future>::poll
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/future/future.rs:133:9
  14: <watchpost::panic::catch::CatchUnwind<F> as core::future::future::Future>::poll::{{closure}}
         at /home/ci/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/watchpost-0.1.0/src/panic/catch.rs:207:40
  15: <core::panic::unwind_safe::AssertUnwindSafe<F> as core::ops::function::FnOnce<()>>::call_once
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/panic/unwind_safe.rs:274:9
  16: std::panicking::catch_unwind::do_call
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/panicking.rs:581:40
  17: __rust_try
  18: std::panicking::catch_unwind
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/panicking.rs:544:19
  19: std::panic::catch_unwind
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/panic.rs:359:14
  20: watchpost::panic::catch::CatchScope::run
         at /home/ci/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/watchpost-0.1.0/src/panic/catch.rs:123:22
  21: <watchpost_actix::catch_panic::CatchPanicMiddleware<S> as actix_service::Service<actix_web::service::ServiceRequest>>::call::{{closure}}
         at /home/ci/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/watchpost-actix-0.1.0/src/catch_panic.rs:130:27
  22: actix_http::h1::dispatcher::InnerDispatcher<T,S,B,X,U>::poll_request
         at /home/ci/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/actix-http-3.11.2/src/h1/dispatcher.rs:776:47
  23: tokio::task::local::LocalSet::tick
         at /home/ci/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.54.1/src/task/local.rs:769:31
  24: actix_rt::arbiter::Arbiter::with_tokio_rt::{{closure}}
         at /home/ci/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/actix-rt-2.11.0/src/arbiter.rs:143:24
  25: std::sys::backtrace::__rust_begin_short_backtrace
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/sys/backtrace.rs:166:18
";

/// A panic in plain `fn main` code, run from the crate's directory.
const MAIN_BACKTRACE: &str = "   0: watchpost::panic::backtrace::capture
         at /home/me/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/watchpost-0.1.0/src/panic/backtrace.rs:127:21
   1: watchpost::panic::hook::on_panic
   2: std::panicking::panic_with_hook
   3: std::sys::backtrace::__rust_end_short_backtrace::<std::panicking::panic_handler::{closure#0}, !>
   4: __rustc::rust_begin_unwind
   5: core::panicking::panic_fmt
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/panicking.rs:80:14
   6: core::result::unwrap_failed
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/result.rs:1867:5
   7: core::result::Result<T,E>::expect
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/result.rs:1185:23
   8: hello::load_config
         at ./src/main.rs:9:40
   9: hello::main
         at ./src/main.rs:3:18
  10: core::ops::function::FnOnce::call_once
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/ops/function.rs:250:5
  11: std::sys::backtrace::__rust_begin_short_backtrace
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/sys/backtrace.rs:166:18
  12: std::rt::lang_start::{{closure}}
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/rt.rs:206:18
  13: main
  14: __libc_start_call_main
         at ./csu/../sysdeps/nptl/libc_start_call_main.h:58:16
";

/// An index out of bounds three application frames deep, with the
/// standard library's iterators and a tracing span between them.
const DEEP_BACKTRACE: &str = "   0: std::sys::backtrace::__rust_end_short_backtrace
   1: __rustc::rust_begin_unwind
   2: core::panicking::panic_fmt
   3: core::panicking::panic_bounds_check
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/panicking.rs:280:5
   4: <usize as core::slice::index::SliceIndex<[T]>>::index
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/slice/index.rs:255:10
   5: core::slice::index::<impl core::ops::index::Index<I> for [T]>::index
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/slice/index.rs:18:15
   6: <alloc::vec::Vec<T,A> as core::ops::index::Index<I>>::index
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/alloc/src/vec/mod.rs:3571:9
   7: shop::db::row_total
         at /home/ci/build/shop/crates/api/src/db.rs:12:9
   8: <core::iter::adapters::map::Map<I,F> as core::iter::traits::iterator::Iterator>::fold
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/iter/adapters/map.rs:128:19
   9: <i64 as core::iter::traits::accum::Sum>::sum
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/iter/traits/accum.rs:149:18
  10: shop::db::order_total::{{closure}}
         at /home/ci/build/shop/crates/api/src/db.rs:30:5
  11: <tracing::instrument::Instrumented<T> as core::future::future::Future>::poll
         at /home/ci/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tracing-0.1.41/src/instrument.rs:321:9
  12: shop::orders::show::{{closure}}
         at /home/ci/build/shop/crates/api/src/orders.rs:88:41
  13: <F as axum::handler::Handler<(M,T1),S>>::call::{{closure}}
         at /home/ci/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/axum-0.8.9/src/handler/mod.rs:223:52
  14: <core::pin::Pin<P> as core::future::future::Future>::poll
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/future/future.rs:133:9
  15: <futures_util::future::future::map::Map<Fut,F> as core::future::future::Future>::poll
         at /home/ci/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/futures-util-0.3.34/src/future/future/map.rs:55:44
  16: <axum::routing::route::RouteFuture<E> as core::future::future::Future>::poll
         at /home/ci/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/axum-0.8.9/src/routing/route.rs:149:41
  17: <watchpost::panic::catch::CatchUnwind<F> as core::future::future::Future>::poll::{{closure}}
  18: <core::panic::unwind_safe::AssertUnwindSafe<F> as core::ops::function::FnOnce<()>>::call_once
  19: std::panicking::catch_unwind::do_call
  20: __rust_try
  21: std::panicking::catch_unwind
";

#[test]
fn backtrace_keeps_the_frames_between_the_panic_and_the_catch() {
    // Paths are now shortened (`./src/orders.rs` was shown as printed).
    let trimmed = trim(HANDLER_BACKTRACE);
    assert_eq!(
        trimmed,
        "  0: shop::orders::total\n        at src/orders.rs:88:41\n  \
         1: shop::orders::show::{{closure}}\n        at src/orders.rs:31:17\n"
    );
}

#[test]
fn axum_handler_panic_shows_the_handler_and_folds_the_framework() {
    assert_eq!(
        trim(AXUM_BACKTRACE),
        "  0: quickstart_e2e::quickstart::panic_handler::{{closure}}\n        \
         at quickstart.rs:167:5\n     \
         … 9 framework frames\n"
    );
}

#[test]
fn axum_handler_panic_keeps_every_frame_in_the_report_marked() {
    let frames = parse_frames(AXUM_BACKTRACE);
    let structured = structured(&classify(kept(&frames)));
    assert_eq!(structured.len(), 10);
    let first = &structured[0];
    assert_eq!(
        (first.function(), first.file(), first.line(), first.column()),
        (
            "quickstart_e2e::quickstart::panic_handler::{{closure}}",
            Some("quickstart.rs"),
            Some(167),
            Some(5)
        )
    );
    assert_eq!(first.in_app(), Some(true));
    assert!(structured[1..].iter().all(|f| f.in_app() == Some(false)));
    let files: Vec<_> = structured.iter().filter_map(StackFrame::file).collect();
    assert_eq!(
        files,
        [
            "quickstart.rs",
            "axum-0.8.9/src/handler/mod.rs",
            "core/src/future/future.rs",
            "futures-util-0.3.34/src/future/future/map.rs",
            "futures-util-0.3.34/src/lib.rs",
            "axum-0.8.9/src/macros.rs",
            "axum-0.8.9/src/util.rs",
            "core/src/future/future.rs",
            "tower-0.5.3/src/util/oneshot.rs",
            "axum-0.8.9/src/routing/route.rs",
        ]
    );
    assert_eq!(
        structured[9].function(),
        "<axum::routing::route::RouteFuture<E> as core::future::future::Future>::poll"
    );
}

#[test]
fn actix_handler_panic_shows_the_handler_and_folds_the_framework() {
    assert_eq!(
        trim(ACTIX_BACKTRACE),
        "  0: <shop::panic_handler as actix_web::service::HttpServiceFactory>\
         ::register::panic_handler::{{closure}}\n        \
         at src/main.rs:31:5\n     \
         … 5 framework frames\n"
    );
    let frames = parse_frames(ACTIX_BACKTRACE);
    let structured = structured(&classify(kept(&frames)));
    assert_eq!(structured.len(), 6);
    assert_eq!(
        structured[1].file(),
        Some("actix-web-4.12.1/src/handler.rs")
    );
    assert_eq!(structured[1].in_app(), Some(false));
}

#[test]
fn main_panic_shows_the_functions_up_to_main() {
    assert_eq!(
        trim(MAIN_BACKTRACE),
        "  0: hello::load_config\n        at src/main.rs:9:40\n  \
         1: hello::main\n        at src/main.rs:3:18\n"
    );
}

#[test]
fn deep_panic_folds_each_run_of_framework_frames_between_app_frames() {
    assert_eq!(
        trim(DEEP_BACKTRACE),
        "     … 3 framework frames\n  \
         0: shop::db::row_total\n        at src/db.rs:12:9\n     \
         … 2 framework frames\n  \
         1: shop::db::order_total::{{closure}}\n        at src/db.rs:30:5\n     \
         … 1 framework frame\n  \
         2: shop::orders::show::{{closure}}\n        at src/orders.rs:88:41\n     \
         … 4 framework frames\n"
    );
}

#[test]
fn backtrace_stops_at_main_and_thread_entry() {
    // The path is now shortened (`./src/main.rs` was shown as printed).
    let text = "   0: std::sys::backtrace::__rust_end_short_backtrace
   1: core::panicking::panic_fmt
   2: app::main
         at ./src/main.rs:12:5
   3: core::ops::function::FnOnce::call_once
   4: std::sys::backtrace::__rust_begin_short_backtrace
   5: std::rt::lang_start::{{closure}}
   6: main
";
    assert_eq!(trim(text), "  0: app::main\n        at src/main.rs:12:5\n");
}

#[test]
fn backtrace_without_the_marker_skips_the_hook_frames() {
    let text = "   0: watchpost::panic::backtrace::capture
   1: std::panicking::panic_with_hook
   2: app::work
   3: std::rt::lang_start
";
    assert_eq!(trim(text), "  0: app::work\n");
}

#[test]
fn backtrace_is_capped() {
    let mut text = String::from("   0: core::panicking::panic\n");
    for i in 1..=40 {
        text.push_str(&format!("  {i}: app::recurse\n"));
    }
    let trimmed = trim(&text);
    assert_eq!(trimmed.lines().count(), FRAMES_MAX + 1);
    assert!(trimmed.ends_with("… 15 more frames\n"), "{trimmed}");
}

#[test]
fn cap_counts_app_frames_and_the_rest_is_more_frames() {
    // 30 application frames, each called through a framework frame.
    let mut text = String::from("   0: core::panicking::panic\n");
    for i in 0..30 {
        text.push_str(&format!("  {}: app::step{i}\n", 2 * i + 1));
        text.push_str(&format!(
            "  {}: <core::pin::Pin<P> as core::future::future::Future>::poll\n",
            2 * i + 2
        ));
    }
    let trimmed = trim(&text);
    let shown = trimmed
        .lines()
        .filter(|l| l.contains(": app::step"))
        .count();
    assert_eq!(shown, FRAMES_MAX);
    assert!(trimmed.contains(" 24: app::step24\n"), "{trimmed}");
    assert!(!trimmed.contains("app::step25"), "{trimmed}");
    assert_eq!(
        trimmed.matches("     … 1 framework frame\n").count(),
        FRAMES_MAX - 1
    );
    // After step24: its Pin frame, and 5 × (step, Pin) but the last Pin,
    // which trailing-machinery trimming dropped.
    assert!(
        trimmed.ends_with(" 24: app::step24\n     … 10 more frames\n"),
        "{trimmed}"
    );
    let frames = parse_frames(&text);
    let structured = structured(&classify(kept(&frames)));
    assert_eq!(structured.len(), 2 * FRAMES_MAX - 1);
    assert_eq!(
        structured.last().map(StackFrame::function),
        Some("app::step24")
    );
}

#[test]
fn cap_reached_exactly_folds_the_tail_instead_of_more_frames() {
    let mut text = String::new();
    for i in 0..FRAMES_MAX {
        text.push_str(&format!("  {i}: app::recurse\n"));
    }
    text.push_str("  90: tokio::runtime::task::harness::poll_future::{{closure}}\n");
    text.push_str("  91: tokio::runtime::task::core::Core<T,S>::poll\n");
    let trimmed = trim(&text);
    assert!(
        trimmed.ends_with(" 24: app::recurse\n     … 2 framework frames\n"),
        "{trimmed}"
    );
    assert!(!trimmed.contains("more"), "{trimmed}");
}

#[test]
fn report_frames_are_capped() {
    let mut text = String::from("   0: app::main\n");
    for i in 1..=150 {
        text.push_str(&format!("  {i}: tokio::runtime::park::deep\n"));
    }
    assert_eq!(trim(&text), "  0: app::main\n     … 150 framework frames\n");
    let frames = parse_frames(&text);
    assert_eq!(structured(&classify(kept(&frames))).len(), STACK_FRAMES_MAX);
}

#[test]
fn backtrace_of_only_machinery_is_shown_anyway() {
    let text = "   0: core::panicking::panic\n   1: core::option::unwrap_failed\n";
    assert_eq!(
        trim(text),
        "  0: core::panicking::panic\n  1: core::option::unwrap_failed\n"
    );
    assert_eq!(trim(""), "no frames\n");
    assert_eq!(trim("garbage\n\n"), "no frames\n");
}

#[test]
fn backtrace_without_app_frames_is_shown_unfolded_with_short_paths() {
    // A panic inside the standard library: nothing but machinery.
    let text = "   0: core::panicking::panic_fmt
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/panicking.rs:80:14
   1: core::slice::index::slice_end_index_len_fail
         at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/slice/index.rs:68:5
";
    assert_eq!(
        trim(text),
        "  0: core::panicking::panic_fmt\n        at core/src/panicking.rs:80:14\n  \
         1: core::slice::index::slice_end_index_len_fail\n        \
         at core/src/slice/index.rs:68:5\n"
    );
    // A panic in the runtime's own task, no code of ours under it.
    let text = "   0: std::sys::backtrace::__rust_end_short_backtrace
   1: core::panicking::panic_fmt
   2: tokio::runtime::time::entry::TimerEntry::poll_elapsed
         at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.54.1/src/runtime/time/entry.rs:584:13
   3: <tokio::time::sleep::Sleep as core::future::future::Future>::poll
         at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.54.1/src/time/sleep.rs:452:22
   4: std::panicking::catch_unwind
";
    assert_eq!(
        trim(text),
        "  0: tokio::runtime::time::entry::TimerEntry::poll_elapsed\n        \
         at tokio-1.54.1/src/runtime/time/entry.rs:584:13\n  \
         1: <tokio::time::sleep::Sleep as core::future::future::Future>::poll\n        \
         at tokio-1.54.1/src/time/sleep.rs:452:22\n"
    );
    let frames = parse_frames(text);
    let structured = structured(&classify(kept(&frames)));
    assert_eq!(structured.len(), 2);
    assert!(structured.iter().all(|f| f.in_app() == Some(false)));
}

#[test]
fn frames_of_a_registry_or_git_crate_are_folded_whatever_the_crate() {
    let text = "   0: serde_json::de::from_str
         at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/serde_json-1.0.140/src/de.rs:2699:5
   1: mylib::parse
         at /root/.cargo/git/checkouts/mylib-0123456789abcdef/89abcde/src/lib.rs:10:5
   2: app::load
         at /srv/app/src/load.rs:7:14
";
    assert_eq!(
        trim(text),
        "     … 2 framework frames\n  0: app::load\n        at src/load.rs:7:14\n"
    );
    // Without a source path, only the crate's name decides.
    let text = "   0: serde_json::de::from_str\n   1: tokio::spawn\n   2: app::load\n";
    assert_eq!(
        trim(text),
        "  0: serde_json::de::from_str\n     … 1 framework frame\n  1: app::load\n"
    );
}

#[test]
fn crate_is_read_from_every_symbol_form() {
    let cases = [
        ("axum::routing::Router<S>::route", Some("axum")),
        ("shop::orders::show::{{closure}}", Some("shop")),
        ("shop::orders::show::{closure#0}", Some("shop")),
        (
            "<axum::routing::route::RouteFuture<E> as core::future::future::Future>::poll",
            Some("axum"),
        ),
        ("<F as axum::handler::Handler<((),),S>>::call::{{closure}}", Some("axum")),
        ("<core::pin::Pin<P> as core::future::future::Future>::poll", Some("core")),
        ("<shop::Order as core::fmt::Display>::fmt", Some("shop")),
        ("<&mut shop::Cart as core::iter::Iterator>::next", Some("shop")),
        ("<&'a shop::Cart as core::iter::IntoIterator>::into_iter", Some("shop")),
        ("<[T] as core::slice::SlicePattern>::as_slice", Some("core")),
        ("<(A, B) as tower::Layer<S>>::layer", Some("tower")),
        ("<usize as core::slice::index::SliceIndex<[T]>>::index", Some("core")),
        ("<dyn core::any::Any>::type_id", Some("core")),
        (
            "<alloc::boxed::Box<dyn core::ops::function::Fn(&str) -> bool> as core::ops::function::Fn<(&str,)>>::call",
            Some("alloc"),
        ),
        (
            "<<F as shop::Handler>::Future as core::future::future::Future>::poll",
            Some("shop"),
        ),
        (
            "<actix_web::resource::ResourceService as actix_service::Service<actix_web::service::ServiceRequest>>::call",
            Some("actix_web"),
        ),
        ("core::slice::index::<impl core::ops::index::Index<I> for [T]>::index", Some("core")),
        ("__rustc::rust_begin_unwind", Some("__rustc")),
        ("__rust_try", None),
        ("main", None),
        ("{{closure}}", None),
        ("<unknown>", None),
        ("<F as G>::call", None),
        ("", None),
        ("<", None),
        ("<shop::A as", Some("shop")),
    ];
    for (symbol, expected) in cases {
        assert_eq!(crate_of(symbol, 0), expected, "{symbol}");
    }
    assert!(is_application("shop::orders::show::{{closure}}"));
    assert!(!is_application("__rustc::rust_begin_unwind"));
    assert!(!is_application(
        "watchpost_tower::catch_panic::ResponseFuture<F>::poll"
    ));
    assert!(!is_application("<F as actix_service::Service<Req>>::call"));
    assert!(!is_application("main"));
}

#[test]
fn paths_are_shortened_to_the_crate() {
    let local = Origin::Local;
    let dependency = Origin::Dependency;
    let cases = [
        ("./src/main.rs", "src/main.rs", local),
        ("src/main.rs", "src/main.rs", local),
        ("main.rs", "main.rs", local),
        ("/home/ci/build/app/crates/api/src/orders.rs", "src/orders.rs", local),
        (r"C:\build\shop\src\main.rs", "src/main.rs", local),
        ("/home/me/src/shop/src/orders.rs", "src/orders.rs", local),
        ("/home/me/src/shop/tests/api.rs", "tests/api.rs", local),
        ("/home/me/src/shop/examples/demo.rs", "examples/demo.rs", local),
        ("/home/me/src/shop/benches/load.rs", "benches/load.rs", local),
        ("/home/me/src/shop/src/tests/util.rs", "src/tests/util.rs", local),
        ("./src/bin/../../quickstart.rs", "quickstart.rs", local),
        ("../shared/src/lib.rs", "src/lib.rs", local),
        ("/srv/app/target/debug/build/shop-1a2b3c4d/out/routes.rs", "routes.rs", local),
        // Not a registry: `api` isn't an index directory.
        ("/home/me/registry/src/api/orders.rs", "src/api/orders.rs", local),
        ("", "", local),
        (
            "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/axum-0.8.9/src/handler/mod.rs",
            "axum-0.8.9/src/handler/mod.rs",
            dependency,
        ),
        (
            "/usr/local/cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.54.1/src/runtime/task/core.rs",
            "tokio-1.54.1/src/runtime/task/core.rs",
            dependency,
        ),
        (
            r"C:\Users\ci\.cargo\registry\src\index.crates.io-1949cf8c6b5b557f\hyper-1.12.0\src\proto\h1\dispatch.rs",
            "hyper-1.12.0/src/proto/h1/dispatch.rs",
            dependency,
        ),
        (
            "/home/ci/.cargo/git/checkouts/tokio-5a1e3b2f7c9d0e41/1a2b3c4/tokio/src/runtime/mod.rs",
            "tokio/src/runtime/mod.rs",
            dependency,
        ),
        (
            "/home/ci/.cargo/git/checkouts/mylib-0123456789abcdef/89abcde/src/lib.rs",
            "mylib/src/lib.rs",
            dependency,
        ),
        (
            "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/future/future.rs",
            "core/src/future/future.rs",
            dependency,
        ),
        (
            "/home/ci/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/lib/rustlib/src/rust/library/std/src/panicking.rs",
            "std/src/panicking.rs",
            dependency,
        ),
    ];
    for (path, short, origin) in cases {
        assert_eq!(short_path(path), (short.to_owned(), origin), "{path}");
    }
}

#[test]
fn at_lines_keep_line_and_column() {
    let short = |line: &str| short_at(line).0;
    assert_eq!(short("at ./src/main.rs:42:5"), "at src/main.rs:42:5");
    assert_eq!(short("at /x/y/src/lib.rs:7"), "at src/lib.rs:7");
    assert_eq!(short("at /x/lib.rs"), "at lib.rs");
    assert_eq!(
        short(r"at C:\build\shop\src\main.rs:3:1"),
        "at src/main.rs:3:1"
    );
    assert_eq!(short("at :3:4"), "at :3:4");
    assert_eq!(short("something else"), "something else");
}

#[test]
fn nothing_panics_on_cut_or_odd_input() {
    for fixture in [
        AXUM_BACKTRACE,
        ACTIX_BACKTRACE,
        DEEP_BACKTRACE,
        MAIN_BACKTRACE,
    ] {
        for (i, _) in fixture.char_indices().step_by(7) {
            let cut = &fixture[..i];
            let _ = trim(cut);
            let _ = structured(&classify(kept(&parse_frames(cut))));
        }
    }
    let deep = format!("0: {}x::y\n", "<".repeat(5000));
    for odd in [
        "0: <\n",
        "0: >>>>\n",
        "0: < as >::\n",
        "0: <a as b\n",
        "0: <'\n",
        "0: <&'a\n",
        "0: ::\n",
        "0: app::f\nat \nat ../../..\nat /rustc\nat /rustc/h\nat registry/src/x-12345678\n",
        "0: app::f\nat git/checkouts/a-12345678/rev\nat lib/rustlib/src/rust\n",
        &deep,
    ] {
        let _ = trim(odd);
    }
}

#[test]
fn real_backtrace_starts_at_the_caller() {
    // Captured outside a panic: no marker, the test's own frame first.
    // Its frames are watchpost's, so none is the application's: shown
    // unfolded, as any backtrace without application frames. Both ways
    // of capturing, whatever the build.
    #[inline(never)]
    fn here(capture: fn() -> Captured) -> Captured {
        capture()
    }
    for (how, capture) in [
        ("all", capture_all as fn() -> Captured),
        ("shown", capture_shown),
    ] {
        let captured = here(capture);
        let first = captured.text.lines().next().unwrap_or_default();
        if captured.text.contains("unavailable") {
            assert!(captured.frames.is_empty());
            continue;
        }
        assert!(
            first.contains("real_backtrace_starts_at_the_caller::here"),
            "{how}: {}",
            captured.text
        );
        assert!(
            !captured.text.contains("/rustc/"),
            "{how}: {}",
            captured.text
        );
        let frame = captured.frames.first().map(StackFrame::function);
        assert!(
            frame.is_some_and(|f| f.contains("real_backtrace_starts_at_the_caller::here")),
            "{how}: {:?}",
            captured.frames
        );
        assert!(captured.frames.len() <= FRAMES_MAX);
    }
}

#[test]
fn frames_keep_the_same_selection_as_the_text() {
    // The file is now shortened (`./src/orders.rs` was kept as printed)
    // and the frames are marked.
    let frames = parse_frames(HANDLER_BACKTRACE);
    let structured = structured(&classify(kept(&frames)));
    assert_eq!(structured.len(), 2);
    assert_eq!(structured[0].function(), "shop::orders::total");
    assert_eq!(structured[0].file(), Some("src/orders.rs"));
    assert_eq!(
        (structured[0].line(), structured[0].column()),
        (Some(88), Some(41))
    );
    assert_eq!(structured[0].in_app(), Some(true));
    assert_eq!(structured[1].function(), "shop::orders::show::{{closure}}");
}

/// The frames of `text` as raw frames: each frame's symbols and `at`
/// lines, resolved by [`resolve_shown`]'s caller only when asked.
fn raw_frames(text: &str) -> Vec<Vec<(String, Option<String>)>> {
    parse_frames(text)
        .into_iter()
        .map(|f| vec![(f.symbol.to_owned(), f.at.first().map(|a| (*a).to_owned()))])
        .collect()
}

/// [`resolve_shown`] on `raw`, counting the frames it resolved.
fn resolve_counting(raw: &[Vec<(String, Option<String>)>]) -> (Vec<Resolved>, usize) {
    let mut asked = 0;
    let resolved = resolve_shown(raw, |frame, out| {
        asked += 1;
        out.extend(frame.iter().map(|(symbol, at)| Resolved {
            symbol: symbol.clone(),
            at: at.clone(),
        }));
    });
    (resolved, asked)
}

#[test]
fn frames_under_the_boundary_are_never_resolved() {
    // `main`'s panic: the standard library's entry and the C library's
    // frames below it are not asked for.
    let raw = raw_frames(MAIN_BACKTRACE);
    let (resolved, asked) = resolve_counting(&raw);
    let boundary = raw
        .iter()
        .position(|f| f[0].0.contains("__rust_begin_short_backtrace"))
        .unwrap();
    assert_eq!(asked, boundary + 1, "resolved up to the boundary, included");
    assert!(asked < raw.len());
    assert!(resolved.iter().all(|r| !r.symbol.contains("__libc_start")));
    // What is shown is what resolving everything shows.
    let shown = |frames: &[Frame<'_>]| {
        let entries = classify(kept(frames));
        (render(&entries), structured(&entries))
    };
    let partial: Vec<Frame<'_>> = resolved.iter().map(Resolved::frame).collect();
    assert_eq!(shown(&partial), shown(&parse_frames(MAIN_BACKTRACE)));

    // A handler's panic: up to the catch-panic layer's `catch_unwind`.
    let raw = raw_frames(HANDLER_BACKTRACE);
    let (resolved, asked) = resolve_counting(&raw);
    assert!(asked < raw.len(), "{asked} of {}", raw.len());
    assert!(resolved.iter().all(|r| !r.symbol.starts_with("tokio::")));
    let partial: Vec<Frame<'_>> = resolved.iter().map(Resolved::frame).collect();
    assert_eq!(shown(&partial), shown(&parse_frames(HANDLER_BACKTRACE)));
}

#[test]
fn a_boundary_above_the_panic_machinery_does_not_stop_resolution() {
    // A `catch_unwind` between the hook and the panic (a hook wrapper
    // catching its own panics) is no boundary of the panic's stack: the
    // frames go on until the one below the marker.
    let mut raw = vec![
        vec![("watchpost::panic::hook::on_panic".to_owned(), None)],
        vec![("std::panicking::catch_unwind".to_owned(), None)],
    ];
    raw.extend(raw_frames(MAIN_BACKTRACE).into_iter().skip(2));
    let (resolved, asked) = resolve_counting(&raw);
    assert!(resolved.iter().any(|r| r.symbol == "hello::main"));
    assert!(asked < raw.len());
    // Outside a panic (no marker), everything is resolved.
    let no_marker: Vec<_> = raw_frames(MAIN_BACKTRACE)
        .into_iter()
        .filter(|f| !f[0].0.contains("__rust_end_short_backtrace"))
        .collect();
    assert_eq!(resolve_counting(&no_marker).1, no_marker.len());
}

#[test]
fn a_frame_without_symbols_is_unknown() {
    let raw = vec![vec![], vec![("app::f".to_owned(), None)]];
    let (resolved, _) = resolve_counting(&raw);
    let symbols: Vec<&str> = resolved.iter().map(|r| r.symbol.as_str()).collect();
    assert_eq!(symbols, ["<unknown>", "app::f"]);
}
