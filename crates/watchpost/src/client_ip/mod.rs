//! The client's IP address, read safely from behind proxies.
//!
//! A request's *peer* address (the other end of the TCP connection) can't
//! be forged, but it is your proxy's address when the app runs behind one.
//! Proxies report the address they saw in a forwarding header, which anybody
//! can also write. [`ClientIpResolver`] believes a header only as far as it
//! was written by proxies you trust, so a client can't pick its own address
//! (and, for the rate limiter, its own quota).
//!
//! # Examples
//!
//! ```
//! use std::net::IpAddr;
//! use http::HeaderMap;
//! use watchpost::client_ip::{ClientIpResolver, HeaderSource, IpNet};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Behind nginx on the private network: the default needs no setup.
//! let resolver = ClientIpResolver::new();
//!
//! // The client sent `X-Forwarded-For: 6.6.6.6`; nginx (10.0.0.1) appended
//! // the address it really saw.
//! let mut headers = HeaderMap::new();
//! headers.insert("x-forwarded-for", "6.6.6.6, 203.0.113.9".parse()?);
//! let nginx: IpAddr = "10.0.0.1".parse()?;
//! assert_eq!(resolver.resolve(nginx, &headers), "203.0.113.9".parse::<IpAddr>()?);
//!
//! // The same header sent straight from the internet is ignored.
//! let stranger: IpAddr = "198.51.100.7".parse()?;
//! assert_eq!(resolver.resolve(stranger, &headers), stranger);
//!
//! // A load balancer on public addresses: name them, and pin the header it sets.
//! let lb: IpNet = "198.51.100.0/28".parse()?;
//! let resolver = ClientIpResolver::new()
//!     .trust_proxies([lb])
//!     .header(HeaderSource::XForwardedFor);
//! assert_eq!(resolver.resolve("198.51.100.2".parse()?, &headers), "203.0.113.9".parse::<IpAddr>()?);
//! # Ok(()) }
//! ```
//!
//! # Trust model
//!
//! The resolver reads a forwarding header only when the peer is a *trusted
//! proxy*, and then walks the header from the right (the last entry was
//! added by the nearest proxy), skipping trusted addresses: the first
//! untrusted address is the client. A header from an untrusted peer is
//! ignored entirely, whatever it says.
//!
//! By default the trusted proxies are loopback, the private ranges and the
//! link-local ranges ([`DEFAULT_TRUSTED_PROXIES`]), as Rails'
//! `ActionDispatch::RemoteIp` does. Those addresses aren't routed on the
//! internet, so:
//!
//! - **Exposed directly**, the default is safe: no internet client connects
//!   from them, so every client is resolved to its own peer address.
//!   [`trust_none`](ClientIpResolver::trust_none) says so explicitly.
//! - **Behind nginx, Caddy, Traefik, a Kubernetes ingress or a PaaS router**
//!   (Heroku, Render, Railway…) that reaches the app over loopback or a
//!   private network, the default works as is.
//! - **Behind Cloudflare**, use [`ClientIpResolver::cloudflare`]: it reads
//!   `CF-Connecting-IP` only from Cloudflare's published ranges.
//! - **On Fly.io**, use [`ClientIpResolver::fly_io`]: it reads
//!   `Fly-Client-IP` from Fly's proxy, which reaches the app over the private
//!   `fdaa::/16` network.
//! - **Behind a proxy or load balancer on a public address**, list it with
//!   [`trust_proxies`](ClientIpResolver::trust_proxies), which replaces the
//!   default list (chain [`DEFAULT_TRUSTED_PROXIES`] to keep it).
//!
//! Change the default too when untrusted clients can reach the app from a
//! private address (an office network, a VPN, other tenants' containers):
//! they could then write the headers. Trust only your proxies' addresses.
//!
//! ## Which header
//!
//! [`HeaderSource::Auto`], the default, takes whichever of `Forwarded`,
//! `X-Forwarded-For` and `X-Real-IP` the request has. A proxy passes on the
//! headers it doesn't set itself: behind nginx, which sets
//! `X-Forwarded-For`, a client can add its own `Forwarded: for=1.2.3.4`. So
//! when several are present, they must all name the same client; if they
//! disagree, one is forged and the result is the peer (the nearest
//! trustworthy address), which puts forgers in one shared bucket instead of
//! letting them pick their own. An `X-Real-IP` naming a trusted proxy is
//! skipped (it carries no client information). Pin one header with
//! [`.header(..)`](ClientIpResolver::header) when you know which one your
//! proxy sets; pinning `Forwarded` is safe only if the proxy sets or clears it.
//!
//! ## Parsing, and what happens on bad input
//!
//! - Repeated header lines are one list, in order (RFC 9110).
//! - `X-Forwarded-For` entries are IPv4 or IPv6 addresses, with an optional
//!   port (`192.0.2.1:5678`, `[2001:db8::1]:443`) and whitespace around them.
//!   An unbracketed IPv6 address can't carry a port.
//! - `Forwarded` (RFC 7239) is read from its `for` parameters (names in any
//!   case, token or quoted-string values). `for=unknown`, obfuscated
//!   identifiers (`for=_hidden`) and elements without `for` are hops that
//!   didn't disclose their client.
//! - `X-Real-IP` and [`HeaderSource::Header`] hold one address; a repeated or
//!   malformed header is ignored.
//! - IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`), as peer or in a
//!   header, are the IPv4 address.
//!
//! Resolution never fails and never panics. A malformed entry, an undisclosed
//! hop, more than 20 entries, or an entry cut off by the 4 KiB limit (only
//! the rightmost 4 KiB of a header is read) stops the walk, and the result is
//! the nearest trustworthy address: the last trusted address seen, or the
//! peer. If every entry is trusted, the leftmost one is the client.
//!
//! Resolving allocates nothing. An untrusted peer costs one lookup in the
//! trusted list.

mod list;
mod presets;

use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

pub use ipnet::IpNet;

/// The client address a rate limiting layer resolved, left in the
/// request's extensions when a reader could not work it out again the same
/// way: when the layer's resolver is not the
/// [process default](ClientIpResolver::make_process_default).
///
/// Read it with [`get_or_resolve`](Self::get_or_resolve) (the adapters'
/// `ClientIp` extractors do), which resolves with the process default when
/// the extension is absent: the same answer the layer counted, without the
/// cost of an extension on every request that nobody reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ResolvedClientIp(pub IpAddr);

impl ResolvedClientIp {
    /// The client address of a request: `found` (what a layer left in the
    /// extensions), else `peer` resolved from `headers` with the
    /// [process default](ClientIpResolver::process_default) resolver,
    /// which is the resolver of every layer that left nothing.
    ///
    /// ```
    /// use watchpost::client_ip::ResolvedClientIp;
    ///
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("x-forwarded-for", "203.0.113.9".parse()?);
    /// let nginx = "10.0.0.1".parse()?;
    /// let ip = ResolvedClientIp::get_or_resolve(None, nginx, &headers);
    /// assert_eq!(ip, "203.0.113.9".parse::<std::net::IpAddr>()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_or_resolve<H: Headers + ?Sized>(
        found: Option<&ResolvedClientIp>,
        peer: IpAddr,
        headers: &H,
    ) -> IpAddr {
        match found {
            Some(ResolvedClientIp(ip)) => *ip,
            None => ClientIpResolver::process_default().resolve(peer, headers),
        }
    }
}

/// The process default resolver, and its fingerprint (0: none was made
/// the default, so it is `ClientIpResolver::new()`).
static PROCESS_DEFAULT: RwLock<Option<ClientIpResolver>> = RwLock::new(None);
static PROCESS_FINGERPRINT: AtomicU64 = AtomicU64::new(0);
static NEW_FINGERPRINT: OnceLock<u64> = OnceLock::new();
pub use presets::{CLOUDFLARE_IPS, DEFAULT_TRUSTED_PROXIES};

/// Request headers as the resolver reads them.
///
/// Implemented for [`http::HeaderMap`]; adapters for other frameworks
/// implement it over their own header type.
pub trait Headers {
    /// Calls `f` with every value of header `name` (lowercase ASCII), in the
    /// order they were received.
    fn for_each(&self, name: &str, f: &mut dyn FnMut(&[u8]));

    /// Which of `Forwarded`, `X-Forwarded-For` and `X-Real-IP` may be
    /// present, in that order, so that the resolver looks up only those.
    /// May say present for an absent header, never the reverse; the
    /// default says all may be.
    fn forwarding_present(&self) -> [bool; 3] {
        [true; 3]
    }
}

const X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");
const X_REAL_IP: http::HeaderName = http::HeaderName::from_static("x-real-ip");

impl Headers for http::HeaderMap {
    fn forwarding_present(&self) -> [bool; 3] {
        // One pass over a request's few header names is cheaper than
        // three hashed lookups; a long list is looked up instead.
        if self.keys_len() > 16 {
            return [true; 3];
        }
        let mut present = [false; 3];
        for name in self.keys() {
            if *name == http::header::FORWARDED {
                present[0] = true;
            } else if *name == X_FORWARDED_FOR {
                present[1] = true;
            } else if *name == X_REAL_IP {
                present[2] = true;
            }
        }
        present
    }

    fn for_each(&self, name: &str, f: &mut dyn FnMut(&[u8])) {
        // The resolver's own names are constants: no parsing per request.
        let values = match name {
            "forwarded" => self.get_all(http::header::FORWARDED),
            "x-forwarded-for" => self.get_all(X_FORWARDED_FOR),
            "x-real-ip" => self.get_all(X_REAL_IP),
            other => self.get_all(other),
        };
        for value in values {
            f(value.as_bytes());
        }
    }
}

/// Which forwarding header the resolver reads.
///
/// Whatever the source, a header is read only when the peer is a trusted
/// proxy. See the [module docs](self#which-header).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum HeaderSource {
    /// Whichever of `Forwarded`, `X-Forwarded-For` and `X-Real-IP` the
    /// request has; when several are present they must name the same client,
    /// or the peer is used (one of them is forged).
    #[default]
    Auto,
    /// RFC 7239 `Forwarded` only.
    Forwarded,
    /// `X-Forwarded-For` only.
    XForwardedFor,
    /// `X-Real-IP` only: a single address.
    XRealIp,
    /// A header holding a single address set by a trusted edge
    /// (`cf-connecting-ip`, `fly-client-ip`). The name is matched without
    /// regard to case.
    Header(Cow<'static, str>),
    /// No header: the peer address only.
    None,
}

/// Resolves the client address of a request from its peer address and
/// headers.
///
/// Cheap to clone (the trusted list is shared). See the
/// [module docs](self) for the trust model and an example.
#[derive(Clone)]
pub struct ClientIpResolver {
    trusted: list::Trusted,
    source: HeaderSource,
    /// A hash of the two above, to tell resolvers apart in one compare.
    fingerprint: u64,
}

impl fmt::Debug for ClientIpResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIpResolver")
            .field("trusted", self.trusted.nets())
            .field("source", &self.source)
            .finish()
    }
}

impl Default for ClientIpResolver {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientIpResolver {
    /// Trusts [`DEFAULT_TRUSTED_PROXIES`] (loopback, private and link-local
    /// ranges) and reads [`HeaderSource::Auto`].
    pub fn new() -> Self {
        Self {
            trusted: list::Trusted::new(Arc::from(DEFAULT_TRUSTED_PROXIES)),
            source: HeaderSource::Auto,
            fingerprint: 0,
        }
        .fingerprinted()
    }

    fn fingerprinted(mut self) -> Self {
        // SipHash with fixed keys: the same configuration, the same value,
        // within the process. Never 0 (which means "no default set").
        let mut hasher = std::hash::DefaultHasher::new();
        self.trusted.nets().hash(&mut hasher);
        self.source.hash(&mut hasher);
        self.fingerprint = hasher.finish() | 1;
        self
    }

    /// Makes this the process's default resolver, unless one was made the
    /// default before (`true` if this one now is). The default is what
    /// readers of the client address ([`ResolvedClientIp::get_or_resolve`],
    /// the adapters' `ClientIp` extractors) resolve with when a request
    /// carries no [`ResolvedClientIp`]. A rate limiting layer whose
    /// resolver is the process default leaves none (a reader gets the same
    /// answer by resolving again, and most requests have no reader); one
    /// with another resolver leaves its result in the extensions.
    ///
    /// It is set once, so that a reader never resolves with a resolver
    /// that changed under a request in flight: the first
    /// [`Watchpost::build`](crate::Watchpost) makes its resolver the
    /// default; the layers of a later handle with other trusted proxies
    /// (several handles in one test process) leave their answers in the
    /// requests. Until something sets it, it is [`ClientIpResolver::new`].
    pub fn make_process_default(&self) -> bool {
        let mut slot = PROCESS_DEFAULT
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if slot.is_some() {
            return slot
                .as_ref()
                .is_some_and(|d| d.fingerprint == self.fingerprint);
        }
        *slot = Some(self.clone());
        PROCESS_FINGERPRINT.store(self.fingerprint, Ordering::Release);
        true
    }

    /// The process's default resolver (see
    /// [`make_process_default`](Self::make_process_default)).
    pub fn process_default() -> ClientIpResolver {
        PROCESS_DEFAULT
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_default()
    }

    /// Whether this resolver is configured as the process default is (the
    /// same trusted proxies and header): one atomic load and a compare,
    /// for the request path.
    pub fn is_process_default(&self) -> bool {
        let current = match PROCESS_FINGERPRINT.load(Ordering::Acquire) {
            0 => *NEW_FINGERPRINT.get_or_init(|| ClientIpResolver::new().fingerprint),
            set => set,
        };
        self.fingerprint == current
    }

    /// For apps behind Cloudflare: reads `CF-Connecting-IP`, only from
    /// [`CLOUDFLARE_IPS`].
    ///
    /// The ranges are built in as Cloudflare published them; if the list at
    /// <https://www.cloudflare.com/ips/> has changed, pass it with
    /// [`trust_proxies`](Self::trust_proxies). If another proxy of yours sits
    /// between Cloudflare and the app, add its address, and make sure it
    /// accepts connections only from Cloudflare (or overwrites the header).
    ///
    /// ```
    /// # use std::net::IpAddr;
    /// # use http::HeaderMap;
    /// # use watchpost::client_ip::ClientIpResolver;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut headers = HeaderMap::new();
    /// headers.insert("cf-connecting-ip", "203.0.113.9".parse()?);
    /// let resolver = ClientIpResolver::cloudflare();
    /// let edge: IpAddr = "172.70.1.1".parse()?;
    /// assert_eq!(resolver.resolve(edge, &headers), "203.0.113.9".parse::<IpAddr>()?);
    /// # Ok(()) }
    /// ```
    pub fn cloudflare() -> Self {
        Self::new()
            .trust_proxies(CLOUDFLARE_IPS.iter().copied())
            .header(HeaderSource::Header(Cow::Borrowed("cf-connecting-ip")))
    }

    /// For apps on Fly.io: reads `Fly-Client-IP`, with the default trusted
    /// proxies (Fly's proxy reaches the app over its private `fdaa::/16`
    /// network, inside `fc00::/7`).
    pub fn fly_io() -> Self {
        Self::new().header(HeaderSource::Header(Cow::Borrowed("fly-client-ip")))
    }

    /// Replaces the trusted proxies with `cidrs`.
    ///
    /// IPv4-mapped IPv6 networks (`::ffff:10.0.0.0/104`) are stored as the
    /// IPv4 network they map. To extend the default rather than replace it,
    /// chain [`DEFAULT_TRUSTED_PROXIES`]:
    ///
    /// ```
    /// use watchpost::client_ip::{ClientIpResolver, IpNet, DEFAULT_TRUSTED_PROXIES};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let lb: IpNet = "198.51.100.0/28".parse()?;
    /// let resolver = ClientIpResolver::new()
    ///     .trust_proxies(DEFAULT_TRUSTED_PROXIES.iter().copied().chain([lb]));
    /// assert!(resolver.is_trusted("10.1.2.3".parse()?));
    /// assert!(resolver.is_trusted("198.51.100.2".parse()?));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn trust_proxies(mut self, cidrs: impl IntoIterator<Item = IpNet>) -> Self {
        self.trusted = list::Trusted::new(cidrs.into_iter().map(presets::canonical_net).collect());
        self.fingerprinted()
    }

    /// Trusts no proxy: the client is always the peer address.
    #[must_use]
    pub fn trust_none(self) -> Self {
        self.trust_proxies([])
    }

    /// Sets the header read from trusted proxies (default
    /// [`HeaderSource::Auto`]).
    #[must_use]
    pub fn header(mut self, source: HeaderSource) -> Self {
        self.source = match source {
            HeaderSource::Header(name) if name.bytes().any(|b| b.is_ascii_uppercase()) => {
                HeaderSource::Header(Cow::Owned(name.to_ascii_lowercase()))
            }
            other => other,
        };
        self.fingerprinted()
    }

    /// The trusted proxy networks.
    pub fn trusted(&self) -> &[IpNet] {
        self.trusted.nets()
    }

    /// Whether `ip` is a trusted proxy. An IPv4-mapped IPv6 address is
    /// checked as its IPv4 address.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.contains(ip.to_canonical())
    }

    /// The client address of a request that came from `peer` with
    /// `headers`.
    ///
    /// Returns `peer` (as IPv4 if it is IPv4-mapped) unless `peer` is a
    /// trusted proxy; otherwise walks the configured header as the
    /// [module docs](self#trust-model) describe. Never fails: bad headers
    /// resolve to the nearest trustworthy address.
    pub fn resolve<H: Headers + ?Sized>(&self, peer: IpAddr, headers: &H) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusted.contains(peer) {
            return peer;
        }
        let trusted = &self.trusted;
        let present = headers.forwarding_present();
        let forwarded = || {
            present[0]
                .then(|| list::walk(trusted, peer, headers, "forwarded", list::Syntax::Forwarded))
                .flatten()
        };
        let xff = || {
            present[1]
                .then(|| {
                    list::walk(
                        trusted,
                        peer,
                        headers,
                        "x-forwarded-for",
                        list::Syntax::XForwardedFor,
                    )
                })
                .flatten()
        };
        let single = |name: &str| list::single(headers, name);
        match &self.source {
            HeaderSource::Auto => {
                // A proxy passes on the headers it doesn't set itself, so a
                // client can add whichever one its proxy leaves alone. Every
                // header present must name the same client; if they disagree,
                // one is forged, and only the peer is trustworthy. A
                // single-address header naming a trusted proxy says nothing
                // about the client (nginx's X-Real-IP behind a CDN).
                let real_ip = || {
                    present[2]
                        .then(|| single("x-real-ip"))
                        .flatten()
                        .filter(|ip| !trusted.contains(*ip))
                };
                let mut client = None;
                for candidate in [forwarded(), xff(), real_ip()].into_iter().flatten() {
                    match client {
                        None => client = Some(candidate),
                        Some(agreed) if agreed == candidate => {}
                        Some(_) => return peer,
                    }
                }
                client.unwrap_or(peer)
            }
            HeaderSource::Forwarded => forwarded().unwrap_or(peer),
            HeaderSource::XForwardedFor => xff().unwrap_or(peer),
            HeaderSource::XRealIp => single("x-real-ip").unwrap_or(peer),
            HeaderSource::Header(name) => single(name).unwrap_or(peer),
            HeaderSource::None => peer,
        }
    }
}

#[cfg(test)]
mod tests;
