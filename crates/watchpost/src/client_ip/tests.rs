use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

use super::list::{MAX_ENTRIES, MAX_HEADER_BYTES};
use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// A header map with one line per pair, in order.
fn headers(lines: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in lines {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn resolve(resolver: &ClientIpResolver, peer: &str, lines: &[(&str, &str)]) -> IpAddr {
    resolver.resolve(ip(peer), &headers(lines))
}

fn xff(value: &str) -> [(&str, &str); 1] {
    [("x-forwarded-for", value)]
}

fn fwd(value: &str) -> [(&str, &str); 1] {
    [("forwarded", value)]
}

/// Header lines as raw bytes, which `HeaderMap` would partly reject.
struct Raw(Vec<(&'static str, Vec<u8>)>);

impl Headers for Raw {
    fn for_each(&self, name: &str, f: &mut dyn FnMut(&[u8])) {
        for (n, value) in &self.0 {
            if *n == name {
                f(value);
            }
        }
    }
}

// --- X-Forwarded-For ---

#[test]
fn forged_leftmost_xff_does_not_change_client() {
    let r = ClientIpResolver::new();
    let got = resolve(&r, "10.0.0.1", &xff("6.6.6.6, 203.0.113.9"));
    assert_eq!(got, ip("203.0.113.9"));
}

#[test]
fn chain_through_two_trusted_proxies() {
    let r = ClientIpResolver::new();
    assert_eq!(
        resolve(&r, "10.0.0.1", &xff("203.0.113.9, 10.0.0.2")),
        ip("203.0.113.9")
    );
    assert_eq!(
        resolve(
            &r,
            "10.0.0.1",
            &xff("6.6.6.6, 203.0.113.9, 192.168.1.5, 10.0.0.2")
        ),
        ip("203.0.113.9")
    );
}

#[test]
fn untrusted_peer_headers_are_ignored() {
    let lines = [
        ("forwarded", "for=6.6.6.6"),
        ("x-forwarded-for", "6.6.6.6"),
        ("x-real-ip", "6.6.6.6"),
        ("cf-connecting-ip", "6.6.6.6"),
        ("fly-client-ip", "6.6.6.6"),
    ];
    let resolvers = [
        ClientIpResolver::new(),
        ClientIpResolver::new().header(HeaderSource::Forwarded),
        ClientIpResolver::new().header(HeaderSource::XForwardedFor),
        ClientIpResolver::new().header(HeaderSource::XRealIp),
        ClientIpResolver::cloudflare(),
        ClientIpResolver::fly_io(),
    ];
    for r in &resolvers {
        assert_eq!(
            resolve(r, "198.51.100.7", &lines),
            ip("198.51.100.7"),
            "{r:?}"
        );
        assert_eq!(
            resolve(r, "2001:db8::7", &lines),
            ip("2001:db8::7"),
            "{r:?}"
        );
    }
}

#[test]
fn all_entries_trusted_gives_the_leftmost() {
    let r = ClientIpResolver::new();
    assert_eq!(
        resolve(&r, "10.0.0.1", &xff("192.168.0.9, 10.0.0.3, 10.0.0.2")),
        ip("192.168.0.9")
    );
}

#[test]
fn empty_header_gives_the_peer() {
    let r = ClientIpResolver::new();
    assert_eq!(resolve(&r, "10.0.0.1", &xff("")), ip("10.0.0.1"));
    assert_eq!(resolve(&r, "10.0.0.1", &xff(" , ,")), ip("10.0.0.1"));
    assert_eq!(resolve(&r, "10.0.0.1", &[]), ip("10.0.0.1"));
}

#[test]
fn empty_list_elements_are_skipped() {
    let r = ClientIpResolver::new();
    assert_eq!(
        resolve(&r, "10.0.0.1", &xff(",203.0.113.9,, 10.0.0.2 ,")),
        ip("203.0.113.9")
    );
}

#[test]
fn xff_entries_with_ports_brackets_and_whitespace() {
    let r = ClientIpResolver::new();
    for (value, want) in [
        ("203.0.113.9:5678", "203.0.113.9"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("\t 203.0.113.9 \t", "203.0.113.9"),
        ("203.0.113.9:5678 , [fd00::2]:80", "203.0.113.9"),
        ("203.0.113.9 ,\t10.0.0.2:8080", "203.0.113.9"),
        ("2001:db8::1,::1", "2001:db8::1"),
    ] {
        assert_eq!(resolve(&r, "10.0.0.1", &xff(value)), ip(want), "{value}");
    }
}

#[test]
fn xff_malformed_ports_are_malformed_entries() {
    let r = ClientIpResolver::new();
    for value in [
        "203.0.113.9:",
        "203.0.113.9:123456",
        "203.0.113.9:http",
        "[2001:db8::1]x",
        "[2001:db8::1]:",
        "[2001:db8::1",
        "[203.0.113.9]",
        "2001:db8::1]",
    ] {
        let got = resolve(&r, "10.0.0.1", &xff(&format!("{value}, 10.0.0.2")));
        assert_eq!(got, ip("10.0.0.2"), "{value}");
    }
}

#[test]
fn unspecified_addresses_are_never_the_client() {
    let r = ClientIpResolver::new();
    for value in ["0.0.0.0", "0.0.0.0:80", "::", "[::]:443", "::ffff:0.0.0.0"] {
        // In the middle of a walk: malformed, the nearest trusted hop wins.
        let got = resolve(&r, "10.0.0.1", &xff(&format!("{value}, 10.0.0.2")));
        assert_eq!(got, ip("10.0.0.2"), "{value}");
        // Alone: the peer.
        assert_eq!(
            resolve(&r, "10.0.0.1", &xff(value)),
            ip("10.0.0.1"),
            "{value}"
        );
        let quoted = format!("for=\"{value}\"");
        assert_eq!(
            resolve(&r, "10.0.0.1", &fwd(&quoted)),
            ip("10.0.0.1"),
            "{value}"
        );
        let real = [("x-real-ip", value)];
        assert_eq!(resolve(&r, "10.0.0.1", &real), ip("10.0.0.1"), "{value}");
    }
}

#[test]
fn garbage_falls_back_to_the_nearest_trustworthy_address() {
    let r = ClientIpResolver::new();
    // Stops at the first entry: the peer.
    assert_eq!(
        resolve(&r, "10.0.0.1", &xff("203.0.113.9, garbage")),
        ip("10.0.0.1")
    );
    // Stops further left: the last trusted address seen.
    for bad in [
        "garbage",
        "unknown",
        "_hidden",
        "1.2.3",
        "010.0.0.1",
        "fe80::1%eth0",
        "\"1.2.3.4\"",
    ] {
        let got = resolve(
            &r,
            "10.0.0.1",
            &xff(&format!("203.0.113.9, {bad}, 10.0.0.2")),
        );
        assert_eq!(got, ip("10.0.0.2"), "{bad}");
    }
}

#[test]
fn too_many_entries_are_bounded() {
    let r = ClientIpResolver::new();
    // A client behind exactly MAX_ENTRIES - 1 trusted hops is still found.
    let hops: Vec<String> = (1..MAX_ENTRIES)
        .rev()
        .map(|i| format!("10.0.0.{i}"))
        .collect();
    let value = format!("203.0.113.9, {}", hops.join(", "));
    assert_eq!(resolve(&r, "10.0.0.100", &xff(&value)), ip("203.0.113.9"));

    // Beyond that the walk stops at the leftmost trusted entry it walked.
    let hops: Vec<String> = (1..=30).rev().map(|i| format!("10.0.0.{i}")).collect();
    let value = format!("203.0.113.9, {}", hops.join(", "));
    let want = format!("10.0.0.{MAX_ENTRIES}");
    assert_eq!(resolve(&r, "10.0.0.100", &xff(&value)), ip(&want));
}

#[test]
fn oversized_header_reads_only_its_rightmost_bytes() {
    let r = ClientIpResolver::new();
    // The rightmost bytes hold the answer: the rest is never looked at.
    let value = format!("{}203.0.113.9, 10.0.0.2", "6.6.6.6, ".repeat(2000));
    assert_eq!(resolve(&r, "10.0.0.1", &xff(&value)), ip("203.0.113.9"));

    // An entry cut by the cap is malformed.
    let value = format!("{}, 10.0.0.2", "a".repeat(10_000));
    assert_eq!(resolve(&r, "10.0.0.1", &xff(&value)), ip("10.0.0.2"));
}

#[test]
fn byte_cap_boundary() {
    let r = ClientIpResolver::new();
    let tail = ", 10.0.0.2";
    let pad = |total: usize| " ".repeat(total - "10.0.0.9".len() - tail.len());
    // Exactly MAX_HEADER_BYTES: the leftmost entry is whole.
    let value = format!("10.0.0.9{}{tail}", pad(MAX_HEADER_BYTES));
    assert_eq!(value.len(), MAX_HEADER_BYTES);
    assert_eq!(resolve(&r, "10.0.0.1", &xff(&value)), ip("10.0.0.9"));
    // One byte more: it may be cut, so the walk stops before it.
    let value = format!("10.0.0.9{}{tail}", pad(MAX_HEADER_BYTES + 1));
    assert_eq!(resolve(&r, "10.0.0.1", &xff(&value)), ip("10.0.0.2"));
}

#[test]
fn byte_cap_boundary_across_repeated_lines() {
    let r = ClientIpResolver::new();
    // Lines join with one separator byte: 8 + 1 + pad + 1 + 8.
    let lines = |pad: usize| {
        let pad = " ".repeat(pad);
        Raw(vec![
            ("x-forwarded-for", b"10.0.0.9".to_vec()),
            ("x-forwarded-for", pad.into_bytes()),
            ("x-forwarded-for", b"10.0.0.2".to_vec()),
        ])
    };
    let fits = MAX_HEADER_BYTES - 18;
    assert_eq!(r.resolve(ip("10.0.0.1"), &lines(fits)), ip("10.0.0.9"));
    assert_eq!(r.resolve(ip("10.0.0.1"), &lines(fits + 1)), ip("10.0.0.2"));
    // The answer in the last line, a huge line before it.
    let huge = Raw(vec![
        ("x-forwarded-for", b"6.6.6.6".to_vec()),
        ("x-forwarded-for", vec![b'x'; 100_000]),
        ("x-forwarded-for", b"203.0.113.9, 10.0.0.2".to_vec()),
    ]);
    assert_eq!(r.resolve(ip("10.0.0.1"), &huge), ip("203.0.113.9"));
}

#[test]
fn repeated_header_lines_are_one_list() {
    let r = ClientIpResolver::new();
    let lines = [
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-for", "203.0.113.9, 10.0.0.3"),
        ("x-forwarded-for", "10.0.0.2"),
    ];
    assert_eq!(resolve(&r, "10.0.0.1", &lines), ip("203.0.113.9"));
    let lines = [
        ("forwarded", "for=6.6.6.6"),
        ("forwarded", "for=203.0.113.9"),
        ("forwarded", "for=10.0.0.2;proto=https"),
    ];
    assert_eq!(resolve(&r, "10.0.0.1", &lines), ip("203.0.113.9"));
    // Every line trusted: the leftmost entry of the first line.
    let lines = [
        ("x-forwarded-for", "10.0.0.5"),
        ("x-forwarded-for", "10.0.0.2"),
    ];
    assert_eq!(resolve(&r, "10.0.0.1", &lines), ip("10.0.0.5"));
}

#[test]
fn ipv4_mapped_addresses_are_ipv4() {
    let r = ClientIpResolver::new();
    // Mapped peers: trusted as their IPv4 address, returned as IPv4.
    assert!(r.is_trusted(ip("::ffff:10.0.0.1")));
    assert_eq!(
        resolve(&r, "::ffff:198.51.100.7", &xff("6.6.6.6")),
        ip("198.51.100.7")
    );
    assert_eq!(
        resolve(&r, "::ffff:10.0.0.1", &xff("203.0.113.9")),
        ip("203.0.113.9")
    );
    // Mapped entries, trusted or not.
    assert_eq!(
        resolve(&r, "10.0.0.1", &xff("::ffff:203.0.113.9, ::ffff:10.0.0.2")),
        ip("203.0.113.9")
    );
    assert_eq!(
        resolve(&r, "10.0.0.1", &xff("[::ffff:203.0.113.9]:443")),
        ip("203.0.113.9")
    );
    assert_eq!(
        resolve(&r, "10.0.0.1", &fwd("for=\"[::ffff:203.0.113.9]\"")),
        ip("203.0.113.9")
    );
    assert_eq!(
        resolve(&r, "10.0.0.1", &[("x-real-ip", "::ffff:203.0.113.9")]),
        ip("203.0.113.9")
    );
}

// --- Forwarded ---

#[test]
fn forwarded_quoted_ipv6_with_port() {
    let r = ClientIpResolver::new();
    assert_eq!(
        resolve(&r, "10.0.0.1", &fwd("for=\"[2001:db8:cafe::17]:4711\"")),
        ip("2001:db8:cafe::17")
    );
    assert_eq!(
        resolve(&r, "10.0.0.1", &fwd("for=\"[2001:db8:cafe::17]\"")),
        ip("2001:db8:cafe::17")
    );
}

#[test]
fn forwarded_ipv4_with_and_without_port() {
    let r = ClientIpResolver::new();
    for value in [
        "for=192.0.2.43",
        "for=192.0.2.43:47011",
        "for=\"192.0.2.43:47011\"",
        "for=\"192.0.2.43:_abc\"",
        "for=\"192.0.2.\\43\"",
    ] {
        assert_eq!(
            resolve(&r, "10.0.0.1", &fwd(value)),
            ip("192.0.2.43"),
            "{value}"
        );
    }
}

#[test]
fn forwarded_unknown_stops_the_walk() {
    let r = ClientIpResolver::new();
    assert_eq!(
        resolve(&r, "10.0.0.1", &fwd("for=192.0.2.60, for=unknown")),
        ip("10.0.0.1")
    );
    assert_eq!(
        resolve(
            &r,
            "10.0.0.1",
            &fwd("for=192.0.2.60, for=\"unknown:80\", for=10.0.0.2")
        ),
        ip("10.0.0.2")
    );
}

#[test]
fn forwarded_obfuscated_identifier_stops_the_walk() {
    let r = ClientIpResolver::new();
    assert_eq!(
        resolve(&r, "10.0.0.1", &fwd("for=192.0.2.60, for=_hidden")),
        ip("10.0.0.1")
    );
    assert_eq!(
        resolve(
            &r,
            "10.0.0.1",
            &fwd("for=192.0.2.60, for=\"_gazonk\", for=10.0.0.2")
        ),
        ip("10.0.0.2")
    );
}

#[test]
fn forwarded_mixed_case_and_other_parameters() {
    let r = ClientIpResolver::new();
    assert_eq!(
        resolve(
            &r,
            "10.0.0.1",
            &fwd("for=192.0.2.43;proto=http, FOR=198.51.100.17;by=203.0.113.60;Proto=https")
        ),
        ip("198.51.100.17")
    );
    assert_eq!(
        resolve(
            &r,
            "10.0.0.1",
            &fwd("Proto=https;For=\"[2001:db8::1]:8080\";BY=10.0.0.1, fOr=10.0.0.2")
        ),
        ip("2001:db8::1")
    );
}

#[test]
fn forwarded_quoted_strings_may_hold_commas_and_escapes() {
    let r = ClientIpResolver::new();
    let value = r#"for=203.0.113.9;ext="a, for=6.6.6.6 \" , b\\", for=10.0.0.2"#;
    assert_eq!(resolve(&r, "10.0.0.1", &fwd(value)), ip("203.0.113.9"));
    let value = r#"for=6.6.6.6, for=203.0.113.9;ext="\\\"for=6.6.6.6, x\\""#;
    assert_eq!(resolve(&r, "10.0.0.1", &fwd(value)), ip("203.0.113.9"));
}

#[test]
fn forwarded_element_without_for_stops_the_walk() {
    let r = ClientIpResolver::new();
    assert_eq!(
        resolve(
            &r,
            "10.0.0.1",
            &fwd("for=6.6.6.6, proto=https;host=example.com")
        ),
        ip("10.0.0.1")
    );
    assert_eq!(
        resolve(
            &r,
            "10.0.0.1",
            &fwd("for=6.6.6.6, by=10.0.0.3, for=10.0.0.2")
        ),
        ip("10.0.0.2")
    );
}

#[test]
fn forwarded_whitespace_around_pairs_and_elements() {
    let r = ClientIpResolver::new();
    assert_eq!(
        resolve(
            &r,
            "10.0.0.1",
            &fwd(" for=203.0.113.9 ; proto=https ,\tfor=10.0.0.2 ")
        ),
        ip("203.0.113.9")
    );
    assert_eq!(
        resolve(&r, "10.0.0.1", &fwd("for=203.0.113.9;;proto=https;")),
        ip("203.0.113.9")
    );
}

#[test]
fn forwarded_malformed_elements_fall_back() {
    let r = ClientIpResolver::new();
    for bad in [
        "for=203.0.113.9;for=203.0.113.10",
        "for=\"[2001:db8::1]",
        "for=",
        "=203.0.113.9",
        "for 203.0.113.9",
        "for=203.0.113.9 x",
        "for=\"203.0.113.9\"x",
        "for=2001:db8::1]",
        "for=203.0.113.9\\",
        "for=\"[2001:db8::1]:4711:1\"",
        "garbage",
    ] {
        let got = resolve(&r, "10.0.0.1", &fwd(&format!("{bad}, for=10.0.0.2")));
        assert_eq!(got, ip("10.0.0.2"), "{bad}");
    }
    let long = format!("for=\"{}\"", "1".repeat(200));
    assert_eq!(resolve(&r, "10.0.0.1", &fwd(&long)), ip("10.0.0.1"));
}

#[test]
fn forwarded_oversized_and_too_many_elements_are_bounded() {
    let r = ClientIpResolver::new();
    let value = format!("for=\"{}\", for=10.0.0.2", "x".repeat(10_000));
    assert_eq!(resolve(&r, "10.0.0.1", &fwd(&value)), ip("10.0.0.2"));
    let hops: Vec<String> = (1..=30).rev().map(|i| format!("for=10.0.0.{i}")).collect();
    let value = format!("for=203.0.113.9, {}", hops.join(", "));
    let want = format!("10.0.0.{MAX_ENTRIES}");
    assert_eq!(resolve(&r, "10.0.0.100", &fwd(&value)), ip(&want));
}

// --- Header sources ---

#[test]
fn auto_takes_whichever_header_is_present() {
    let r = ClientIpResolver::new();
    let only = |name, value| resolve(&r, "10.0.0.1", &[(name, value)]);
    assert_eq!(only("forwarded", "for=198.51.100.1"), ip("198.51.100.1"));
    assert_eq!(only("x-forwarded-for", "198.51.100.2"), ip("198.51.100.2"));
    assert_eq!(only("x-real-ip", "198.51.100.3"), ip("198.51.100.3"));
}

#[test]
fn auto_uses_headers_that_agree() {
    let r = ClientIpResolver::new();
    // nginx with both X-Real-IP and X-Forwarded-For; a forged leftmost entry.
    let lines = [
        ("x-real-ip", "198.51.100.2"),
        ("x-forwarded-for", "6.6.6.6, 198.51.100.2"),
        ("forwarded", "for=6.6.6.6, for=198.51.100.2"),
    ];
    assert_eq!(resolve(&r, "10.0.0.1", &lines), ip("198.51.100.2"));
    // An X-Real-IP naming a trusted hop (a CDN listed as trusted) is skipped.
    let lines = [
        ("x-real-ip", "10.0.0.9"),
        ("x-forwarded-for", "198.51.100.2, 10.0.0.9"),
    ];
    assert_eq!(resolve(&r, "10.0.0.1", &lines), ip("198.51.100.2"));
}

#[test]
fn auto_does_not_let_a_client_add_the_header_its_proxy_leaves_alone() {
    let r = ClientIpResolver::new();
    // nginx sets X-Forwarded-For and passes the client's Forwarded on.
    let lines = [
        ("forwarded", "for=6.6.6.6"),
        ("x-forwarded-for", "203.0.113.9"),
    ];
    assert_eq!(resolve(&r, "10.0.0.1", &lines), ip("10.0.0.1"));
    // nginx sets only X-Real-IP and passes the client's X-Forwarded-For on.
    let lines = [("x-forwarded-for", "6.6.6.6"), ("x-real-ip", "203.0.113.9")];
    assert_eq!(resolve(&r, "10.0.0.1", &lines), ip("10.0.0.1"));
    // Garbage in one header is a disagreement too.
    let lines = [
        ("forwarded", "for=unknown"),
        ("x-forwarded-for", "203.0.113.9"),
    ];
    assert_eq!(resolve(&r, "10.0.0.1", &lines), ip("10.0.0.1"));
}

#[test]
fn pinned_header_ignores_the_others() {
    // A proxy that sets only X-Forwarded-For passes a client's Forwarded on.
    let lines = [
        ("forwarded", "for=6.6.6.6"),
        ("x-forwarded-for", "203.0.113.9"),
        ("x-real-ip", "6.6.6.7"),
    ];
    let r = ClientIpResolver::new().header(HeaderSource::XForwardedFor);
    assert_eq!(resolve(&r, "10.0.0.1", &lines), ip("203.0.113.9"));
    let r = ClientIpResolver::new().header(HeaderSource::Forwarded);
    assert_eq!(resolve(&r, "10.0.0.1", &lines), ip("6.6.6.6"));
    let r = ClientIpResolver::new().header(HeaderSource::XRealIp);
    assert_eq!(resolve(&r, "10.0.0.1", &lines), ip("6.6.6.7"));
    let r = ClientIpResolver::new().header(HeaderSource::None);
    assert_eq!(resolve(&r, "10.0.0.1", &lines), ip("10.0.0.1"));
    // The pinned header absent: the peer.
    let r = ClientIpResolver::new().header(HeaderSource::XForwardedFor);
    assert_eq!(resolve(&r, "10.0.0.1", &fwd("for=6.6.6.6")), ip("10.0.0.1"));
}

#[test]
fn x_real_ip_only_from_trusted_peers() {
    let r = ClientIpResolver::new().header(HeaderSource::XRealIp);
    let lines = [("x-real-ip", "203.0.113.9")];
    assert_eq!(resolve(&r, "127.0.0.1", &lines), ip("203.0.113.9"));
    assert_eq!(resolve(&r, "198.51.100.7", &lines), ip("198.51.100.7"));
}

#[test]
fn x_real_ip_repeated_or_malformed_is_ignored() {
    let r = ClientIpResolver::new().header(HeaderSource::XRealIp);
    let repeated = [("x-real-ip", "203.0.113.9"), ("x-real-ip", "203.0.113.9")];
    assert_eq!(resolve(&r, "10.0.0.1", &repeated), ip("10.0.0.1"));
    for bad in [
        "",
        "unknown",
        "203.0.113.9, 6.6.6.6",
        "203.0.113.9 6.6.6.6",
        "for=203.0.113.9",
    ] {
        let got = resolve(&r, "10.0.0.1", &[("x-real-ip", bad)]);
        assert_eq!(got, ip("10.0.0.1"), "{bad}");
    }
    let huge = Raw(vec![(
        "x-real-ip",
        format!("{:>9000}", "203.0.113.9").into_bytes(),
    )]);
    assert_eq!(r.resolve(ip("10.0.0.1"), &huge), ip("10.0.0.1"));
    // Whitespace and a port are fine.
    let got = resolve(&r, "10.0.0.1", &[("x-real-ip", " [2001:db8::9]:443 ")]);
    assert_eq!(got, ip("2001:db8::9"));
}

#[test]
fn custom_header_name_in_any_case() {
    let r = ClientIpResolver::new().header(HeaderSource::Header("True-Client-IP".into()));
    let lines = [
        ("true-client-ip", "203.0.113.9"),
        ("x-forwarded-for", "6.6.6.6"),
    ];
    assert_eq!(resolve(&r, "10.0.0.1", &lines), ip("203.0.113.9"));
    assert_eq!(resolve(&r, "10.0.0.1", &xff("6.6.6.6")), ip("10.0.0.1"));
}

#[test]
fn custom_header_with_an_invalid_name_is_absent() {
    let r = ClientIpResolver::new().header(HeaderSource::Header("bad name\n".into()));
    assert_eq!(resolve(&r, "10.0.0.1", &xff("6.6.6.6")), ip("10.0.0.1"));
}

// --- Trust ---

#[test]
fn default_trusts_loopback_private_and_link_local_only() {
    let r = ClientIpResolver::default();
    assert_eq!(r.trusted(), DEFAULT_TRUSTED_PROXIES);
    for trusted in [
        "127.0.0.1",
        "127.255.0.3",
        "::1",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "fc00::1",
        "fdaa:0:1::3",
        "169.254.169.254",
        "fe80::1",
    ] {
        assert!(r.is_trusted(ip(trusted)), "{trusted}");
    }
    for untrusted in [
        "8.8.8.8",
        "172.32.0.1",
        "172.15.255.255",
        "100.64.0.1",
        "192.169.0.1",
        "2001:db8::1",
        "::2",
        "fec0::1",
        "0.0.0.0",
        "::",
    ] {
        assert!(!r.is_trusted(ip(untrusted)), "{untrusted}");
    }
}

#[test]
fn trust_none_uses_the_peer() {
    let r = ClientIpResolver::new().trust_none();
    assert!(r.trusted().is_empty());
    let lines = [
        ("forwarded", "for=203.0.113.1"),
        ("x-forwarded-for", "203.0.113.2"),
        ("x-real-ip", "203.0.113.3"),
    ];
    assert_eq!(resolve(&r, "127.0.0.1", &lines), ip("127.0.0.1"));
    assert_eq!(resolve(&r, "::ffff:10.0.0.1", &lines), ip("10.0.0.1"));
}

#[test]
fn trust_proxies_replaces_the_list() {
    let r = ClientIpResolver::new().trust_proxies([net("198.51.100.0/28")]);
    assert!(!r.is_trusted(ip("10.0.0.1")));
    assert_eq!(
        resolve(&r, "198.51.100.2", &xff("203.0.113.9, 198.51.100.3")),
        ip("203.0.113.9")
    );
    // The private hop is no longer skipped: it is the client.
    assert_eq!(
        resolve(&r, "198.51.100.2", &xff("203.0.113.9, 10.0.0.2")),
        ip("10.0.0.2")
    );
    assert_eq!(resolve(&r, "10.0.0.1", &xff("203.0.113.9")), ip("10.0.0.1"));
}

#[test]
fn trust_proxies_stores_ipv4_mapped_networks_as_ipv4() {
    let r =
        ClientIpResolver::new().trust_proxies([net("::ffff:10.0.0.0/104"), net("::ffff:0:0/95")]);
    assert_eq!(r.trusted()[0], net("10.0.0.0/8"));
    assert_eq!(r.trusted()[1], net("::ffff:0:0/95"));
    assert!(r.is_trusted(ip("10.9.8.7")));
    assert!(r.is_trusted(ip("::ffff:10.9.8.7")));
    assert!(!r.is_trusted(ip("11.0.0.1")));
}

#[test]
fn cloudflare_header_honoured_only_from_cloudflare() {
    let r = ClientIpResolver::cloudflare();
    let lines = [
        ("cf-connecting-ip", "203.0.113.9"),
        ("x-forwarded-for", "6.6.6.6"),
        ("forwarded", "for=6.6.6.6"),
    ];
    for edge in [
        "173.245.48.1",
        "104.16.0.1",
        "172.71.255.1",
        "131.0.75.255",
        "2606:4700::1",
        "2a06:98c7::1",
        "::ffff:162.159.0.1",
    ] {
        assert_eq!(resolve(&r, edge, &lines), ip("203.0.113.9"), "{edge}");
    }
    for other in [
        "10.0.0.1",
        "127.0.0.1",
        "198.51.100.7",
        "104.32.0.1",
        "2a06:98c8::1",
    ] {
        let want = ip(other).to_canonical();
        assert_eq!(resolve(&r, other, &lines), want, "{other}");
    }
    // IPv6 clients, and a repeated header.
    let lines = [("cf-connecting-ip", "2001:db8::9")];
    assert_eq!(resolve(&r, "162.158.1.1", &lines), ip("2001:db8::9"));
    let lines = [
        ("cf-connecting-ip", "203.0.113.9"),
        ("cf-connecting-ip", "6.6.6.6"),
    ];
    assert_eq!(resolve(&r, "162.158.1.1", &lines), ip("162.158.1.1"));
}

#[test]
fn cloudflare_list_is_the_published_one() {
    assert_eq!(CLOUDFLARE_IPS.len(), 22);
    assert_eq!(
        CLOUDFLARE_IPS
            .iter()
            .filter(|n| matches!(n, IpNet::V4(_)))
            .count(),
        15
    );
    for n in CLOUDFLARE_IPS {
        assert_eq!(*n, n.trunc(), "{n} has host bits set");
    }
    assert_eq!(ClientIpResolver::cloudflare().trusted(), CLOUDFLARE_IPS);
}

#[test]
fn fly_io_reads_fly_client_ip_from_the_private_network() {
    let r = ClientIpResolver::fly_io();
    let lines = [
        ("fly-client-ip", "203.0.113.9"),
        ("x-forwarded-for", "6.6.6.6"),
    ];
    assert_eq!(resolve(&r, "fdaa:0:1:a7b::2", &lines), ip("203.0.113.9"));
    assert_eq!(resolve(&r, "172.16.5.2", &lines), ip("203.0.113.9"));
    assert_eq!(resolve(&r, "198.51.100.7", &lines), ip("198.51.100.7"));
}

#[test]
fn debug_shows_the_configuration() {
    let r = ClientIpResolver::fly_io().trust_proxies([net("10.0.0.0/8")]);
    let debug = format!("{r:?}");
    assert!(debug.contains("10.0.0.0/8"), "{debug}");
    assert!(debug.contains("fly-client-ip"), "{debug}");
}

// --- Properties ---

const HEADER_NAMES: [&str; 4] = [
    "forwarded",
    "x-forwarded-for",
    "x-real-ip",
    "cf-connecting-ip",
];

fn sources() -> [HeaderSource; 6] {
    [
        HeaderSource::Auto,
        HeaderSource::Forwarded,
        HeaderSource::XForwardedFor,
        HeaderSource::XRealIp,
        HeaderSource::Header("cf-connecting-ip".into()),
        HeaderSource::None,
    ]
}

/// Every address spelled anywhere in `lines`, backslashes ignored (so
/// quoted-pairs are covered), canonical.
fn spelled(lines: &[(&'static str, Vec<u8>)]) -> HashSet<IpAddr> {
    let is_ip_char = |b: &u8| b.is_ascii_hexdigit() || matches!(b, b':' | b'.');
    let mut found = HashSet::new();
    for (_, value) in lines {
        let text: Vec<u8> = value.iter().copied().filter(|&b| b != b'\\').collect();
        for run in text.split(|b| !is_ip_char(b)) {
            for start in 0..run.len() {
                for end in start + 1..=run.len().min(start + 45) {
                    if let Some(ip) = std::str::from_utf8(&run[start..end])
                        .ok()
                        .and_then(|s| s.parse::<IpAddr>().ok())
                    {
                        found.insert(ip.to_canonical());
                    }
                }
            }
        }
    }
    found
}

/// A random address inside one of the default trusted networks.
fn trusted_ip() -> impl Strategy<Value = IpAddr> {
    (0..DEFAULT_TRUSTED_PROXIES.len(), any::<u128>()).prop_map(|(i, bits)| {
        match DEFAULT_TRUSTED_PROXIES[i] {
            IpNet::V4(n) => {
                let host = bits as u32 & u32::from(n.hostmask());
                IpAddr::V4(Ipv4Addr::from(u32::from(n.network()) | host))
            }
            IpNet::V6(n) => {
                let host = bits & u128::from(n.hostmask());
                IpAddr::V6(Ipv6Addr::from(u128::from(n.network()) | host))
            }
        }
    })
}

/// An address a client can have that isn't trusted (unspecified ones are
/// never a client: see `unspecified_addresses_are_never_the_client`).
fn untrusted_ip() -> impl Strategy<Value = IpAddr> {
    any::<IpAddr>().prop_filter("untrusted", |ip| {
        !ClientIpResolver::new().is_trusted(*ip) && !ip.to_canonical().is_unspecified()
    })
}

/// Pieces that make header values look almost right.
fn fragment() -> impl Strategy<Value = Vec<u8>> {
    let token = prop::sample::select(vec![
        ",",
        ", ",
        ";",
        "=",
        "\"",
        "\\",
        " ",
        "\t",
        "[",
        "]",
        ":",
        ":443",
        ":_p",
        "for=",
        "FoR=",
        "for=\"",
        "proto=https",
        "unknown",
        "_hidden",
        "::ffff:",
        ".",
    ]);
    prop_oneof![
        3 => any::<IpAddr>().prop_map(|ip| ip.to_string().into_bytes()),
        2 => trusted_ip().prop_map(|ip| ip.to_string().into_bytes()),
        1 => any::<Ipv6Addr>().prop_map(|ip| format!("[{ip}]").into_bytes()),
        4 => token.prop_map(|t| t.as_bytes().to_vec()),
        2 => prop::collection::vec(any::<u8>(), 0..8),
    ]
}

fn line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => prop::collection::vec(fragment(), 0..24).prop_map(|parts| parts.concat()),
        1 => (fragment(), 0..1500_usize).prop_map(|(f, n)| f.repeat(n)),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

fn peer() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        trusted_ip(),
        any::<IpAddr>(),
        Just(ip("::ffff:10.0.0.1")),
        Just(ip("162.158.0.1"))
    ]
}

proptest! {
    #[test]
    fn arbitrary_headers_never_panic_and_resolve_to_peer_or_a_spelled_address(
        lines in prop::collection::vec((prop::sample::select(HEADER_NAMES.to_vec()), line()), 0..6),
        peer in peer(),
        source in 0..6_usize,
        cloudflare in any::<bool>(),
    ) {
        let base = if cloudflare { ClientIpResolver::cloudflare() } else { ClientIpResolver::new() };
        let r = base.header(sources()[source].clone());
        let raw = Raw(lines);
        let got = r.resolve(peer, &raw);
        let peer = peer.to_canonical();
        if r.is_trusted(peer) {
            prop_assert!(got == peer || spelled(&raw.0).contains(&got), "{got} from {peer}");
        } else {
            prop_assert_eq!(got, peer);
        }
    }

    #[test]
    fn walk_finds_the_rightmost_untrusted_address(
        prefix in prop::collection::vec(any::<IpAddr>(), 0..4),
        client in untrusted_ip(),
        hops in prop::collection::vec(trusted_ip(), 0..MAX_ENTRIES),
        peer in trusted_ip(),
        forms in prop::collection::vec((0..4_u8, any::<u16>(), 0..3_usize), 30),
        splits in prop::collection::vec(any::<bool>(), 30),
        forwarded in any::<bool>(),
    ) {
        let entries: Vec<IpAddr> = prefix.iter().chain([&client]).chain(&hops).copied().collect();
        let rendered: Vec<String> = entries.iter().zip(&forms).map(|(ip, &(form, port, pad))| {
            let port = port.max(1);
            let pad = " ".repeat(pad);
            match (forwarded, ip, form) {
                (false, IpAddr::V4(v4), 1) => format!("{pad}{v4}:{port}{pad}"),
                (false, IpAddr::V4(v4), 2) => format!("{pad}{}{pad}", v4.to_ipv6_mapped()),
                (false, IpAddr::V6(v6), 1) => format!("{pad}[{v6}]:{port}"),
                (false, IpAddr::V6(v6), 2) => format!("[{v6}]{pad}"),
                (false, ip, _) => format!("{pad}{ip}"),
                (true, IpAddr::V4(v4), 1) => format!("{pad}For=\"{v4}:{port}\";proto=https"),
                (true, IpAddr::V4(v4), 2) => format!("by=_x;for=\"[{}]\"", v4.to_ipv6_mapped()),
                (true, IpAddr::V4(v4), _) => format!("for={v4}{pad}"),
                (true, IpAddr::V6(v6), 1) => format!("for=\"[{v6}]:{port}\""),
                (true, IpAddr::V6(v6), _) => format!("{pad}FOR=\"[{v6}]\""),
            }
        }).collect();
        // Spread the entries over header lines at random.
        let name = if forwarded { "forwarded" } else { "x-forwarded-for" };
        let mut lines = vec![(name, String::new())];
        for (i, entry) in rendered.iter().enumerate() {
            let last = &mut lines.last_mut().unwrap().1;
            if last.is_empty() {
                last.push_str(entry);
            } else {
                last.push(',');
                last.push_str(entry);
            }
            if splits[i] && i + 1 < rendered.len() {
                lines.push((name, String::new()));
            }
        }
        let raw = Raw(lines.into_iter().map(|(n, v)| (n, v.into_bytes())).collect());
        let r = ClientIpResolver::new();
        prop_assert_eq!(r.resolve(peer, &raw), client.to_canonical());
    }

    #[test]
    fn ipv4_parsing_agrees_with_std(text in "[0-9.]{0,18}|[0-9]{1,4}(\\.[0-9]{1,4}){3}|.{0,16}") {
        let ours = super::list::parse_ipv4(text.as_bytes());
        prop_assert_eq!(ours, text.parse::<std::net::Ipv4Addr>().ok(), "{:?}", text);
    }
}
