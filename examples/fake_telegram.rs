//! Run with: cargo run --example fake_telegram
//!
//! A stand-in for the Telegram Bot API on your machine, to see watchpost's
//! alerts without creating a bot: it answers `sendMessage` the way Telegram
//! does and prints each message it receives.
//!
//! In one terminal:
//!
//! ```sh
//! cargo run --example fake_telegram          # listening on http://127.0.0.1:8081
//! ```
//!
//! In another, point any watchpost program at it:
//!
//! ```sh
//! TELEGRAM_BOT_TOKEN=123456:local-fake TELEGRAM_CHAT_ID=42 \
//! WATCHPOST_TELEGRAM_API_URL=http://127.0.0.1:8081 cargo run --example quickstart
//! curl http://127.0.0.1:3000/panic
//! ```
//!
//! The panic's alert appears in the first terminal, once (try `/panic`
//! again: nothing new). The token is never printed, here or by watchpost.
//!
//! - `PORT`: listen on 127.0.0.1:PORT (default 8081).
//! - `FAKE_TELEGRAM_FAIL`: answer every message with this Telegram error
//!   instead, to watch how watchpost copes: `429` (rate limited, with
//!   `retry_after` 3 s), `401` (a wrong token: watchpost switches the sink
//!   off and says so once), `400` (chat not found), `500`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

struct Fake {
    /// Next `message_id`.
    next_id: AtomicU64,
    /// Answer with this error instead (`FAKE_TELEGRAM_FAIL`).
    fail: Option<u16>,
}

#[tokio::main]
pub(crate) async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = match std::env::var("PORT") {
        Ok(value) => value
            .trim()
            .parse()
            .map_err(|_| format!("PORT must be a port number, got {value:?}"))?,
        Err(_) => 8081,
    };
    let fail = match std::env::var("FAKE_TELEGRAM_FAIL") {
        Ok(value) => match value.trim() {
            "" => None,
            code @ ("400" | "401" | "429" | "500") => code.parse().ok(),
            other => {
                return Err(format!(
                    "FAKE_TELEGRAM_FAIL must be 400, 401, 429 or 500, got {other:?}"
                )
                .into())
            }
        },
        Err(_) => None,
    };
    let fake = Arc::new(Fake {
        next_id: AtomicU64::new(1),
        fail,
    });
    // Telegram's shape: POST /bot<token>/<method>.
    let app = Router::new()
        .route("/{bot}/{method}", post(method))
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    println!(
        "use WATCHPOST_TELEGRAM_API_URL=http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// One Bot API call: `sendMessage` is printed and answered like Telegram
/// does; anything else is a 404 as Telegram sends it.
async fn method(
    State(fake): State<Arc<Fake>>,
    Path((bot, method)): Path<(String, String)>,
    body: Option<Json<Value>>,
) -> (StatusCode, Json<Value>) {
    if !bot.starts_with("bot") || method != "sendMessage" {
        return error(404, "Not Found", None);
    }
    let Some(Json(body)) = body else {
        return error(400, "Bad Request: message text is empty", None);
    };
    let chat = body.get("chat_id").cloned().unwrap_or(Value::Null);
    let text = body.get("text").and_then(Value::as_str).unwrap_or("");
    match fake.fail {
        Some(429) => {
            println!("(answered 429 to a message for chat {chat})");
            return error(
                429,
                "Too Many Requests: retry after 3",
                Some(json!({"retry_after": 3})),
            );
        }
        Some(401) => return error(401, "Unauthorized", None),
        Some(400) => return error(400, "Bad Request: chat not found", None),
        Some(code) => return error(code, "Internal Server Error", None),
        None => {}
    }
    let id = fake.next_id.fetch_add(1, Ordering::Relaxed);
    println!("── message {id} to chat {chat} ──\n{text}\n");
    (
        StatusCode::OK,
        Json(json!({
            "ok": true,
            "result": {"message_id": id, "date": 0, "chat": {"id": chat}, "text": text},
        })),
    )
}

/// A Bot API error body: `{"ok":false,"error_code":…,"description":…}`.
fn error(code: u16, description: &str, parameters: Option<Value>) -> (StatusCode, Json<Value>) {
    let mut body = json!({"ok": false, "error_code": code, "description": description});
    if let Some(parameters) = parameters {
        body["parameters"] = parameters;
    }
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(body))
}
