//! `PostgresCheck` against a real Postgres (`DATABASE_URL`), plus the cases
//! that need no server (closed port).

#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use watchpost::checks::PostgresCheck;
use watchpost::health::{Check, HealthChecks, Probe, ProbeRequest, Status};

/// A lazy pool on `DATABASE_URL`, or `None` (and a note) when it is unset.
fn database(max_connections: u32) -> Option<PgPool> {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        println!("skipped: set DATABASE_URL");
        return None;
    };
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy(&url)
        .expect("DATABASE_URL parses");
    Some(pool)
}

/// Asserts the output names neither the server nor the connection string.
fn assert_clean(output: &str, host: &str, port: u16) {
    for leak in [
        format!("{host}:{port}"),
        host.to_owned(),
        "postgres://".to_owned(),
        "hunter2".to_owned(),
    ] {
        assert!(!output.contains(&leak), "{leak:?} leaked in {output:?}");
    }
}

#[tokio::test]
async fn passes_against_a_live_database_with_pool_saturation() {
    let Some(pool) = database(4) else { return };
    let result = PostgresCheck::new(pool.clone()).check().await;
    assert_eq!(result.status(), Status::Pass, "{result:?}");
    assert_eq!(result.observed_unit(), Some("percent"));
    assert_eq!(result.observed_value(), Some(&serde_json::json!(0.0)));

    // One of four connections held by "the application": 25 %.
    let held = pool.acquire().await.expect("acquire");
    let result = PostgresCheck::new(pool.clone()).check().await;
    assert_eq!(result.status(), Status::Pass, "{result:?}");
    assert_eq!(result.observed_value(), Some(&serde_json::json!(25.0)));
    drop(held);
}

#[tokio::test]
async fn readiness_through_health_checks() {
    let Some(pool) = database(4) else { return };
    let health = HealthChecks::builder()
        .readiness("postgres", PostgresCheck::new(pool))
        .build()
        .unwrap();
    let report = health.evaluate(Probe::Readiness).await;
    assert_eq!(report.http_status(), 200, "{report:?}");

    let res = health
        .respond(ProbeRequest::new("GET", "/readyz").query(Some("verbose")))
        .await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
    let check = &body["checks"]["postgres"][0];
    assert_eq!(check["status"], "pass", "{body}");
    assert_eq!(check["observedUnit"], "percent", "{body}");
    assert!(check["observedValue"].is_number(), "{body}");
}

#[tokio::test]
async fn custom_query_on_a_real_table() {
    // One connection, so the check runs on the one that has the temp table.
    let Some(pool) = database(1) else { return };
    let table = format!("watchpost_check_{}", std::process::id());
    sqlx::raw_sql(&format!("CREATE TEMP TABLE {table} (id int)"))
        .execute(&pool)
        .await
        .expect("create temp table");

    // An empty table passes: the query ran.
    let check = PostgresCheck::new(pool.clone()).query(format!("SELECT 1 FROM {table} LIMIT 1"));
    let result = check.check().await;
    assert_eq!(result.status(), Status::Pass, "{result:?}");

    let check = PostgresCheck::new(pool).query("SELECT 1 FROM pg_catalog.pg_class LIMIT 1");
    let result = check.check().await;
    assert_eq!(result.status(), Status::Pass, "{result:?}");
}

#[tokio::test]
async fn failing_query_reports_the_sql_error_without_the_host() {
    let Some(pool) = database(2) else { return };
    let options = pool.connect_options();
    let (host, port) = (options.get_host().to_owned(), options.get_port());
    let result = PostgresCheck::new(pool)
        .query("SELECT 1 FROM watchpost_no_such_table LIMIT 1")
        .check()
        .await;
    assert_eq!(result.status(), Status::Fail);
    let output = result.output().unwrap();
    assert!(
        output.starts_with("query failed: 42P01: ") && output.contains("watchpost_no_such_table"),
        "{output}"
    );
    assert_clean(output, &host, port);
    assert_eq!(result.observed_unit(), Some("percent"));
}

#[tokio::test]
async fn fails_fast_and_clean_against_a_closed_port() {
    let port = watchpost_testkit::fake_http::closed_port();
    let url = format!("postgres://app:hunter2@127.0.0.1:{port}/shop");
    // As the docs recommend: lazy, so building the pool needs no server.
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(30))
        .connect_lazy(&url)
        .unwrap();
    let check = PostgresCheck::new(pool);

    let started = Instant::now();
    let result = check.check().await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    assert_eq!(result.status(), Status::Fail);
    let output = result.output().unwrap();
    assert_eq!(output, "timed out after 1s connecting to the database");
    assert_clean(output, "127.0.0.1", port);
    assert_clean(&format!("{check:?}"), "127.0.0.1", port);
}

#[tokio::test]
async fn an_exhausted_pool_fails_with_a_pool_message() {
    let Some(pool) = database(1) else { return };
    let held = pool.acquire().await.expect("acquire");
    let check = PostgresCheck::new(pool.clone()).timeout(Duration::from_millis(600));

    let started = Instant::now();
    let result = check.check().await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    assert_eq!(result.status(), Status::Fail);
    assert_eq!(
        result.output(),
        Some("pool exhausted: all 1 connections busy (waited 300ms)")
    );
    assert_eq!(result.observed_value(), Some(&serde_json::json!(100.0)));

    // The application gives its connection back: the check passes again.
    drop(held);
    let result = check.check().await;
    assert_eq!(result.status(), Status::Pass, "{result:?}");
}

#[tokio::test]
async fn a_slow_query_times_out_and_the_pool_recovers() {
    let Some(pool) = database(1) else { return };
    let check = PostgresCheck::new(pool.clone())
        .timeout(Duration::from_millis(500))
        .query("SELECT pg_sleep(5)");
    let started = Instant::now();
    let result = check.check().await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        (result.status(), result.output()),
        (Status::Fail, Some("query timed out after 500ms"))
    );
    // The pool still serves a fresh connection at once.
    let result = PostgresCheck::new(pool).check().await;
    assert_eq!(result.status(), Status::Pass, "{result:?}");
}

#[tokio::test]
async fn a_rejected_login_names_neither_user_nor_host() {
    let Some(pool) = database(1) else { return };
    let options = pool.connect_options();
    let (host, port) = (options.get_host().to_owned(), options.get_port());
    let options = (*options).clone().username("watchpost_nobody");
    let pool = PgPoolOptions::new().connect_lazy_with(options);
    let result = PostgresCheck::new(pool).check().await;
    assert_eq!(result.status(), Status::Fail);
    let output = result.output().unwrap();
    assert!(output.starts_with("connect failed: 28"), "{output}");
    assert!(!output.contains("watchpost_nobody"), "{output}");
    assert_clean(output, &host, port);
}
