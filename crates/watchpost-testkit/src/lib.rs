//! Test support shared by the watchpost crates.
//!
//! The centrepiece is the adapter conformance suite: one table of requests
//! and expected answers that every adapter (tower, axum, actix-web) must pass,
//! and whose answers must equal, byte for byte, what the core's
//! [`HealthChecks::respond`](watchpost::health::HealthChecks::respond) says. Any difference between adapters
//! is a failing test.
//!
//! An adapter's test implements [`Harness`] (send one request through the
//! framework, collect the response) and calls [`health::run`],
//! [`rate_limit::run`], [`keys::run`] (limits on one route and method, and
//! per API key or user), [`panics::run`] (handler panics under the
//! catch-panic layer: the 500 and the alert), [`monitor::run`] (the
//! HTTP monitor's figures and incident) and [`handle::run`] (a
//! `Watchpost`'s layers and probes: one bug, one message).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;

pub mod fake_http;
pub mod handle;
pub mod health;
pub mod keys;
pub mod logs;
pub mod monitor;
pub mod outbox;
pub mod panics;
pub mod rate_limit;

/// A request, in framework-neutral terms.
#[derive(Clone, Debug)]
pub struct TestRequest {
    /// `GET`, `HEAD`, `POST`, …
    pub method: &'static str,
    /// Path and query, e.g. `/readyz?verbose`.
    pub uri: String,
    /// Extra request headers (raw bytes: they may be invalid UTF-8).
    pub headers: Vec<(&'static str, Vec<u8>)>,
    /// The TCP peer's address, as the server would see it.
    pub peer: Option<std::net::SocketAddr>,
}

/// A response, in framework-neutral terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestResponse {
    /// Status code.
    pub status: u16,
    /// Headers with lowercase names, in any order.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl TestResponse {
    /// A response from its status, its headers as any framework lists them
    /// (names lowercased, values read as UTF-8, lossily) and its body.
    pub fn new<'a>(
        status: u16,
        headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        body: Vec<u8>,
    ) -> Self {
        let headers = headers
            .into_iter()
            .map(|(name, value)| {
                (
                    name.to_ascii_lowercase(),
                    String::from_utf8_lossy(value).into_owned(),
                )
            })
            .collect();
        Self {
            status,
            headers,
            body,
        }
    }

    /// The value of a header (case-insensitive name), if present once or more.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (panics with the body text if it isn't).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Sends requests through one adapter.
pub trait Harness {
    /// Sends `req` and collects the whole response.
    fn call(&self, req: TestRequest) -> impl Future<Output = TestResponse>;
}
