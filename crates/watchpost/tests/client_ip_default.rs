//! The process default resolver: set once, what readers resolve with, and
//! what tells a layer whether to leave its answer in the request. Its own
//! test binary: the default is process-wide.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;

use watchpost::client_ip::{ClientIpResolver, HeaderSource, IpNet, ResolvedClientIp};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn the_first_default_stays_and_readers_resolve_with_it() {
    let mut headers = http::HeaderMap::new();
    headers.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
    headers.insert("cf-connecting-ip", "198.51.100.4".parse().unwrap());
    let proxy = ip("10.0.0.1");

    // Before anything is set, the default is `new()`.
    assert!(ClientIpResolver::new().is_process_default());
    assert_eq!(
        ResolvedClientIp::get_or_resolve(None, proxy, &headers),
        ip("203.0.113.9")
    );

    // A handle behind a load balancer that sets its own header.
    let lb: IpNet = "10.0.0.0/8".parse().unwrap();
    let first = ClientIpResolver::new()
        .trust_proxies([lb])
        .header(HeaderSource::Header("cf-connecting-ip".into()));
    assert!(first.make_process_default());
    assert!(first.is_process_default());
    assert!(!ClientIpResolver::new().is_process_default());
    assert_eq!(
        ResolvedClientIp::get_or_resolve(None, proxy, &headers),
        ip("198.51.100.4")
    );

    // A second handle with other settings doesn't take over: its layers
    // leave their answers in the requests instead.
    let second = ClientIpResolver::new().trust_none();
    assert!(!second.make_process_default());
    assert!(!second.is_process_default());
    assert!(
        first.make_process_default(),
        "the same settings again: still the default"
    );
    assert_eq!(
        ResolvedClientIp::get_or_resolve(None, proxy, &headers),
        ip("198.51.100.4")
    );

    // What a layer left is what the reader gets.
    let left = ResolvedClientIp(ip("192.0.2.77"));
    assert_eq!(
        ResolvedClientIp::get_or_resolve(Some(&left), proxy, &headers),
        ip("192.0.2.77")
    );
}
