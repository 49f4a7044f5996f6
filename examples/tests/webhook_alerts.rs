//! Runs the webhook_alerts example against fake Slack and Discord webhooks:
//! the JSON each receives, and what a refusing webhook makes of the exit
//! code and the output (the reason, never the URL).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step should panic

mod common;

use common::run_to_exit;
use serde_json::{json, Value};
use watchpost_testkit::fake_http::{FakeHttp, Recorded, Reply};

const BIN: &str = env!("CARGO_BIN_EXE_webhook-alerts-e2e");

/// The secret part of each URL: it must never be printed.
const SLACK_PATH: &str = "/services/T000/B000/SECRET-slack-path";
const DISCORD_PATH: &str = "/api/webhooks/123/SECRET-discord-path";

/// What Slack answers a good post.
fn slack_ok() -> Reply {
    Reply::text(200, "ok")
}

/// What Discord answers a good post (without `?wait=true`).
fn discord_ok() -> Reply {
    Reply::text(204, "")
}

fn slack_env(slack: &FakeHttp) -> (&'static str, String) {
    ("SLACK_WEBHOOK_URL", format!("{}{SLACK_PATH}", slack.url()))
}

fn discord_env(discord: &FakeHttp) -> (&'static str, String) {
    (
        "DISCORD_WEBHOOK_URL",
        format!("{}{DISCORD_PATH}", discord.url()),
    )
}

fn assert_no_secret(output: &str) {
    assert!(!output.contains("SECRET"), "a webhook URL leaked: {output}");
}

/// Each request: a JSON POST to the webhook's own path.
fn bodies(requests: &[Recorded], path: &str) -> Vec<Value> {
    requests
        .iter()
        .map(|r| {
            assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", path));
            assert_eq!(r.header("content-type"), Some("application/json"));
            r.json()
        })
        .collect()
}

#[test]
fn slack_and_discord_each_get_three_messages_in_their_own_format() {
    let slack = FakeHttp::start(slack_ok());
    let discord = FakeHttp::start(discord_ok());
    let (status, output) = run_to_exit(
        BIN,
        &[
            slack_env(&slack),
            discord_env(&discord),
            ("WATCHPOST_SERVICE", "billing".to_owned()),
            ("WATCHPOST_ENV", "staging".to_owned()),
        ],
    );
    assert!(status.success(), "{output}");
    assert!(output.contains("sending to: slack, discord"), "{output}");
    assert!(
        output.contains("delivered: 3 messages to each of slack, discord"),
        "{output}"
    );
    assert_no_secret(&output);

    // Slack: `text` in mrkdwn (bold headline), link unfurling off; the
    // sink builds no `blocks`.
    let slack = bodies(&slack.requests(), SLACK_PATH);
    assert_eq!(slack.len(), 3, "{slack:#?}");
    let texts: Vec<&str> = slack.iter().map(|b| b["text"].as_str().unwrap()).collect();
    for body in &slack {
        assert_eq!(body["unfurl_links"], false);
        assert_eq!(body["unfurl_media"], false);
        assert!(body.get("blocks").is_none(), "{body}");
    }
    assert!(
        texts[0].contains("Stripe webhook retry rate high*"),
        "{}",
        texts[0]
    );
    assert!(texts[0].contains("billing · staging"), "{}", texts[0]);
    assert!(
        texts[0].contains("42 retries in the last minute"),
        "{}",
        texts[0]
    );
    assert!(
        texts[1].contains("FIRING: Queue depth 1200*"),
        "the first fire call's alert: {}",
        texts[1]
    );
    assert!(
        texts[2].contains("RESOLVED: Queue depth 1200*"),
        "{}",
        texts[2]
    );

    // Discord: `content` in Discord markdown, mentions disabled, link
    // previews suppressed (flag 4); the sink builds no `embeds`.
    let discord = bodies(&discord.requests(), DISCORD_PATH);
    assert_eq!(discord.len(), 3, "{discord:#?}");
    for body in &discord {
        assert_eq!(body["allowed_mentions"], json!({"parse": []}));
        assert_eq!(body["flags"].as_u64().unwrap() & 4, 4, "{body}");
        assert!(body.get("embeds").is_none(), "{body}");
    }
    let contents: Vec<&str> = discord
        .iter()
        .map(|b| b["content"].as_str().unwrap())
        .collect();
    assert!(
        contents[0].contains("Stripe webhook retry rate high**"),
        "{}",
        contents[0]
    );
    assert!(
        contents[1].contains("FIRING: Queue depth 1200**"),
        "{}",
        contents[1]
    );
    assert!(
        contents[2].contains("RESOLVED: Queue depth 1200**"),
        "{}",
        contents[2]
    );
}

#[test]
fn a_404_from_the_webhook_exits_1_with_the_reason_and_no_url() {
    // Slack's answer for a webhook whose app was removed.
    let slack = FakeHttp::start(Reply::text(404, "no_service"));
    let discord = FakeHttp::start(discord_ok());
    let (status, output) = run_to_exit(BIN, &[slack_env(&slack), discord_env(&discord)]);
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains("HTTP 404: no_service"), "{output}");
    assert!(output.contains("not delivered: 3 of 6"), "{output}");
    assert_no_secret(&output);
    // A dead webhook is switched off after its first answer; the other one
    // still gets everything, and hears that slack lost its messages.
    assert_eq!(slack.requests().len(), 1);
    let discord = discord.requests();
    assert_eq!(discord.len(), 4, "{discord:?}");
    assert!(
        discord[3].json()["content"]
            .as_str()
            .unwrap()
            .contains("could not be delivered to slack"),
        "{:?}",
        discord[3].json()
    );
}

#[test]
fn a_500_from_the_webhook_is_retried_then_exits_1_with_the_reason() {
    let discord = FakeHttp::start(Reply::json(
        500,
        json!({"message": "Internal Server Error", "code": 0}),
    ));
    let (status, output) = run_to_exit(BIN, &[discord_env(&discord)]);
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains("HTTP 500: Internal Server Error"),
        "{output}"
    );
    // All three are given up at their 5 s max age, with the reason: in one
    // line, or in two when the last one reached its max age a moment after
    // the others were counted.
    assert!(output.contains("not delivered: 3 of 3"), "{output}");
    let reason = "given up on discord (still failing at its max age; \
                  last error: HTTP 500: Internal Server Error)";
    let given_up: u32 = output
        .lines()
        .filter_map(|line| {
            let (count, rest) = line.split_once(" alert")?;
            let count = count.rsplit(' ').next()?.parse::<u32>().ok()?;
            rest.trim_start_matches('s')
                .trim_start()
                .starts_with(reason)
                .then_some(count)
        })
        .sum();
    assert_eq!(given_up, 3, "{output}");
    assert_no_secret(&output);
    // One message probes the failing webhook at a time, with backoff:
    // not three attempts per message.
    let probes = discord.requests().len();
    assert!((3..=10).contains(&probes), "{probes} requests");
}

#[test]
fn no_webhook_or_a_bad_url_is_a_configuration_error() {
    let (status, output) = run_to_exit(BIN, &[]);
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(output.contains("SLACK_WEBHOOK_URL"), "{output}");

    // No scheme: named after its variable, never quoted.
    let (status, output) = run_to_exit(
        BIN,
        &[(
            "DISCORD_WEBHOOK_URL",
            "discord.com/api/webhooks/1/SECRET".to_owned(),
        )],
    );
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(output.contains("invalid DISCORD_WEBHOOK_URL"), "{output}");
    assert_no_secret(&output);
}
