//! Reading forwarding headers: the right-to-left walk, the `X-Forwarded-For`
//! and `Forwarded` syntaxes, and single-address headers.
//!
//! Nothing here allocates. A header that arrives as one line (the usual
//! case) is walked in place; repeated lines are joined into a fixed stack
//! buffer holding the rightmost [`MAX_HEADER_BYTES`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::ControlFlow;
use std::sync::Arc;

use ipnet::IpNet;

use super::Headers;

/// Most entries walked; the walk stops at the next one.
pub(super) const MAX_ENTRIES: usize = 20;

/// Most header bytes read, from the right; repeated lines count with one
/// separator byte between them.
pub(super) const MAX_HEADER_BYTES: usize = 4096;

/// Longest node (`[` IPv6 with embedded IPv4 `]:` port is 53 bytes).
const MAX_NODE_BYTES: usize = 64;

/// The trusted networks as masks per family, built once per resolver:
/// the lookup runs on every request.
#[derive(Clone, Debug)]
pub(super) struct Trusted {
    nets: Arc<[IpNet]>,
    v4: Arc<[(u32, u32)]>,
    v6: Arc<[(u128, u128)]>,
}

impl Trusted {
    pub(super) fn new(nets: Arc<[IpNet]>) -> Self {
        let v4 = nets
            .iter()
            .filter_map(|net| match net {
                IpNet::V4(net) => {
                    let mask = u32::MAX
                        .checked_shl(32 - u32::from(net.prefix_len()))
                        .unwrap_or(0);
                    Some((u32::from(net.addr()) & mask, mask))
                }
                IpNet::V6(_) => None,
            })
            .collect();
        let v6 = nets
            .iter()
            .filter_map(|net| match net {
                IpNet::V6(net) => {
                    let mask = u128::MAX
                        .checked_shl(128 - u32::from(net.prefix_len()))
                        .unwrap_or(0);
                    Some((u128::from(net.addr()) & mask, mask))
                }
                IpNet::V4(_) => None,
            })
            .collect();
        Self { nets, v4, v6 }
    }

    pub(super) fn nets(&self) -> &Arc<[IpNet]> {
        &self.nets
    }

    /// Whether canonical `ip` is in one of the networks.
    pub(super) fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => {
                let addr = u32::from(v4);
                self.v4.iter().any(|&(net, mask)| addr & mask == net)
            }
            IpAddr::V6(v6) => {
                let addr = u128::from(v6);
                self.v6.iter().any(|&(net, mask)| addr & mask == net)
            }
        }
    }
}

/// The list syntax of a forwarding header.
#[derive(Clone, Copy, Debug)]
pub(super) enum Syntax {
    /// Comma-separated nodes.
    XForwardedFor,
    /// RFC 7239 elements.
    Forwarded,
}

/// Walks header `name` from the right, starting from trusted `peer`.
/// `None` if the request has no such header.
pub(super) fn walk<H: Headers + ?Sized>(
    trusted: &Trusted,
    peer: IpAddr,
    headers: &H,
    name: &str,
    syntax: Syntax,
) -> Option<IpAddr> {
    let mut lines = 0_usize;
    let mut total = 0_usize;
    let mut first_line = peer;
    headers.for_each(name, &mut |line| {
        lines += 1;
        if lines == 1 {
            total = line.len();
            // Walk speculatively: one line is the common case.
            let cut = line.len().saturating_sub(MAX_HEADER_BYTES);
            first_line = walk_window(trusted, peer, &line[cut..], cut > 0, syntax);
        } else {
            total = total.saturating_add(1).saturating_add(line.len());
        }
    });
    match lines {
        0 => None,
        1 => Some(first_line),
        _ => Some(walk_joined(trusted, peer, headers, name, syntax, total)),
    }
}

/// Joins the lines of header `name` with `,` and walks the rightmost
/// [`MAX_HEADER_BYTES`] of the result; `total` is the joined length.
fn walk_joined<H: Headers + ?Sized>(
    trusted: &Trusted,
    peer: IpAddr,
    headers: &H,
    name: &str,
    syntax: Syntax,
    total: usize,
) -> IpAddr {
    let start = total.saturating_sub(MAX_HEADER_BYTES);
    let mut buf = [0_u8; MAX_HEADER_BYTES];
    let mut len = 0_usize;
    let mut pos = 0_usize;
    let mut push = |bytes: &[u8]| {
        let skip = start.saturating_sub(pos).min(bytes.len());
        let kept = &bytes[skip..];
        let n = kept.len().min(MAX_HEADER_BYTES - len);
        buf[len..len + n].copy_from_slice(&kept[..n]);
        len += n;
        pos = pos.saturating_add(bytes.len());
    };
    let mut first = true;
    headers.for_each(name, &mut |line| {
        if !first {
            push(b",");
        }
        first = false;
        push(line);
    });
    walk_window(trusted, peer, &buf[..len], start > 0, syntax)
}

/// Walks `window` from the right. `cut` means bytes left of it were not
/// read, so its leftmost entry may be partial.
fn walk_window(
    trusted: &Trusted,
    peer: IpAddr,
    window: &[u8],
    cut: bool,
    syntax: Syntax,
) -> IpAddr {
    let mut walk = Walk {
        trusted,
        nearest: peer,
        walked: 0,
    };
    let mut rest = window;
    loop {
        let comma = match syntax {
            Syntax::XForwardedFor => rest.iter().rposition(|&b| b == b','),
            Syntax::Forwarded => last_element_comma(rest),
        };
        let (left, entry) = match comma {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (&rest[..0], rest),
        };
        let leftmost = comma.is_none();
        if leftmost && cut {
            // An entry cut by the byte cap is malformed.
            return walk.nearest;
        }
        let entry = trim_ows(entry);
        if !entry.is_empty() {
            let node = match syntax {
                Syntax::XForwardedFor => parse_node(entry),
                Syntax::Forwarded => forwarded_for(entry),
            };
            if let ControlFlow::Break(ip) = walk.step(node) {
                return ip;
            }
        }
        if leftmost {
            return walk.nearest;
        }
        rest = left;
    }
}

/// The state of a right-to-left walk.
struct Walk<'a> {
    trusted: &'a Trusted,
    /// The last trusted address seen (the peer at first).
    nearest: IpAddr,
    walked: usize,
}

impl Walk<'_> {
    /// Visits the next entry to the left: `None` is a malformed entry or an
    /// undisclosed hop. Breaks with the client address.
    fn step(&mut self, node: Option<IpAddr>) -> ControlFlow<IpAddr> {
        if self.walked == MAX_ENTRIES {
            return ControlFlow::Break(self.nearest);
        }
        self.walked += 1;
        let Some(ip) = node else {
            return ControlFlow::Break(self.nearest);
        };
        let ip = ip.to_canonical();
        if self.trusted.contains(ip) {
            self.nearest = ip;
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(ip)
        }
    }
}

/// The address in single-address header `name`, or `None` if the header is
/// absent, repeated or malformed.
pub(super) fn single<H: Headers + ?Sized>(headers: &H, name: &str) -> Option<IpAddr> {
    let mut lines = 0_usize;
    let mut node = None;
    headers.for_each(name, &mut |line| {
        lines += 1;
        if lines == 1 && line.len() <= MAX_HEADER_BYTES {
            node = parse_node(trim_ows(line));
        }
    });
    match node {
        Some(ip) if lines == 1 => Some(ip.to_canonical()),
        _ => None,
    }
}

/// Index of the comma before the last element of `Forwarded` bytes `s`,
/// skipping commas inside quoted strings.
///
/// Read from the right, a `"` inside a quoted string is its opening quote
/// unless an odd run of backslashes precedes it (a quoted-pair). Malformed
/// input may be split differently than a left-to-right reading would split
/// it; the element parser then rejects the pieces.
fn last_element_comma(s: &[u8]) -> Option<usize> {
    let mut in_quotes = false;
    let mut i = s.len();
    while i > 0 {
        i -= 1;
        match s[i] {
            b'"' if !in_quotes => in_quotes = true,
            b'"' => {
                let backslashes = s[..i].iter().rev().take_while(|&&b| b == b'\\').count();
                if backslashes % 2 == 0 {
                    in_quotes = false;
                }
            }
            b',' if !in_quotes => return Some(i),
            _ => {}
        }
    }
    None
}

/// The address in the `for` parameter of `Forwarded` element `e`; `None`
/// if the element is malformed, has no `for`, or `for` is not an address
/// (`unknown`, an obfuscated identifier).
fn forwarded_for(e: &[u8]) -> Option<IpAddr> {
    // The `for` value, unescaped.
    let mut node = [0_u8; MAX_NODE_BYTES];
    let mut node_len = None;
    let mut i = 0;
    loop {
        i = skip_ows(e, i);
        match e.get(i) {
            None => break,
            Some(b';') => {
                i += 1;
                continue;
            }
            Some(_) => {}
        }
        let name_start = i;
        while e.get(i).is_some_and(|&b| is_tchar(b)) {
            i += 1;
        }
        let name = &e[name_start..i];
        if name.is_empty() || e.get(i) != Some(&b'=') {
            return None;
        }
        i += 1;
        let is_for = name.eq_ignore_ascii_case(b"for");
        if is_for && node_len.is_some() {
            // RFC 7239: a parameter occurs at most once per element.
            return None;
        }
        let mut len = 0;
        if e.get(i) == Some(&b'"') {
            i += 1;
            loop {
                let mut c = *e.get(i)?;
                i += 1;
                match c {
                    b'"' => break,
                    b'\\' => {
                        c = *e.get(i)?;
                        i += 1;
                        if !is_quoted_pair_char(c) {
                            return None;
                        }
                    }
                    _ if is_qdtext(c) => {}
                    _ => return None,
                }
                if is_for {
                    *node.get_mut(len)? = c;
                    len += 1;
                }
            }
        } else {
            let start = i;
            while e.get(i).is_some_and(|&b| is_token_value(b)) {
                i += 1;
            }
            let value = &e[start..i];
            if value.is_empty() {
                return None;
            }
            if is_for {
                node.get_mut(..value.len())?.copy_from_slice(value);
                len = value.len();
            }
        }
        if is_for {
            node_len = Some(len);
        }
        i = skip_ows(e, i);
        match e.get(i) {
            None => break,
            Some(b';') => i += 1,
            Some(_) => return None,
        }
    }
    parse_node(node.get(..node_len?)?)
}

/// An address with an optional port: `192.0.2.1`, `192.0.2.1:80`,
/// `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:443`. The port may be
/// obfuscated (`_abc`, RFC 7239). Anything else is `None`, and so is an
/// unspecified address (`0.0.0.0`, `::`): no client has it, so it is
/// malformed input (a proxy's placeholder, or a forgery), never the client.
fn parse_node(s: &[u8]) -> Option<IpAddr> {
    parse_address(s).filter(|ip| !ip.to_canonical().is_unspecified())
}

fn parse_address(s: &[u8]) -> Option<IpAddr> {
    if s.len() > MAX_NODE_BYTES {
        return None;
    }
    if let Some(rest) = s.strip_prefix(b"[") {
        let close = rest.iter().position(|&b| b == b']')?;
        let after = &rest[close + 1..];
        if !after.is_empty() && !is_port(after.strip_prefix(b":")?) {
            return None;
        }
        return parse_ip::<Ipv6Addr>(&rest[..close]).map(IpAddr::V6);
    }
    let Some(colon) = s.iter().position(|&b| b == b':') else {
        return parse_ipv4(s).map(IpAddr::V4);
    };
    if s[colon + 1..].contains(&b':') {
        return parse_ip::<Ipv6Addr>(s).map(IpAddr::V6);
    }
    // One colon: IPv4 with a port.
    if !is_port(&s[colon + 1..]) {
        return None;
    }
    parse_ipv4(&s[..colon]).map(IpAddr::V4)
}

/// A dotted-quad IPv4 address, exactly as `Ipv4Addr::from_str` reads it
/// (four decimal octets up to 255, no leading zeros), straight from bytes:
/// this runs for every request from behind a proxy.
pub(super) fn parse_ipv4(s: &[u8]) -> Option<Ipv4Addr> {
    if !(7..=15).contains(&s.len()) {
        return None;
    }
    let mut octets = [0_u8; 4];
    let mut filled = 0_usize;
    let (mut value, mut digits) = (0_u32, 0_u32);
    for &b in s {
        if b == b'.' {
            if digits == 0 || filled == 3 {
                return None;
            }
            octets[filled] = u8::try_from(value).ok()?;
            filled += 1;
            (value, digits) = (0, 0);
            continue;
        }
        let digit = b.wrapping_sub(b'0');
        // A digit, at most three per octet, none after a leading zero.
        if digit > 9 || digits == 3 || (digits == 1 && value == 0) {
            return None;
        }
        value = value * 10 + u32::from(digit);
        digits += 1;
    }
    if digits == 0 || filled != 3 {
        return None;
    }
    octets[3] = u8::try_from(value).ok()?;
    Some(Ipv4Addr::from(octets))
}

fn parse_ip<T: std::str::FromStr>(s: &[u8]) -> Option<T> {
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// `port = 1*5DIGIT` or `obfport = "_" 1*(ALPHA / DIGIT / "." / "_" / "-")`.
fn is_port(s: &[u8]) -> bool {
    match s.split_first() {
        Some((b'_', rest)) => {
            !rest.is_empty()
                && rest
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        }
        _ => (1..=5).contains(&s.len()) && s.iter().all(u8::is_ascii_digit),
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// An unquoted value: a token, plus the `:` and `[]` that RFC 7239 wants
/// quoted but proxies send bare (`for=192.0.2.43:47011`).
fn is_token_value(b: u8) -> bool {
    is_tchar(b) || matches!(b, b':' | b'[' | b']')
}

/// RFC 9110 `qdtext`.
fn is_qdtext(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21 | 0x23..=0x5B | 0x5D..=0x7E | 0x80..=0xFF)
}

/// The second byte of an RFC 9110 `quoted-pair`.
fn is_quoted_pair_char(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21..=0x7E | 0x80..=0xFF)
}

fn skip_ows(s: &[u8], mut i: usize) -> usize {
    while matches!(s.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    i
}

fn trim_ows(s: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| matches!(b, b' ' | b'\t');
    let start = s.iter().position(|b| !is_ows(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    &s[start..end]
}
