//! What a request is counted under: the client IP by default, or any key a
//! [`KeyExtractor`] finds (an API key, an authenticated user id).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::client_ip::Headers;

/// The key a request is counted under. Requests with the same key share
/// one budget per rule.
///
/// Made by a [`KeyExtractor`]; the default is the client's IP address
/// (IPv6 grouped by prefix).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key(pub(crate) Repr);

#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum Repr {
    Ip(IpAddr),
    Text(Arc<str>),
}

impl Key {
    /// A client address as the key (as the default extractor makes it,
    /// before IPv6 grouping).
    pub fn ip(ip: IpAddr) -> Self {
        Self(Repr::Ip(ip))
    }

    /// Any text as the key: a user id, a team, a model name. It is kept as
    /// it is (in memory, and in a shared store's key names): hash secrets
    /// first, as [`HeaderKey`] does.
    pub fn text(text: impl Into<Arc<str>>) -> Self {
        Self(Repr::Text(text.into()))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Ip(ip) => write!(f, "{ip}"),
            Repr::Text(text) => f.write_str(text),
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

/// What a [`KeyExtractor`] sees of a request.
#[derive(Clone, Copy)]
pub struct KeyRequest<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) client_ip: Option<IpAddr>,
    pub(crate) headers: &'a (dyn Headers + Sync),
    pub(crate) extension: Option<&'a RateLimitKey>,
}

impl<'a> KeyRequest<'a> {
    /// The request's method (`GET`).
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// The request's path, without the query.
    pub fn path(&self) -> &'a str {
        self.path
    }

    /// The client's address, resolved through the trusted proxies (`None`
    /// when the server doesn't pass the peer address).
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.client_ip
    }

    /// Calls `f` with the first value of header `name` (lowercase), if
    /// any; the value lives only for the call.
    pub fn with_header<R>(&self, name: &str, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let mut f = Some(f);
        let mut out = None;
        self.headers.for_each(name, &mut |value| {
            if let Some(f) = f.take() {
                out = Some(f(value));
            }
        });
        out
    }

    /// The [`RateLimitKey`] the application put in the request's
    /// extensions (an authentication middleware, before the limiter), if
    /// the limiter's extractor asked for it.
    pub fn extension(&self) -> Option<&'a RateLimitKey> {
        self.extension
    }
}

impl fmt::Debug for KeyRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("client_ip", &self.client_ip)
            .finish_non_exhaustive()
    }
}

/// Finds the key a request is counted under
/// ([`RateLimiter::key`](super::RateLimiter::key)).
///
/// `None` counts the request by its client IP, as the default
/// ([`ClientIpKey`]) does for every request. Ready-made: [`HeaderKey`]
/// (an API key header), [`ExtensionKey`] (a [`RateLimitKey`] your
/// authentication middleware sets: a user id) and [`key_fn`] (a closure).
/// The same extractor gives the same keys in every adapter; quotas,
/// headers and the 429 body don't depend on the key.
///
/// # Examples
///
/// ```
/// use watchpost::ratelimit::{Key, KeyExtractor, KeyRequest};
///
/// /// One budget per tenant, from the `X-Tenant` header.
/// struct Tenant;
///
/// impl KeyExtractor for Tenant {
///     fn key(&self, request: &KeyRequest<'_>) -> Option<Key> {
///         request.with_header("x-tenant", |v| Key::text(String::from_utf8_lossy(v)))
///     }
/// }
/// ```
pub trait KeyExtractor: Send + Sync + 'static {
    /// The request's key; `None` to count it by its client IP.
    fn key(&self, request: &KeyRequest<'_>) -> Option<Key>;

    /// Whether [`KeyRequest::extension`] is needed (the adapter then looks
    /// the [`RateLimitKey`] up in the request's extensions).
    fn uses_extension(&self) -> bool {
        false
    }
}

/// The default key: the client's IP address, resolved through the trusted
/// proxies (IPv6 grouped by prefix).
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientIpKey;

impl KeyExtractor for ClientIpKey {
    fn key(&self, request: &KeyRequest<'_>) -> Option<Key> {
        request.client_ip.map(Key::ip)
    }
}

/// The value of a request header (an API key): each value has its own
/// budget. The value is hashed (64-bit FNV-1a, stable across processes and
/// builds), so the secret itself is kept neither in memory nor in a shared
/// store. A request without the header is counted by its client IP.
///
/// ```
/// use watchpost::ratelimit::{HeaderKey, RateLimiter};
///
/// let limiter = RateLimiter::per_ip("1000/hour".parse()?).key(HeaderKey::new("x-api-key"));
/// # Ok::<(), watchpost::ratelimit::QuotaError>(())
/// ```
#[derive(Clone, Debug)]
pub struct HeaderKey {
    name: Box<str>,
}

impl HeaderKey {
    /// Counts requests by the value of header `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.trim().to_ascii_lowercase().into(),
        }
    }
}

impl KeyExtractor for HeaderKey {
    fn key(&self, request: &KeyRequest<'_>) -> Option<Key> {
        request
            .with_header(&self.name, |value| {
                let value = trim(value);
                (!value.is_empty()).then(|| Key::text(format!("h:{:016x}", fnv1a(value))))
            })
            .flatten()
    }
}

/// The [`RateLimitKey`] in the request's extensions: put one there in your
/// authentication middleware (before the limiter), with the user's id, and
/// each user has their own budget. A request without one is counted by its
/// client IP.
///
/// ```
/// use watchpost::ratelimit::{ExtensionKey, RateLimitKey, RateLimiter};
///
/// let limiter = RateLimiter::per_ip("20/min".parse()?).key(ExtensionKey);
/// // In the authentication middleware: `req.extensions_mut().insert(RateLimitKey::new(user.id))`.
/// let key = RateLimitKey::new("user-42");
/// # let _ = (limiter, key);
/// # Ok::<(), watchpost::ratelimit::QuotaError>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ExtensionKey;

impl KeyExtractor for ExtensionKey {
    fn key(&self, request: &KeyRequest<'_>) -> Option<Key> {
        request.extension.map(|k| Key::text(k.0.clone()))
    }

    fn uses_extension(&self) -> bool {
        true
    }
}

/// A key an application puts in a request's extensions for
/// [`ExtensionKey`]: the authenticated user's id, a team, a plan.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RateLimitKey(Arc<str>);

impl RateLimitKey {
    /// A key (kept as it is: don't put a secret here).
    pub fn new(key: impl Into<Arc<str>>) -> Self {
        Self(key.into())
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A [`KeyExtractor`] from a closure.
///
/// ```
/// use watchpost::ratelimit::{key_fn, Key, RateLimiter};
///
/// // One budget per path segment after /tenants/.
/// let limiter = RateLimiter::per_ip("100/min".parse()?).key(key_fn(|req| {
///     let tenant = req.path().strip_prefix("/tenants/")?.split('/').next()?;
///     Some(Key::text(tenant.to_owned()))
/// }));
/// # Ok::<(), watchpost::ratelimit::QuotaError>(())
/// ```
pub fn key_fn<F>(f: F) -> FnKey<F>
where
    F: Fn(&KeyRequest<'_>) -> Option<Key> + Send + Sync + 'static,
{
    FnKey(f)
}

/// The extractor made by [`key_fn`].
#[derive(Clone)]
pub struct FnKey<F>(F);

impl<F> fmt::Debug for FnKey<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnKey")
    }
}

impl<F> KeyExtractor for FnKey<F>
where
    F: Fn(&KeyRequest<'_>) -> Option<Key> + Send + Sync + 'static,
{
    fn key(&self, request: &KeyRequest<'_>) -> Option<Key> {
        (self.0)(request)
    }
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or_default()
}

/// 64-bit FNV-1a: stable across processes, builds and replicas.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(headers: &'a http::HeaderMap, ext: Option<&'a RateLimitKey>) -> KeyRequest<'a> {
        KeyRequest {
            method: "POST",
            path: "/tenants/acme/chat",
            client_ip: Some(IpAddr::from([203, 0, 113, 7])),
            headers,
            extension: ext,
        }
    }

    #[test]
    fn extractors_find_their_keys() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "x-api-key",
            " sk-live-123 ".parse().unwrap_or_else(|_| unreachable!()),
        );
        let user = RateLimitKey::new("user-42");
        let req = request(&headers, Some(&user));
        assert_eq!(
            ClientIpKey.key(&req),
            Some(Key::ip(IpAddr::from([203, 0, 113, 7])))
        );
        let api = HeaderKey::new("X-API-Key").key(&req);
        assert_eq!(
            api,
            Some(Key::text(format!("h:{:016x}", fnv1a(b"sk-live-123"))))
        );
        assert!(
            !format!("{api:?}").contains("sk-live"),
            "the secret is hashed"
        );
        assert_eq!(HeaderKey::new("x-other").key(&req), None);
        assert_eq!(ExtensionKey.key(&req), Some(Key::text("user-42")));
        assert!(ExtensionKey.uses_extension() && !ClientIpKey.uses_extension());
        assert_eq!(ExtensionKey.key(&request(&headers, None)), None);
        let tenant = key_fn(|r| Some(Key::text(r.path().split('/').nth(2)?.to_owned())));
        assert_eq!(tenant.key(&req), Some(Key::text("acme")));
        assert_eq!(
            Key::ip(IpAddr::from([192, 0, 2, 1])).to_string(),
            "192.0.2.1"
        );
    }

    #[test]
    fn fnv_is_the_published_one() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
