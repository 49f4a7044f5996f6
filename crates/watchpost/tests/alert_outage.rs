//! Delivery while the sink is down, on a virtual clock: a Bot API that
//! refuses connections or answers 502 for a minute loses nothing, a sink
//! down for longer than the max age gives up exactly the alerts older than
//! it and says so, what is queued goes out in order and at the sink's pace
//! once it is back, and the token never reaches the log.
#![cfg(all(feature = "telegram", feature = "test-util"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use watchpost::alert::{Alert, Alerter, MemorySink, TelegramSink};
use watchpost::ManualClock;
use watchpost_testkit::fake_http::{closed_port, telegram_ok, telegram_texts, FakeHttp, Reply};
use watchpost_testkit::logs::{capture_global, captured};

const TOKEN: &str = "123456:OUTAGE-token_xyz";
/// Only catches hangs.
const HANG: Duration = Duration::from_secs(30);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A Telegram sink talking to `addr` (the log captured).
fn telegram(addr: SocketAddr) -> TelegramSink {
    capture_global();
    TelegramSink::builder(TOKEN, "-4242")
        .api_url(format!("http://{addr}"))
        .build()
        .unwrap()
}

/// An alerter on `manual` whose Telegram sink talks to `addr`.
fn alerter(manual: &ManualClock, addr: SocketAddr) -> Alerter {
    Alerter::builder()
        .service("checkout-api")
        .sink(telegram(addr))
        .clock(manual.clock())
        .build()
        .unwrap()
}

fn texts(server: &FakeHttp) -> Vec<String> {
    telegram_texts(server)
}

fn position(texts: &[String], needle: &str) -> usize {
    texts
        .iter()
        .position(|t| t.contains(needle))
        .unwrap_or_else(|| panic!("no message with {needle:?} in {texts:#?}"))
}

/// The timeline: a panic, two health incidents and a 5xx burst,
/// each firing and resolving, while the sink is down for 60 s.
fn outage_timeline(alerter: &Alerter, manual: &ManualClock) {
    alerter.send(Alert::critical("panic: index out of bounds").key("panic:src/main.rs:42"));
    manual.advance(secs(5));
    alerter.fire("health:db", Alert::error("Health check db failing"));
    manual.advance(secs(5));
    alerter.fire("health:redis", Alert::error("Health check redis failing"));
    manual.advance(secs(5));
    alerter.fire("http-5xx", Alert::error("HTTP 5xx rate 40%"));
    manual.advance(secs(15));
    alerter.resolve("health:db");
    manual.advance(secs(10));
    alerter.resolve("http-5xx");
    manual.advance(secs(10));
    alerter.resolve("health:redis");
    manual.advance(secs(10));
}

/// Every one of the seven messages arrived once, each firing before its
/// resolution.
fn assert_all_seven(texts: &[String]) {
    let ok: Vec<&String> = texts.iter().collect();
    assert_eq!(ok.len(), 7, "{texts:#?}");
    position(texts, "panic: index out of bounds");
    for title in [
        "Health check db failing",
        "Health check redis failing",
        "HTTP 5xx rate 40%",
    ] {
        let firing = texts
            .iter()
            .position(|t| t.contains(title) && !t.contains("RESOLVED"))
            .unwrap_or_else(|| panic!("no firing for {title}: {texts:#?}"));
        let resolved = texts
            .iter()
            .position(|t| t.contains(title) && t.contains("RESOLVED"))
            .unwrap_or_else(|| panic!("no resolved for {title}: {texts:#?}"));
        assert!(firing < resolved, "{title}: {texts:#?}");
    }
}

/// Advances one second at a time until `server` holds `n` requests (or 5
/// virtual minutes passed); the virtual seconds it took.
fn advance_until(manual: &ManualClock, server: &FakeHttp, n: usize) -> u64 {
    for s in 0..300 {
        if server.requests().len() >= n {
            return s;
        }
        manual.advance(secs(1));
    }
    panic!(
        "only {} requests: {:#?}\n{}",
        server.requests().len(),
        texts(server),
        captured()
    );
}

#[test]
fn a_minute_of_refused_connections_loses_nothing() {
    let manual = ManualClock::new();
    let addr: SocketAddr = ([127, 0, 0, 1], closed_port()).into();
    let alerter = alerter(&manual, addr);
    outage_timeline(&alerter, &manual);
    let down = alerter.sink_stats();
    assert!(down[0].down, "{down:?}");
    assert_eq!(down[0].given_up.total(), 0, "{down:?}");

    let server = FakeHttp::start_on(addr, telegram_ok());
    let took = advance_until(&manual, &server, 7);
    // Probed again within the 20 s backoff cap, then one a second.
    assert!(took <= 30, "took {took} virtual seconds");
    manual.advance(secs(60));
    let texts = texts(&server);
    assert_all_seven(&texts);
    let stats = alerter.stats();
    assert_eq!(
        (stats.sent, stats.failed, stats.queued),
        (7, 0, 0),
        "{stats:?}"
    );
    assert!(!alerter.sink_stats()[0].down);
    let logs = captured();
    assert!(!logs.contains(TOKEN), "the token is in the log");
    assert!(logs.contains("probing again in"), "{logs}");
    assert!(logs.contains("delivering again after"), "{logs}");
}

#[test]
fn a_minute_of_502_loses_nothing_and_probes_with_one_alert_at_a_time() {
    let manual = ManualClock::new();
    let server = FakeHttp::start(Reply::text(502, "Bad Gateway"));
    let alerter = alerter(&manual, server.addr());
    outage_timeline(&alerter, &manual);
    let probes = server.requests().len();
    // Backoff 1, 2, 4, 8, 16, 20 s (jittered): a handful of requests in a
    // minute, whatever the number of alerts waiting.
    assert!((3..=12).contains(&probes), "{probes} requests while down");

    server.set_default(telegram_ok());
    advance_until(&manual, &server, probes + 7);
    manual.advance(secs(60));
    let ok: Vec<String> = texts(&server).split_off(probes);
    assert_all_seven(&ok);
    assert_eq!(alerter.stats().failed, 0);
}

#[test]
fn after_recovery_the_queue_goes_out_at_the_sinks_pace() {
    let manual = ManualClock::new();
    let addr: SocketAddr = ([127, 0, 0, 1], closed_port()).into();
    let alerter = alerter(&manual, addr);
    for i in 0..5 {
        alerter.send(Alert::error(format!("alert {i}")).key(format!("k{i}")));
    }
    manual.advance(secs(30));
    let server = FakeHttp::start_on(addr, telegram_ok());
    advance_until(&manual, &server, 1);
    // One a second in the chat (Telegram's limit), in the order sent.
    for n in 2..=5 {
        manual.advance(secs(1));
        assert_eq!(server.requests().len(), n, "{:#?}", texts(&server));
    }
    let texts = texts(&server);
    for (i, t) in texts.iter().enumerate() {
        assert!(t.contains(&format!("alert {i}")), "{texts:#?}");
    }
}

#[test]
fn a_long_outage_gives_up_exactly_what_is_older_than_max_age_and_summarizes_it() {
    let manual = ManualClock::new();
    let addr: SocketAddr = ([127, 0, 0, 1], closed_port()).into();
    let memory = MemorySink::new();
    let alerter = Alerter::builder()
        .service("checkout-api")
        .sink(telegram(addr))
        .sink(memory.clone())
        .clock(manual.clock())
        .build()
        .unwrap();

    // t=0 and t=200: given up at 10 and 13:20 minutes; t=400 and t=700
    // are still within their 10 minutes when the sink is back at t=900.
    alerter.send(Alert::error("Stripe webhook failed").key("a"));
    alerter.fire("health:db", Alert::error("Health check db failing"));
    manual.advance(secs(200));
    alerter.send(Alert::error("Queue stuck").key("b"));
    manual.advance(secs(200));
    alerter.send(Alert::error("Disk 91% full").key("c"));
    manual.advance(secs(300));
    // Its firing message is given up at t=600: this resolution must not
    // go out alone.
    alerter.resolve("health:db");
    manual.advance(secs(200));

    let server = FakeHttp::start_on(addr, telegram_ok());
    advance_until(&manual, &server, 2);
    manual.advance(secs(60));
    // The summary of what was lost (it probed the sink), then what is
    // still within its age.
    let texts = texts(&server);
    assert_eq!(texts.len(), 2, "{texts:#?}");
    let disk = position(&texts, "Disk 91% full");
    let resolved = texts.iter().filter(|t| t.contains("RESOLVED")).count();
    assert_eq!(resolved, 0, "a resolution without its firing: {texts:#?}");
    let summary = position(&texts, "3 alerts could not be delivered to telegram");
    assert!(summary < disk, "{texts:#?}");
    for lost in [
        "Stripe webhook failed",
        "Health check db failing",
        "Queue stuck",
    ] {
        assert!(texts[summary].contains(lost), "{lost}: {}", texts[summary]);
    }
    assert!(
        texts[summary].contains("resolved after 11m 40s"),
        "{}",
        texts[summary]
    );
    assert!(!texts
        .iter()
        .any(|t| t.contains("Queue stuck") && !t.contains("could not")));

    let sinks = alerter.sink_stats();
    assert_eq!(sinks[0].given_up.max_age, 3, "{sinks:?}");
    assert_eq!(sinks[0].given_up.total(), 3, "{sinks:?}");
    assert_eq!(sinks[1].given_up.total(), 0, "{sinks:?}");
    // The other sink heard of every give-up as it happened.
    let notes: Vec<String> = memory
        .notifications()
        .iter()
        .map(|n| n.alert().title().to_owned())
        .filter(|t| t.contains("could not be delivered to telegram"))
        .collect();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes[0].starts_with("2 alerts"), "{notes:?}");
    assert!(notes[1].starts_with("1 alert "), "{notes:?}");
    let logs = captured();
    assert!(!logs.contains(TOKEN), "the token is in the log");
    assert!(logs.contains("2 alerts given up on telegram"), "{logs}");
    assert!(logs.contains("1 alert given up on telegram"), "{logs}");
    assert!(alerter.flush(HANG));
}

#[test]
fn alerts_repeating_during_an_outage_arrive_as_one_with_the_count() {
    let manual = ManualClock::new();
    let addr: SocketAddr = ([127, 0, 0, 1], closed_port()).into();
    let alerter = Alerter::builder()
        .sink(telegram(addr))
        .dedupe_window(secs(60))
        .clock(manual.clock())
        .build()
        .unwrap();
    // A new dedupe window each time: three deliveries, but the sink is
    // down, so they wait, folded into one.
    for _ in 0..3 {
        alerter.send(Alert::error("Payment provider timeout").key("pay"));
        manual.advance(secs(61));
    }
    let server = FakeHttp::start_on(addr, telegram_ok());
    advance_until(&manual, &server, 1);
    manual.advance(secs(30));
    let texts = texts(&server);
    assert_eq!(texts.len(), 1, "{texts:#?}");
    assert!(texts[0].contains("+2 similar"), "{}", texts[0]);
}

#[test]
fn a_sink_down_past_the_max_age_gets_one_summary_when_it_is_back() {
    let manual = ManualClock::new();
    let addr: SocketAddr = ([127, 0, 0, 1], closed_port()).into();
    let alerter = alerter(&manual, addr);
    alerter.send(Alert::critical("panic: index out of bounds").key("panic"));
    alerter.fire("http-5xx", Alert::error("HTTP 5xx rate 97%"));
    // Both given up at 10 minutes; nothing else happens after that, yet
    // the summary keeps probing the sink.
    manual.advance(secs(15 * 60));
    assert_eq!(alerter.sink_stats()[0].given_up.max_age, 2);
    let server = FakeHttp::start_on(addr, telegram_ok());
    let took = advance_until(&manual, &server, 1);
    assert!(took <= 20, "took {took} virtual seconds");
    manual.advance(secs(120));
    let texts = texts(&server);
    assert_eq!(texts.len(), 1, "one summary: {texts:#?}");
    assert!(
        texts[0].contains("2 alerts could not be delivered to telegram"),
        "{}",
        texts[0]
    );
    assert!(
        texts[0].contains("panic: index out of bounds"),
        "{}",
        texts[0]
    );
    assert!(
        texts[0].contains("FIRING: HTTP 5xx rate 97%"),
        "{}",
        texts[0]
    );
    assert!(alerter.flush(HANG));
    assert_eq!(alerter.stats().queued, 0);
}
