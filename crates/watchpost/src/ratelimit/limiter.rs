//! [`RateLimiter`]: per-client-IP limits for HTTP requests, with per-route
//! quotas, exempt paths and the response headers, framework-free.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::key::{Key, KeyExtractor, KeyRequest, RateLimitKey, Repr};
use super::keyed::{Decision, KeyedRateLimiter};
use super::quota::Quota;
use super::shared::{RateLimitStore, Verdict, VerdictFuture};
use crate::client_ip::{ClientIpResolver, Headers, IpNet};
use crate::health::HealthChecks;
use crate::loud;

/// How a 429 body is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyFormat {
    /// JSON when the request's `Accept` asks for JSON, plain text otherwise.
    #[default]
    Auto,
    /// Always JSON: `{"error":"too_many_requests","retry_after":N}`.
    Json,
    /// Always plain text.
    Text,
}

/// Per-client-IP rate limiting for HTTP requests: the policy every adapter
/// (tower, axum, actix-web) applies the same way.
///
/// - **Keys.** The client address comes from [`ClientIpResolver`]: the peer
///   address, or the forwarding headers when the peer is a trusted proxy
///   (by default loopback and private ranges; see
///   [`client_ip`](crate::client_ip) for the trust model). IPv6 clients are
///   grouped by /64 (one household or server), configurable with
///   [`group_ipv6`](Self::group_ipv6).
/// - **Quotas.** One default quota, and tighter (or looser) quotas for path
///   prefixes with [`route`](Self::route): the longest matching prefix wins,
///   each route counts separately, nothing stacks.
/// - **Not counted:** paths under [`exempt`](Self::exempt) prefixes (the
///   health probes with [`exempt_health`](Self::exempt_health)) and
///   `OPTIONS` (CORS preflight) unless [`count_options`](Self::count_options).
/// - **Answers.** Rejected requests get 429 with `Retry-After` in whole
///   seconds (rounded up, never 0), the IETF `RateLimit-Policy` and
///   `RateLimit` headers and `X-RateLimit-Limit`/`-Remaining`/`-Reset`;
///   allowed responses carry the same quota headers.
/// - **Memory** stays bounded with no task to run: see [`KeyedRateLimiter`].
///
/// ```
/// use std::net::IpAddr;
/// use watchpost::ratelimit::{Quota, RateLimiter, RateLimitRequest};
///
/// let limiter = RateLimiter::per_ip("2/min".parse::<Quota>()?)
///     .route("/api/chat", "1/min".parse()?)
///     .exempt("/healthz");
/// let peer: IpAddr = "203.0.113.7".parse()?;
/// let headers = http::HeaderMap::new();
/// // In memory, every check is decided at once (`ready`).
/// let check = |r: &RateLimitRequest<'_>| limiter.check_request(r).ready().ok_or("pending");
/// let chat = RateLimitRequest::new("POST", "/api/chat", Some(peer), &headers);
/// assert!(!check(&chat)?.is_rejected());
/// let again = check(&chat)?;
/// assert!(again.is_rejected());
/// assert!(again.headers().any(|(name, value)| name.as_str() == "retry-after" && value == "60"));
/// // "/" has its own, separate budget.
/// let home = RateLimitRequest::new("GET", "/", Some(peer), &headers);
/// assert!(!check(&home)?.is_rejected());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct RateLimiter {
    resolver: ClientIpResolver,
    ipv6_prefix: u8,
    default: Rule,
    /// Longest prefix first.
    routes: Vec<(Cow<'static, str>, Rule)>,
    exempt: Vec<Cow<'static, str>>,
    count_options: bool,
    allowed_headers: AllowedHeaders,
    body: BodyFormat,
    max_keys: Option<usize>,
    clock: crate::Clock,
    store: Option<Arc<dyn RateLimitStore>>,
    extractor: Option<Arc<dyn KeyExtractor>>,
    fail_closed: bool,
    warnings: Arc<Warnings>,
}

/// What a limiter says once: it is off for requests without a peer
/// address; it limited a health probe.
#[derive(Debug, Default)]
struct Warnings {
    peerless: loud::Once,
    probe: loud::Once,
}

/// The default probe paths, which a limiter that limits them is told of.
const PROBES: [&str; 3] = ["/livez", "/readyz", "/healthz"];

/// How long a fail-closed limiter tells a request it can't key to wait.
const CLOSED_RETRY: Duration = Duration::from_secs(1);

#[derive(Clone)]
struct Rule {
    limiter: KeyedRateLimiter<Key>,
    policy: Arc<Policy>,
}

/// A quota's name and its precomputed header values.
#[derive(Debug)]
pub(crate) struct Policy {
    /// The rule's name (`default` or the route prefix), which a
    /// [`RateLimitStore`]'s keys start with.
    name: Box<str>,
    quota: Quota,
    /// `"name";r=`, the start of the `RateLimit` value.
    rate_prefix: Bytes,
    /// `RateLimit-Policy`.
    header: Bytes,
    /// `X-RateLimit-Limit`.
    limit: Bytes,
    /// `RateLimit-Policy` and `X-RateLimit-Limit` as header values, built
    /// once: a request's clone is a reference count.
    header_value: http::HeaderValue,
    limit_value: http::HeaderValue,
}

impl Policy {
    fn new(name: &str, quota: Quota) -> Self {
        // A structured-field string: printable ASCII, with `"` and `\` escaped.
        let name: String = name
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .collect();
        let quoted = name.replace('\\', "\\\\").replace('"', "\\\"");
        let header = format!(
            "\"{quoted}\";q={};w={}",
            quota.burst_size(),
            ceil_secs(quota.window())
        );
        let header = Bytes::from(header);
        let limit = number(u64::from(quota.burst_size().get()));
        // Printable ASCII by construction; an empty value is the fallback
        // that cannot happen.
        let value = |bytes: &Bytes| {
            http::HeaderValue::from_maybe_shared(bytes.clone())
                .unwrap_or_else(|_| http::HeaderValue::from_static(""))
        };
        Self {
            name: name.into(),
            quota,
            rate_prefix: Bytes::from(format!("\"{quoted}\";r=")),
            header_value: value(&header),
            limit_value: value(&limit),
            header,
            limit,
        }
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("resolver", &self.resolver)
            .field("ipv6_prefix", &self.ipv6_prefix)
            .field("quota", &self.default.limiter.quota())
            .field(
                "routes",
                &self
                    .routes
                    .iter()
                    .map(|(p, r)| (p, r.limiter.quota()))
                    .collect::<Vec<_>>(),
            )
            .field("exempt", &self.exempt)
            .field("count_options", &self.count_options)
            .field("allowed_headers", &self.allowed_headers)
            .field("body", &self.body)
            .field("shared", &self.store.is_some())
            .field("keyed", &self.extractor.is_some())
            .field("fail_closed", &self.fail_closed)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// Limits each client IP to `quota` on every path (until refined with
    /// [`route`](Self::route) and [`exempt`](Self::exempt)).
    pub fn per_ip(quota: Quota) -> Self {
        Self {
            resolver: ClientIpResolver::new(),
            ipv6_prefix: 64,
            default: Rule::new("default", quota, None, &crate::Clock::system()),
            routes: Vec::new(),
            exempt: Vec::new(),
            count_options: false,
            allowed_headers: AllowedHeaders::Ietf,
            body: BodyFormat::Auto,
            max_keys: None,
            clock: crate::Clock::system(),
            store: None,
            extractor: None,
            fail_closed: false,
            warnings: Arc::default(),
        }
    }

    /// Counts requests under the key `extractor` finds (an API key, a user
    /// id) instead of the client IP; a request it finds no key for is
    /// counted by its client IP. Quotas, routes, exemptions, headers and
    /// the 429 body stay the same. See [`KeyExtractor`].
    #[must_use]
    pub fn key(mut self, extractor: impl KeyExtractor) -> Self {
        self.extractor = Some(Arc::new(extractor));
        self
    }

    /// Whether the key extractor reads a [`RateLimitKey`] from the
    /// request's extensions (adapters then pass it in the
    /// [`RateLimitRequest`]).
    pub fn uses_extension(&self) -> bool {
        self.extractor.as_ref().is_some_and(|e| e.uses_extension())
    }

    /// What to do with a request that can't be keyed: the server doesn't
    /// pass the peer address (and no extractor found a key). By default it
    /// is let through uncounted, and the misconfiguration is said once (on
    /// stderr when no tracing subscriber is installed); with `true` it is
    /// rejected with 429 and `Retry-After: 1` instead.
    #[must_use]
    pub fn fail_closed(mut self, closed: bool) -> Self {
        self.fail_closed = closed;
        self
    }

    /// Trusts these proxies' forwarding headers, replacing the default
    /// (loopback and private ranges).
    #[must_use]
    pub fn trust_proxies(mut self, cidrs: impl IntoIterator<Item = IpNet>) -> Self {
        self.resolver = self.resolver.trust_proxies(cidrs);
        self
    }

    /// Uses only the peer address: no forwarding header is trusted.
    #[must_use]
    pub fn trust_none(mut self) -> Self {
        self.resolver = self.resolver.trust_none();
        self
    }

    /// Uses this resolver (for presets such as
    /// [`ClientIpResolver::cloudflare`]).
    #[must_use]
    pub fn client_ip(mut self, resolver: ClientIpResolver) -> Self {
        self.resolver = resolver;
        self
    }

    /// Counts IPv6 clients by this prefix length (default 64: one /64 is
    /// one client, as ISPs hand out a /64 or more per customer). Clamped to
    /// 1..=128.
    #[must_use]
    pub fn group_ipv6(mut self, prefix: u8) -> Self {
        self.ipv6_prefix = prefix.clamp(1, 128);
        self
    }

    /// Applies `quota` instead of the default to paths under `prefix`
    /// (`"/api/chat"` covers `/api/chat` and `/api/chat/...`, not
    /// `/api/chatty`). The longest matching prefix wins; each route has its
    /// own budget per client.
    #[must_use]
    pub fn route(mut self, prefix: impl Into<Cow<'static, str>>, quota: Quota) -> Self {
        let prefix = normalize_prefix(prefix.into());
        let rule = Rule::new(&prefix, quota, self.max_keys, &self.clock);
        self.routes.retain(|(p, _)| *p != prefix);
        self.routes.push((prefix, rule));
        self.routes
            .sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        self
    }

    /// Never counts or limits paths under `prefix`.
    #[must_use]
    pub fn exempt(mut self, prefix: impl Into<Cow<'static, str>>) -> Self {
        self.exempt.push(normalize_prefix(prefix.into()));
        self
    }

    /// Exempts the health probes' paths (`/livez`, `/readyz`, `/healthz` and
    /// their `/<check>` sub-paths, or the configured ones), so probes are
    /// never rate-limited when mounted under the same layer.
    #[must_use]
    pub fn exempt_health(self, health: &HealthChecks) -> Self {
        health
            .probe_paths()
            .into_iter()
            .fold(self, |limiter, path| limiter.exempt(path.to_owned()))
    }

    /// Whether `OPTIONS` requests (CORS preflight) count (default: no).
    #[must_use]
    pub fn count_options(mut self, count: bool) -> Self {
        self.count_options = count;
        self
    }

    /// Also sends `X-RateLimit-Limit`, `-Remaining` and `-Reset` on allowed
    /// responses, for clients that read them (default: only on 429s; allowed
    /// responses carry the IETF `RateLimit-Policy` and `RateLimit`, which
    /// hold the same figures). Each header costs about 70 ns per request.
    #[must_use]
    pub fn legacy_headers(mut self, on_allowed: bool) -> Self {
        self.allowed_headers = if on_allowed {
            AllowedHeaders::All
        } else {
            AllowedHeaders::Ietf
        };
        self
    }

    /// Whether allowed responses carry the quota headers at all (default:
    /// yes, `RateLimit-Policy` and `RateLimit`). With `false` they carry
    /// none, which saves about a third of the limiter's cost per request;
    /// 429s always carry every header. A later
    /// [`legacy_headers(true)`](Self::legacy_headers) turns them back on.
    #[must_use]
    pub fn quota_headers(mut self, on_allowed: bool) -> Self {
        self.allowed_headers = if on_allowed {
            AllowedHeaders::Ietf
        } else {
            AllowedHeaders::None
        };
        self
    }

    /// How 429 bodies are written (default: JSON if the client accepts
    /// JSON, plain text otherwise).
    #[must_use]
    pub fn body_format(mut self, format: BodyFormat) -> Self {
        self.body = format;
        self
    }

    /// Caps the keys tracked by each quota (default: about 64 MiB of state).
    /// Configure before use: this starts from empty state.
    #[must_use]
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = Some(max_keys);
        self.rebuild()
    }

    /// Keeps the counts in `store` instead of this process's memory, so
    /// that every replica using the same store shares one budget per client
    /// and route: with `watchpost_redis::RedisRateLimiter`, `10/min` means
    /// ten requests in total across all replicas.
    ///
    /// Quotas, routes, exemptions, client resolution, decisions and headers
    /// stay the same; each counted request waits for the store (one round
    /// trip), under keys `{rule}:{client}` such as `default:203.0.113.7` or
    /// `/api/chat:2001:db8:1:2::`. While the store is unreachable it decides
    /// by its own policy (the Redis limiter allows every request by
    /// default). [`check`](Self::check), [`len`](Self::len) and
    /// [`retain_recent`](Self::retain_recent) still concern the unused
    /// in-memory state.
    ///
    /// See [`RateLimitStore`] for an example.
    #[must_use]
    pub fn store(mut self, store: impl RateLimitStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Whether counts are kept in a [`store`](Self::store).
    pub fn is_shared(&self) -> bool {
        self.store.is_some()
    }

    /// Uses `clock` (default [`Clock::system`](crate::Clock::system); a
    /// [`ManualClock`](crate::ManualClock)'s in tests). Configure before
    /// use: this starts from empty state.
    #[must_use]
    pub fn clock(mut self, clock: crate::Clock) -> Self {
        self.clock = clock;
        self.rebuild()
    }

    fn rebuild(mut self) -> Self {
        let (max_keys, clock) = (self.max_keys, &self.clock);
        self.default = Rule::new("default", self.default.limiter.quota(), max_keys, clock);
        for (prefix, rule) in &mut self.routes {
            *rule = Rule::new(prefix, rule.limiter.quota(), max_keys, clock);
        }
        self
    }

    /// The client address resolver.
    pub fn resolver(&self) -> &ClientIpResolver {
        &self.resolver
    }

    /// The key an address is counted under (IPv6 grouped by prefix).
    pub fn key_for(&self, ip: IpAddr) -> IpAddr {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let mask = u128::MAX << (128 - u32::from(self.ipv6_prefix));
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
            v4 => v4,
        }
    }

    /// Counts one request from `client` against the default quota, in this
    /// process's memory (even with a [`store`](Self::store)).
    pub fn check(&self, client: IpAddr) -> Decision {
        self.default
            .limiter
            .check(&Key(Repr::Ip(self.key_for(client))))
    }

    /// The key a request is counted under: the extractor's, else the
    /// client IP; addresses grouped by prefix either way.
    fn key_of(&self, req: &RateLimitRequest<'_>, client: Option<IpAddr>) -> Option<Key> {
        let found = self.extractor.as_ref().and_then(|extractor| {
            extractor.key(&KeyRequest {
                method: req.method,
                path: req.path,
                client_ip: client,
                headers: req.headers,
                extension: req.extension,
            })
        });
        match found {
            Some(Key(Repr::Ip(ip))) => Some(Key(Repr::Ip(self.key_for(ip)))),
            Some(key) => Some(key),
            None => client.map(|ip| Key(Repr::Ip(self.key_for(ip)))),
        }
    }

    /// Resolves the client, picks the quota for the path and counts the
    /// request (unless exempt) under its key.
    ///
    /// In memory the [`Verdict`] is [`Ready`](Verdict::Ready) at once; with
    /// a [`store`](Self::store), a counted request is
    /// [`Pending`](Verdict::Pending) until the store answers. `.await` it
    /// for the [`Outcome`] either way.
    pub fn check_request(&self, req: &RateLimitRequest<'_>) -> Verdict {
        let client = req
            .peer
            .map(|peer| self.resolver.resolve(peer, req.headers));
        if (req.method == "OPTIONS" && !self.count_options)
            || self.exempt.iter().any(|p| path_under(req.path, p))
        {
            return Verdict::Ready(Outcome::not_counted(client, self.body));
        }
        let rule = self
            .routes
            .iter()
            .find(|(prefix, _)| path_under(req.path, prefix))
            .map_or(&self.default, |(_, rule)| rule);
        let template = Outcome {
            client_ip: client,
            checked: None,
            body: self.body,
            allowed_headers: self.allowed_headers,
        };
        let Some(key) = self.key_of(req, client) else {
            return self.unkeyed(template, rule);
        };
        match &self.store {
            None => {
                let decision = rule.limiter.check(&key);
                if !decision.allowed {
                    self.rejected(req.path);
                }
                Verdict::Ready(template.counted(decision, rule.policy.clone()))
            }
            Some(store) => {
                let policy = &rule.policy;
                let decision = store.check(&format!("{}:{key}", policy.name), policy.quota);
                Verdict::Pending(VerdictFuture::waiting(decision, policy.clone(), template))
            }
        }
    }

    /// A request with no key: no peer address, and no key found.
    #[cold]
    fn unkeyed(&self, template: Outcome, rule: &Rule) -> Verdict {
        self.warnings.peerless.say(|| {
            let then = if self.fail_closed {
                "they are rejected with 429 (fail_closed)"
            } else {
                "they are let through uncounted: rate limiting is OFF for them \
                 (set fail_closed(true) to reject them instead)"
            };
            format!(
                "rate limiting cannot tell clients apart: the server does not pass the peer \
                 address, so {then}. With axum, serve through `watchpost_axum::serve` or \
                 `app.into_make_service_with_connect_info::<SocketAddr>()`; with hyper, insert \
                 the connection's SocketAddr into each request's extensions."
            )
        });
        if !self.fail_closed {
            return Verdict::Ready(template);
        }
        let limit = rule.policy.quota.burst_size().get();
        let decision = Decision::new(false, limit, 0, CLOSED_RETRY, Some(CLOSED_RETRY));
        Verdict::Ready(template.counted(decision, rule.policy.clone()))
    }

    /// Says once that a health probe was limited (a limiter that should
    /// exempt the probes).
    #[cold]
    fn rejected(&self, path: &str) {
        if self.warnings.probe.said() {
            return;
        }
        if PROBES.iter().any(|probe| path_under(path, probe)) {
            self.warnings.probe.say(|| {
                format!(
                    "the rate limiter answered 429 to the health probe {path}: a load balancer \
                     will take this instance out of service. Exempt the probes \
                     (RateLimiter::exempt_health, or the limiters of a Watchpost), or mount \
                     them outside the limiter."
                )
            });
        }
    }

    /// Keys tracked, over all quotas.
    pub fn len(&self) -> usize {
        self.default.limiter.len()
            + self
                .routes
                .iter()
                .map(|(_, r)| r.limiter.len())
                .sum::<usize>()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops refilled keys of every quota (see
    /// [`KeyedRateLimiter::retain_recent`]).
    pub fn retain_recent(&self) {
        self.default.limiter.retain_recent();
        for (_, rule) in &self.routes {
            rule.limiter.retain_recent();
        }
    }
}

impl Rule {
    fn new(name: &str, quota: Quota, max_keys: Option<usize>, clock: &crate::Clock) -> Self {
        let mut limiter = KeyedRateLimiter::new(quota);
        if let Some(max_keys) = max_keys {
            limiter = limiter.max_keys(max_keys);
        }
        if clock.is_manual() {
            limiter = limiter.clock(clock.clone());
        }
        Self {
            limiter,
            policy: Arc::new(Policy::new(name, quota)),
        }
    }
}

fn normalize_prefix(prefix: Cow<'static, str>) -> Cow<'static, str> {
    let trimmed = prefix.trim().trim_end_matches('/');
    let with_slash = if trimmed.starts_with('/') {
        Cow::Borrowed(trimmed)
    } else {
        Cow::Owned(format!("/{trimmed}"))
    };
    if with_slash == prefix {
        prefix
    } else {
        Cow::Owned(with_slash.into_owned())
    }
}

/// Whether `path` is `prefix` or below it (segment-wise; `/` covers all).
fn path_under(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The parts of a request the rate limiter looks at.
#[derive(Clone, Copy)]
pub struct RateLimitRequest<'a> {
    method: &'a str,
    path: &'a str,
    peer: Option<IpAddr>,
    headers: &'a (dyn Headers + Sync),
    extension: Option<&'a RateLimitKey>,
}

impl<'a> RateLimitRequest<'a> {
    /// A request: method, path (no query), the TCP peer's address (`None`
    /// if the server doesn't provide it: see [`RateLimiter::fail_closed`]),
    /// and the headers.
    pub fn new(
        method: &'a str,
        path: &'a str,
        peer: Option<IpAddr>,
        headers: &'a (dyn Headers + Sync),
    ) -> Self {
        Self {
            method,
            path,
            peer,
            headers,
            extension: None,
        }
    }

    /// The [`RateLimitKey`] found in the request's extensions, for a
    /// limiter whose extractor [uses it](RateLimiter::uses_extension).
    #[must_use]
    pub fn extension(mut self, key: Option<&'a RateLimitKey>) -> Self {
        self.extension = key;
        self
    }
}

impl fmt::Debug for RateLimitRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// A header [`Outcome::headers`] sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RateLimitHeader {
    /// `RateLimit-Policy`: the quota (IETF draft).
    Policy,
    /// `RateLimit`: what is left, and the seconds until it is whole (IETF draft).
    RateLimit,
    /// `X-RateLimit-Limit`.
    Limit,
    /// `X-RateLimit-Remaining`.
    Remaining,
    /// `X-RateLimit-Reset`: seconds until the quota is whole again.
    Reset,
    /// `Retry-After`: whole seconds, never 0.
    RetryAfter,
}

impl RateLimitHeader {
    /// The header's name, lowercase.
    pub const fn as_str(self) -> &'static str {
        match self {
            RateLimitHeader::Policy => "ratelimit-policy",
            RateLimitHeader::RateLimit => "ratelimit",
            RateLimitHeader::Limit => "x-ratelimit-limit",
            RateLimitHeader::Remaining => "x-ratelimit-remaining",
            RateLimitHeader::Reset => "x-ratelimit-reset",
            RateLimitHeader::RetryAfter => "retry-after",
        }
    }
}

/// What [`RateLimiter::check_request`] decided, and what to answer.
#[derive(Debug, Clone)]
pub struct Outcome {
    client_ip: Option<IpAddr>,
    checked: Option<(Decision, Arc<Policy>)>,
    body: BodyFormat,
    allowed_headers: AllowedHeaders,
}

/// The headers an allowed response carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AllowedHeaders {
    None,
    Ietf,
    All,
}

impl Outcome {
    fn not_counted(client_ip: Option<IpAddr>, body: BodyFormat) -> Self {
        Self {
            client_ip,
            checked: None,
            body,
            allowed_headers: AllowedHeaders::None,
        }
    }

    /// This outcome with `decision` under `policy`.
    pub(crate) fn counted(mut self, decision: Decision, policy: Arc<Policy>) -> Self {
        self.checked = Some((decision, policy));
        self
    }

    /// The resolved client address (`None` without a peer address).
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.client_ip
    }

    /// The decision, if the request was counted (not exempt).
    pub fn decision(&self) -> Option<&Decision> {
        self.checked.as_ref().map(|(d, _)| d)
    }

    /// Whether to answer 429 instead of calling the service.
    pub fn is_rejected(&self) -> bool {
        self.decision().is_some_and(|d| !d.allowed)
    }

    /// The headers to add to the response (none when not counted), names
    /// lowercase, values ASCII:
    ///
    /// - always `RateLimit-Policy` and `RateLimit` (IETF draft: the quota,
    ///   and what is left of it with the seconds until it is whole again);
    /// - on 429, `Retry-After` and `X-RateLimit-Limit`, `-Remaining` and
    ///   `-Reset` for older clients (on allowed responses too with
    ///   [`RateLimiter::legacy_headers`]).
    ///
    /// It allocates once (the `RateLimit` value); the other values are
    /// shared or precomputed. With an [`http::HeaderMap`],
    /// [`write_headers`](Self::write_headers) is cheaper.
    pub fn headers(&self) -> impl Iterator<Item = (RateLimitHeader, Bytes)> {
        use RateLimitHeader as H;
        let values = self.checked_headers().map(|(d, policy)| {
            let reset = number(ceil_secs(d.reset_after));
            let remaining = number(u64::from(d.remaining));
            let rate = rate_value(policy, d);
            let legacy = !d.allowed || self.allowed_headers == AllowedHeaders::All;
            [
                Some((H::Policy, policy.header.clone())),
                Some((H::RateLimit, rate)),
                legacy.then(|| (H::Limit, policy.limit.clone())),
                legacy.then_some((H::Remaining, remaining)),
                legacy.then_some((H::Reset, reset)),
                d.retry_after
                    .map(|retry| (H::RetryAfter, number(retry_after_secs(retry)))),
            ]
        });
        values.into_iter().flatten().flatten()
    }

    /// Calls `f` with each of [the headers](Self::headers), in the same
    /// order, without an iterator's copies: what an adapter for another
    /// `http` version (actix-web's) writes them with. The
    /// `RateLimit-Policy` value is the same for every request under one
    /// rule: convert it once per [`policy_name`](Self::policy_name).
    #[inline]
    pub fn for_each_header(&self, mut f: impl FnMut(RateLimitHeader, Bytes)) {
        use RateLimitHeader as H;
        let Some((d, policy)) = self.checked_headers() else {
            return;
        };
        f(H::Policy, policy.header.clone());
        f(H::RateLimit, rate_value(policy, d));
        if !d.allowed || self.allowed_headers == AllowedHeaders::All {
            f(H::Limit, policy.limit.clone());
            f(H::Remaining, number(u64::from(d.remaining)));
            f(H::Reset, number(ceil_secs(d.reset_after)));
        }
        if let Some(retry) = d.retry_after {
            f(H::RetryAfter, number(retry_after_secs(retry)));
        }
    }

    /// The name of the rule the request was counted under (`default`, or
    /// the route prefix), if it was counted.
    pub fn policy_name(&self) -> Option<&str> {
        self.checked.as_ref().map(|(_, policy)| &*policy.name)
    }

    /// The decision and policy, if the response carries headers.
    fn checked_headers(&self) -> Option<&(Decision, Arc<Policy>)> {
        self.checked
            .as_ref()
            .filter(|(d, _)| !d.allowed || self.allowed_headers != AllowedHeaders::None)
    }

    /// Writes [the headers](Self::headers) into `headers`, replacing any of
    /// the same name. This is on every counted request's path: the policy
    /// value is shared and the `RateLimit` value is written into a buffer
    /// reused across requests (a reference count each, no allocation).
    ///
    /// ```
    /// use watchpost::ratelimit::{Quota, RateLimiter, RateLimitRequest};
    ///
    /// let limiter = RateLimiter::per_ip("10/min".parse::<Quota>()?);
    /// let none = http::HeaderMap::new();
    /// let req = RateLimitRequest::new("GET", "/", Some("203.0.113.7".parse()?), &none);
    /// let outcome = limiter.check_request(&req).ready().ok_or("in memory")?;
    /// let mut headers = http::HeaderMap::new();
    /// outcome.write_headers(&mut headers);
    /// assert_eq!(headers["ratelimit-policy"], r#""default";q=10;w=60"#);
    /// assert_eq!(headers["ratelimit"], r#""default";r=9;t=6"#);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_headers(&self, headers: &mut http::HeaderMap) {
        use http::header::{HeaderName, HeaderValue};
        const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
        const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
        const LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
        const REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
        const RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
        let Some((d, policy)) = self.checked_headers() else {
            return;
        };
        headers.insert(POLICY, policy.header_value.clone());
        if let Ok(rate) = HeaderValue::from_maybe_shared(rate_value(policy, d)) {
            headers.insert(RATELIMIT, rate);
        }
        if !d.allowed || self.allowed_headers == AllowedHeaders::All {
            headers.insert(LIMIT, policy.limit_value.clone());
            headers.insert(REMAINING, number_value(u64::from(d.remaining)));
            headers.insert(RESET, number_value(ceil_secs(d.reset_after)));
        }
        if let Some(retry) = d.retry_after {
            headers.insert(
                http::header::RETRY_AFTER,
                number_value(retry_after_secs(retry)),
            );
        }
    }

    /// The 429 answer's content type and body, given the request's `Accept`
    /// header. `Cache-Control: no-store` goes with it: a rejection must not
    /// be cached.
    pub fn rejection_body(&self, accept: Option<&[u8]>) -> (&'static str, Bytes) {
        let retry = self
            .decision()
            .and_then(|d| d.retry_after)
            .map_or(1, retry_after_secs);
        let json = match self.body {
            BodyFormat::Json => true,
            BodyFormat::Text => false,
            BodyFormat::Auto => accept.is_some_and(accepts_json),
        };
        if json {
            let body = format!(r#"{{"error":"too_many_requests","retry_after":{retry}}}"#);
            ("application/json", Bytes::from(body))
        } else {
            let unit = if retry == 1 { "second" } else { "seconds" };
            let body = format!("Too many requests: retry in {retry} {unit}.\n");
            ("text/plain; charset=utf-8", Bytes::from(body))
        }
    }
}

/// `n` as decimal ASCII; small numbers come from a table built once, so the
/// common header values cost no allocation.
fn number(n: u64) -> Bytes {
    const TABLE: usize = 4096;
    static SMALL: OnceLock<Box<[Bytes]>> = OnceLock::new();
    match usize::try_from(n) {
        Ok(i) if i < TABLE => SMALL.get_or_init(|| {
            // One string per number for the life of the process.
            (0..TABLE)
                .map(|i| Bytes::from_static(Box::leak(i.to_string().into_boxed_str()).as_bytes()))
                .collect()
        })[i]
            .clone(),
        _ => Bytes::from(n.to_string()),
    }
}

/// `n` as a header value, without an allocation for the common numbers.
fn number_value(n: u64) -> http::HeaderValue {
    http::HeaderValue::from_maybe_shared(number(n))
        .unwrap_or_else(|_| http::HeaderValue::from_static("0"))
}

/// The `RateLimit` value (`"name";r=R;t=T`), written into this thread's
/// reused buffer: the value shares the buffer's allocation (a reference
/// count), so a request costs no allocation of its own; a new buffer is
/// taken once the current one is full, and an old one is freed with the
/// last response holding a value from it.
fn rate_value(policy: &Policy, d: &Decision) -> Bytes {
    /// Room for a few hundred values per allocation.
    const CHUNK: usize = 8 * 1024;
    thread_local! {
        static BUFFER: RefCell<BytesMut> = RefCell::new(BytesMut::new());
    }
    let (mut r, mut t) = ([0_u8; 20], [0_u8; 20]);
    let parts: [&[u8]; 4] = [
        &policy.rate_prefix,
        decimal(u64::from(d.remaining), &mut r),
        b";t=",
        decimal(ceil_secs(d.reset_after), &mut t),
    ];
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let write = |buffer: &mut BytesMut| {
        if buffer.capacity() < len {
            buffer.reserve(CHUNK.max(len));
        }
        for part in parts {
            buffer.extend_from_slice(part);
        }
        buffer.split().freeze()
    };
    BUFFER
        .try_with(|buffer| match buffer.try_borrow_mut() {
            Ok(mut buffer) => write(&mut buffer),
            Err(_) => write(&mut BytesMut::new()),
        })
        // The thread is exiting: a value of its own.
        .unwrap_or_else(|_| write(&mut BytesMut::new()))
}

/// Writes `n` in decimal at the end of `buf` (20 bytes hold any `u64`) and
/// returns the digits.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    // Two digits at a time, as itoa does.
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";
    let mut start = buf.len();
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        start -= 2;
        buf[start..start + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        start -= 2;
        buf[start..start + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        start -= 1;
        buf[start] = b'0' + n as u8;
    }
    &buf[start..]
}

/// Whole seconds, rounded up, never 0 (`Retry-After: 0` invites a retry storm).
fn retry_after_secs(d: Duration) -> u64 {
    ceil_secs(d).max(1)
}

fn accepts_json(accept: &[u8]) -> bool {
    let accept = String::from_utf8_lossy(accept).to_ascii_lowercase();
    accept.split(',').any(|range| {
        let media = range.split(';').next().unwrap_or("").trim();
        media == "application/json" || media.ends_with("+json")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_by_segment() {
        assert!(path_under("/api/chat", "/api/chat"));
        assert!(path_under("/api/chat/stream", "/api/chat"));
        assert!(!path_under("/api/chatty", "/api/chat"));
        assert!(path_under("/anything", "/"));
        assert_eq!(normalize_prefix("api/chat/".into()), "/api/chat");
    }

    #[test]
    fn retry_after_is_never_zero() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn json_detection() {
        assert!(accepts_json(b"application/json"));
        assert!(accepts_json(b"text/html, application/problem+json;q=0.9"));
        assert!(!accepts_json(b"*/*"));
        assert!(!accepts_json(b"\xff\xfe"));
    }

    #[test]
    fn ipv6_is_grouped_by_prefix() {
        let limiter = RateLimiter::per_ip("1/min".parse().unwrap());
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(limiter.key_for(a), limiter.key_for(b));
        assert_ne!(limiter.key_for(a), limiter.key_for(c));
        assert!(limiter.check(a).allowed);
        assert!(!limiter.check(b).allowed, "same /64: same budget");
        assert!(limiter.check(c).allowed);
        let per_48 = RateLimiter::per_ip("1/min".parse().unwrap()).group_ipv6(48);
        assert_eq!(per_48.key_for(a), per_48.key_for(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(
            limiter.key_for(mapped),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn policy_names_are_valid_structured_field_strings() {
        let p = Policy::new("/we\"ird\\path\u{e9}", "10/min".parse().unwrap());
        assert_eq!(p.header, r#""/we\"ird\\path";q=10;w=60"#);
        assert_eq!(p.limit, "10");
        assert_eq!(number(4095), "4095");
        for n in [0, 7, 10, 99, 100, 101, 4096, 999_999_999, u64::MAX] {
            assert_eq!(decimal(n, &mut [0; 20]), n.to_string().as_bytes());
        }
        assert_eq!(number(4096), "4096");
    }
}
