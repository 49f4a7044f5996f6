//! Built-in lists of trusted networks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> IpNet {
    IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), prefix))
}

const fn v6(segments: [u16; 8], prefix: u8) -> IpNet {
    let [a, b, c, d, e, f, g, h] = segments;
    IpNet::V6(Ipv6Net::new_assert(
        Ipv6Addr::new(a, b, c, d, e, f, g, h),
        prefix,
    ))
}

/// The proxies [`ClientIpResolver::new`](super::ClientIpResolver::new)
/// trusts: loopback, private and link-local ranges, none of which is routed
/// on the internet.
///
/// The list is Rails' `ActionDispatch::RemoteIp::TRUSTED_PROXIES`, which
/// added the link-local ranges in 2025: cloud platforms reach containers from
/// them (e.g. `169.254.0.0/16` on some container networks), and they can't be
/// reached from outside the local link either.
///
/// | network | what |
/// |---|---|
/// | `127.0.0.0/8`, `::1/128` | loopback |
/// | `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16` | private IPv4 (RFC 1918) |
/// | `fc00::/7` | unique local IPv6 (RFC 4193) |
/// | `169.254.0.0/16`, `fe80::/10` | link-local |
///
/// The shared address space `100.64.0.0/10` is left out: carrier-grade NAT
/// can put clients there.
pub const DEFAULT_TRUSTED_PROXIES: &[IpNet] = &[
    v4(127, 0, 0, 0, 8),
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128),
    v4(10, 0, 0, 0, 8),
    v4(172, 16, 0, 0, 12),
    v4(192, 168, 0, 0, 16),
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
    v4(169, 254, 0, 0, 16),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
];

/// Cloudflare's edge ranges, trusted by
/// [`ClientIpResolver::cloudflare`](super::ClientIpResolver::cloudflare).
///
/// Copied from <https://www.cloudflare.com/ips-v4> and
/// <https://www.cloudflare.com/ips-v6> as published in 2025 (15 IPv4 and 7
/// IPv6 ranges; the list changes rarely). If it has changed, pass the
/// current list to
/// [`trust_proxies`](super::ClientIpResolver::trust_proxies).
pub const CLOUDFLARE_IPS: &[IpNet] = &[
    v4(173, 245, 48, 0, 20),
    v4(103, 21, 244, 0, 22),
    v4(103, 22, 200, 0, 22),
    v4(103, 31, 4, 0, 22),
    v4(141, 101, 64, 0, 18),
    v4(108, 162, 192, 0, 18),
    v4(190, 93, 240, 0, 20),
    v4(188, 114, 96, 0, 20),
    v4(197, 234, 240, 0, 22),
    v4(198, 41, 128, 0, 17),
    v4(162, 158, 0, 0, 15),
    v4(104, 16, 0, 0, 13),
    v4(104, 24, 0, 0, 14),
    v4(172, 64, 0, 0, 13),
    v4(131, 0, 72, 0, 22),
    v6([0x2400, 0xcb00, 0, 0, 0, 0, 0, 0], 32),
    v6([0x2606, 0x4700, 0, 0, 0, 0, 0, 0], 32),
    v6([0x2803, 0xf800, 0, 0, 0, 0, 0, 0], 32),
    v6([0x2405, 0xb500, 0, 0, 0, 0, 0, 0], 32),
    v6([0x2405, 0x8100, 0, 0, 0, 0, 0, 0], 32),
    v6([0x2a06, 0x98c0, 0, 0, 0, 0, 0, 0], 29),
    v6([0x2c0f, 0xf248, 0, 0, 0, 0, 0, 0], 32),
];

/// `net`, with an IPv4-mapped IPv6 network (`::ffff:a.b.c.d/96+n`) turned
/// into the IPv4 network it maps, since addresses are compared canonically.
pub(super) fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6net) if v6net.prefix_len() >= 96 => {
            match IpAddr::V6(v6net.addr()).to_canonical() {
                IpAddr::V4(addr) => Ipv4Net::new(addr, v6net.prefix_len() - 96)
                    .map(IpNet::V4)
                    .unwrap_or(net),
                IpAddr::V6(_) => net,
            }
        }
        other => other,
    }
}
