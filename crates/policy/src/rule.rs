//! The pieces a rule is made of, and how operators write them.
//!
//! Everything here parses from the text an operator types (a flag value or a
//! manifest string) and displays back as the same canonical text, so that
//! `warden check` prints rules the operator can paste back.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::Action;

/// A set of rights a grant gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Rights(u16);

impl Rights {
    /// Open TCP connections to the target (and send HTTP requests to it).
    pub const CONNECT: Rights = Rights(1);
    /// Bind TCP sockets to the target (a local address).
    pub const BIND: Rights = Rights(1 << 1);
    /// Listen on TCP sockets bound to the target.
    pub const LISTEN: Rights = Rights(1 << 2);
    /// Accept connections from peers in the target.
    pub const ACCEPT: Rights = Rights(1 << 3);
    /// Bind UDP sockets to the target (a local address).
    pub const UDP_BIND: Rights = Rights(1 << 4);
    /// Send UDP datagrams to the target.
    pub const UDP_SEND: Rights = Rights(1 << 5);
    /// Receive UDP datagrams from the target.
    pub const UDP_RECV: Rights = Rights(1 << 6);
    /// Resolve the target's names.
    pub const RESOLVE: Rights = Rights(1 << 7);

    /// No rights.
    pub const NONE: Rights = Rights(0);

    const NAMED: [(Rights, &'static str); 8] = [
        (Rights::CONNECT, "connect"),
        (Rights::BIND, "bind"),
        (Rights::LISTEN, "listen"),
        (Rights::ACCEPT, "accept"),
        (Rights::UDP_BIND, "udp-bind"),
        (Rights::UDP_SEND, "udp-send"),
        (Rights::UDP_RECV, "udp-recv"),
        (Rights::RESOLVE, "resolve"),
    ];

    /// The right an action needs. An HTTP request needs `connect`.
    pub fn for_action(action: Action) -> Rights {
        match action {
            Action::Connect | Action::HttpRequest => Rights::CONNECT,
            Action::Bind => Rights::BIND,
            Action::Listen => Rights::LISTEN,
            Action::Accept => Rights::ACCEPT,
            Action::UdpBind => Rights::UDP_BIND,
            Action::UdpSend => Rights::UDP_SEND,
            Action::UdpRecv => Rights::UDP_RECV,
            Action::Resolve => Rights::RESOLVE,
        }
    }

    /// Whether every right in `other` is in `self`.
    pub fn contains(self, other: Rights) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether this is the empty set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether `self` and `other` share a right.
    pub fn intersects(self, other: Rights) -> bool {
        self.0 & other.0 != 0
    }

    /// The names of the rights in the set, in a fixed order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMED
            .into_iter()
            .filter(move |(r, _)| self.contains(*r))
            .map(|(_, n)| n)
    }

    /// The right called `name` (`connect`, `udp-send`, ...).
    pub fn from_name(name: &str) -> Option<Rights> {
        Self::NAMED
            .into_iter()
            .find(|(_, n)| *n == name)
            .map(|(r, _)| r)
    }

    /// Every right's name, for error messages.
    pub fn all_names() -> String {
        Self::NAMED.map(|(_, n)| n).join(", ")
    }
}

impl std::ops::BitOr for Rights {
    type Output = Rights;
    fn bitor(self, rhs: Rights) -> Rights {
        Rights(self.0 | rhs.0)
    }
}

impl fmt::Display for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self.names().collect();
        f.write_str(&names.join(","))
    }
}

/// An inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ports {
    lo: u16,
    hi: u16,
}

impl Ports {
    /// Every port, 0 to 65535.
    pub const ANY: Ports = Ports {
        lo: 0,
        hi: u16::MAX,
    };

    /// One port.
    pub fn one(port: u16) -> Ports {
        Ports { lo: port, hi: port }
    }

    /// `lo..=hi`, or `None` when `lo > hi`.
    pub fn range(lo: u16, hi: u16) -> Option<Ports> {
        (lo <= hi).then_some(Ports { lo, hi })
    }

    /// Whether `port` is in the range.
    pub fn contains(self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }

    /// Whether this is every port.
    pub fn is_any(self) -> bool {
        self == Ports::ANY
    }
}

impl fmt::Display for Ports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_any() {
            f.write_str("*")
        } else if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

impl FromStr for Ports {
    type Err = String;
    fn from_str(s: &str) -> Result<Ports, String> {
        let port = |p: &str| {
            p.parse::<u16>()
                .map_err(|_| format!("`{p}` is not a port (0-65535)"))
        };
        if s == "*" {
            return Ok(Ports::ANY);
        }
        match s.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (port(lo)?, port(hi)?);
                Ports::range(lo, hi)
                    .ok_or_else(|| format!("port range `{s}` is empty: {lo} is above {hi}"))
            }
            None if s.is_empty() => Err("expected ports: N, N-M or *".to_string()),
            None => port(s).map(Ports::one),
        }
    }
}

/// The form an address is compared in: every IPv6 spelling of an IPv4
/// address becomes that IPv4 address, so that all spellings of one host
/// decide alike. Those spellings are IPv4-mapped (`::ffff:a.b.c.d`),
/// IPv4-compatible (`::a.b.c.d`), and NAT64: the well-known prefix
/// `64:ff9b::/96` and the local-use `64:ff9b:1::/48` (RFC 6052, 8215), whose
/// last 32 bits are the IPv4 address (the /96 embedding; on a NAT64 network
/// such an address reaches that IPv4 host). `::` and `::1` stay IPv6
/// (unspecified and loopback).
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    if v6 == Ipv6Addr::UNSPECIFIED || v6 == Ipv6Addr::LOCALHOST {
        return ip;
    }
    if let Some(v4) = v6.to_ipv4() {
        return IpAddr::V4(v4);
    }
    let s = v6.segments();
    let well_known = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    let local_use = s[..3] == [0x64, 0xff9b, 1];
    if well_known || local_use {
        let bits = u128::from(v6) as u32;
        return IpAddr::V4(Ipv4Addr::from(bits));
    }
    ip
}

/// Addresses a grant reaches only when it names them explicitly: a rule
/// must lie wholly inside the special range (prefix length at least the
/// range's) to match them, so `0.0.0.0/0` does not reach `0.0.0.0`.
pub(crate) fn special(ip: IpAddr) -> Option<(&'static str, u8)> {
    match ip {
        IpAddr::V4(v4) if v4 == Ipv4Addr::UNSPECIFIED => Some(("unspecified", 32)),
        IpAddr::V4(v4) if v4 == Ipv4Addr::BROADCAST => Some(("broadcast", 32)),
        IpAddr::V4(v4) if v4.is_multicast() => Some(("multicast", 4)),
        IpAddr::V6(v6) if v6 == Ipv6Addr::UNSPECIFIED => Some(("unspecified", 128)),
        IpAddr::V6(v6) if v6.is_multicast() => Some(("multicast", 8)),
        _ => None,
    }
}

/// The internal address range `ip` lies in, by name, if any: addresses
/// that are not the public Internet (this host, its networks, link-local
/// cloud metadata, shared and private space, and ranges reserved for
/// documentation, benchmarks, multicast and future use), after the IANA
/// special-purpose registries. Traffic that a name's DNS answer steers to
/// one of these is refused unless the name's grant is `internal` or an
/// address grant names the address. The address is judged in its
/// canonical form ([`canonical_ip`]: IPv4-mapped, -compatible and NAT64
/// spellings as the IPv4 address), and 6to4 and Teredo addresses, which
/// carry an IPv4 address of the tunnel's choosing, are internal whole.
pub fn internal_range(ip: IpAddr) -> Option<&'static str> {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            Some(match (a, b, c) {
                (0, _, _) => "this-network (0.0.0.0/8)",
                (10, _, _) => "private (10.0.0.0/8)",
                (100, 64..=127, _) => "shared address space (100.64.0.0/10)",
                (127, _, _) => "loopback (127.0.0.0/8)",
                (169, 254, _) => "link-local (169.254.0.0/16)",
                (172, 16..=31, _) => "private (172.16.0.0/12)",
                (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
                (192, 0, 2) => "documentation (192.0.2.0/24)",
                (192, 31, 196) => "AS112 (192.31.196.0/24)",
                (192, 52, 193) => "AMT (192.52.193.0/24)",
                (192, 88, 99) => "6to4 relay (192.88.99.0/24)",
                (192, 168, _) => "private (192.168.0.0/16)",
                (192, 175, 48) => "AS112 (192.175.48.0/24)",
                (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
                (198, 51, 100) => "documentation (198.51.100.0/24)",
                (203, 0, 113) => "documentation (203.0.113.0/24)",
                (224..=239, _, _) => "multicast (224.0.0.0/4)",
                _ if v4 == Ipv4Addr::BROADCAST => "broadcast (255.255.255.255)",
                (240..=255, _, _) => "reserved (240.0.0.0/4)",
                _ => return None,
            })
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            Some(match s {
                _ if v6 == Ipv6Addr::UNSPECIFIED => "unspecified (::)",
                _ if v6 == Ipv6Addr::LOCALHOST => "loopback (::1)",
                [0x100, 0, 0, 0, ..] => "discard-only (100::/64)",
                [0x2001, 0xdb8, ..] => "documentation (2001:db8::/32)",
                [0x2001, 0, ..] => "Teredo (2001::/32)",
                [0x2001, 0..=0x1ff, ..] => "IETF protocol assignments (2001::/23)",
                [0x2002, ..] => "6to4 (2002::/16)",
                [0x3fff, 0..=0x0fff, ..] => "documentation (3fff::/20)",
                [0x5f00, ..] => "segment routing (5f00::/16)",
                [0xfc00..=0xfdff, ..] => "unique local (fc00::/7)",
                [0xfe80..=0xfebf, ..] => "link-local (fe80::/10)",
                [0xfec0..=0xfeff, ..] => "site-local (fec0::/10)",
                [0xff00..=0xffff, ..] => "multicast (ff00::/8)",
                // Other spellings of IPv4 (mapped, compatible, NAT64) were
                // made IPv4 above; what is left of ::/96 is reserved.
                [0, 0, 0, 0, 0, 0, ..] => "reserved (::/96)",
                _ => return None,
            })
        }
    }
}

/// An address block: an IP and a prefix length, in canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    /// The block of `addr` with `len` leading bits, host bits cleared.
    /// IPv4-mapped and IPv4-compatible IPv6 blocks of length 96 or more
    /// become IPv4 blocks.
    pub fn new(addr: IpAddr, len: u8) -> Option<Cidr> {
        let (addr, len) = match (addr, canonical_ip(addr)) {
            (IpAddr::V6(_), IpAddr::V4(v4)) if len >= 96 => (IpAddr::V4(v4), len - 96),
            _ => (addr, len),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return None;
        }
        let bits = ip_bits(addr) & mask(len, max);
        Some(Cidr {
            addr: from_bits(bits, addr.is_ipv4()),
            len,
        })
    }

    /// The block holding exactly `ip`.
    pub fn host(ip: IpAddr) -> Cidr {
        let ip = canonical_ip(ip);
        Cidr {
            addr: ip,
            len: if ip.is_ipv4() { 32 } else { 128 },
        }
    }

    /// The first address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether the block covers a whole address family (`/0`).
    pub fn is_everything(&self) -> bool {
        self.len == 0
    }

    /// Whether `ip` (canonicalised) is in the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        let max = if ip.is_ipv4() { 32 } else { 128 };
        ip_bits(ip) & mask(self.len, max) == ip_bits(self.addr)
    }
}

/// The address as a left-aligned 128-bit number (IPv4 in the top 32 bits),
/// which is the order the prefix tables are probed in.
pub(crate) fn ip_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_bits(bits: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from((bits >> 96) as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(bits))
    }
}

fn mask(len: u8, max: u8) -> u128 {
    debug_assert!(len <= max);
    if len == 0 {
        0
    } else {
        // Left-aligned: the top `len` bits of the family's width.
        let width_mask = u128::MAX << (128 - u32::from(max));
        (u128::MAX << (128 - u32::from(len))) & width_mask
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let inner = s
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(s);
        let (ip, len) = match inner.split_once('/') {
            Some((ip, len)) => (ip, Some(len)),
            None => (inner, None),
        };
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("`{ip}` is not an IP address"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("`/{l}` is not a prefix length for {ip} (0-{max})"))?,
        };
        if let IpAddr::V6(v6) = ip {
            let seg = v6.segments();
            if len < 96 && (seg[..3] == [0x64, 0xff9b, 1] && len >= 48) {
                return Err(format!(
                    "`{s}`: addresses in the NAT64 prefix 64:ff9b:1::/48 are decided as the IPv4 address in their last 32 bits; write the IPv4 block instead (or a /96 or longer prefix)"
                ));
            }
        }
        Cidr::new(ip, len).ok_or_else(|| format!("`{s}` is not an address block"))
    }
}

/// A host-name pattern: one exact name, `*.suffix` (any name ending in
/// `.suffix`, matched by whole labels, not `suffix` itself), or `*` (every
/// name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NamePattern {
    /// Exactly this name.
    Exact(String),
    /// Any name with at least one more label before this suffix.
    Suffix(String),
    /// Every name.
    Any,
}

impl NamePattern {
    /// Whether `name` (already normalised by [`normalize_name`]) matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            NamePattern::Exact(n) => n == name,
            NamePattern::Suffix(s) => name
                .strip_suffix(s.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            NamePattern::Any => true,
        }
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NamePattern::Exact(n) => f.write_str(n),
            NamePattern::Suffix(s) => write!(f, "*.{s}"),
            NamePattern::Any => f.write_str("*"),
        }
    }
}

impl FromStr for NamePattern {
    type Err = String;
    fn from_str(s: &str) -> Result<NamePattern, String> {
        if s == "*" {
            return Ok(NamePattern::Any);
        }
        match s.strip_prefix("*.") {
            Some(suffix) => normalize_name(suffix)
                .map(NamePattern::Suffix)
                .ok_or_else(|| format!("`{s}`: `{suffix}` is not a host name")),
            None if s.contains('*') => Err(format!(
                "`{s}`: a wildcard is allowed only as a whole first label (`*.example.com`)"
            )),
            None => normalize_name(s)
                .map(NamePattern::Exact)
                .ok_or_else(|| format!("`{s}` is not a host name")),
        }
    }
}

/// A host name in the form rules compare: lower case, no trailing dot.
/// `None` when it is not a DNS name (empty labels, labels over 63 bytes,
/// characters other than letters, digits, `-` and `_`, over 253 bytes).
pub fn normalize_name(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    ok.then_some(name)
}

/// The IP a host names when it is an IP literal (`10.0.0.1`, `::1`, or
/// bracketed `[::1]` as in a URL), else `None`.
pub fn ip_literal(host: &str) -> Option<IpAddr> {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .parse()
        .ok()
}

/// What a rule is about: an address block or a name pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RuleTarget {
    /// Addresses in a block.
    Net(Cidr),
    /// Names matching a pattern (and, for connects, the addresses they were
    /// resolved to while the answer lives).
    Name(NamePattern),
}

impl RuleTarget {
    /// Every IPv4 and every IPv6 address (`0.0.0.0/0` and `::/0`), as rules
    /// about peers use it ("accept from any peer").
    pub fn every_address() -> [RuleTarget; 2] {
        let v4 = Cidr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0).expect("a /0 block");
        let v6 = Cidr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0).expect("a /0 block");
        [RuleTarget::Net(v4), RuleTarget::Net(v6)]
    }
}

impl fmt::Display for RuleTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleTarget::Net(c) if c.addr.is_ipv6() => write!(f, "[{c}]"),
            RuleTarget::Net(c) => write!(f, "{c}"),
            RuleTarget::Name(n) => write!(f, "{n}"),
        }
    }
}

impl FromStr for RuleTarget {
    type Err = String;
    /// An IP, a CIDR (IPv6 optionally in brackets), a host name, `*.suffix`
    /// or `*`.
    fn from_str(s: &str) -> Result<RuleTarget, String> {
        let looks_like_ip = s.starts_with('[')
            || s.contains(':')
            || s.contains('/')
            || s.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        if looks_like_ip {
            s.parse().map(RuleTarget::Net)
        } else {
            s.parse().map(RuleTarget::Name)
        }
    }
}

/// Parse `TARGET:PORTS` as flags take it: `HOST:PORTS`, `CIDR:PORTS`,
/// `[IPv6]:PORTS` or `[IPv6CIDR]:PORTS`, PORTS being `N`, `N-M` or `*`.
pub fn parse_target_ports(s: &str) -> Result<(RuleTarget, Ports), String> {
    let (target, ports) = if let Some(rest) = s.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("`{s}`: missing `]` after the IPv6 address"))?;
        let ports = after
            .strip_prefix(':')
            .ok_or_else(|| format!("`{s}`: expected `:PORTS` after `]` (PORTS is N, N-M or *)"))?;
        (
            RuleTarget::Net(inside.parse().map_err(|e| format!("`{s}`: {e}"))?),
            ports,
        )
    } else {
        let (target, ports) = s.rsplit_once(':').ok_or_else(|| {
            format!("`{s}`: expected TARGET:PORTS, for example 10.0.0.0/8:443 or api.example.com:80-89 or [::1]:*")
        })?;
        if target.contains(':') {
            return Err(format!(
                "`{s}`: write an IPv6 address in brackets, for example [{target}]:{ports}"
            ));
        }
        (target.parse().map_err(|e| format!("`{s}`: {e}"))?, ports)
    };
    let ports = ports.parse().map_err(|e| format!("`{s}`: {e}"))?;
    Ok((target, ports))
}

/// Whether a rule grants or denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    /// Grants these rights.
    Allow(Rights),
    /// Refuses every action on the target, whatever grants say.
    Deny,
}

/// One rule: an id, a target, ports and what it does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    /// The id reported in decisions: the manifest's id, or the flag text.
    pub id: String,
    /// Grant or deny.
    pub effect: Effect,
    /// What it is about.
    pub target: RuleTarget,
    /// Which ports (ignored for name resolution, which has none).
    pub ports: Ports,
    /// The connection kind a grant's connections are made as (see
    /// [`Kind`](crate::Kind)); `None` is plain TCP.
    pub kind: Option<String>,
    /// For a grant on names: its names may reach the internal addresses
    /// their answers hold ([`internal_range`]). Without it, traffic to such
    /// an address through the name is refused, so whoever answers for a
    /// granted name cannot point it inside the host or its network.
    pub internal: bool,
}

impl Rule {
    /// A grant.
    pub fn allow(id: impl Into<String>, target: RuleTarget, ports: Ports, rights: Rights) -> Rule {
        Rule {
            id: id.into(),
            effect: Effect::Allow(rights),
            target,
            ports,
            kind: None,
            internal: false,
        }
    }

    /// The grants of a listener: bind and listen on `target:ports` (with
    /// the connection kind `kind`, for a listener whose TLS the host
    /// terminates), and accept from any peer a deny does not refuse.
    pub fn listening(id: &str, target: RuleTarget, ports: Ports, kind: Option<&str>) -> Vec<Rule> {
        let mut listen = Rule::allow(id, target, ports, Rights::BIND | Rights::LISTEN);
        listen.kind = kind.map(str::to_string);
        let mut rules = vec![listen];
        for peer in RuleTarget::every_address() {
            rules.push(Rule::allow(id, peer, Ports::ANY, Rights::ACCEPT));
        }
        rules
    }

    /// A deny rule.
    pub fn deny(id: impl Into<String>, target: RuleTarget, ports: Ports) -> Rule {
        Rule {
            id: id.into(),
            effect: Effect::Deny,
            target,
            ports,
            kind: None,
            internal: false,
        }
    }

    /// This grant, its connections made as kind `kind`.
    pub fn with_kind(mut self, kind: impl Into<String>) -> Rule {
        self.kind = Some(kind.into());
        self
    }

    /// This grant on names, allowed to reach internal addresses (see
    /// [`Rule::internal`]).
    pub fn with_internal(mut self) -> Rule {
        self.internal = true;
        self
    }

    /// Whether this grant reaches every address or every name of a family
    /// on every port, which deserves a warning.
    pub fn is_allow_all(&self) -> bool {
        let wide = match &self.target {
            RuleTarget::Net(c) => c.is_everything(),
            RuleTarget::Name(n) => *n == NamePattern::Any,
        };
        let all_ports = self.ports.is_any() || self.effect == Effect::Allow(Rights::RESOLVE);
        // Accepting from every peer is what serving means; the listening
        // address is the grant that matters, and it is warned about itself.
        let serving_only = self.effect == Effect::Allow(Rights::ACCEPT);
        matches!(self.effect, Effect::Allow(_)) && wide && all_ports && !serving_only
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.effect {
            Effect::Allow(r) => write!(f, "allow {r} {}:{}", self.target, self.ports)?,
            Effect::Deny => write!(f, "deny {}:{}", self.target, self.ports)?,
        }
        if let Some(kind) = &self.kind {
            write!(f, " kind {kind}")?;
        }
        if self.internal {
            f.write_str(" internal")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse_and_display() {
        for (s, shown) in [
            ("80", "80"),
            ("80-90", "80-90"),
            ("*", "*"),
            ("0-65535", "*"),
        ] {
            assert_eq!(s.parse::<Ports>().unwrap().to_string(), shown);
        }
        assert_eq!(
            "90-80".parse::<Ports>().unwrap_err(),
            "port range `90-80` is empty: 90 is above 80"
        );
        assert_eq!(
            "65536".parse::<Ports>().unwrap_err(),
            "`65536` is not a port (0-65535)"
        );
        assert_eq!(
            "".parse::<Ports>().unwrap_err(),
            "expected ports: N, N-M or *"
        );
    }

    #[test]
    fn cidrs_canonicalise() {
        let c = |s: &str| s.parse::<Cidr>().unwrap().to_string();
        assert_eq!(c("10.1.2.3/8"), "10.0.0.0/8");
        assert_eq!(c("127.0.0.1"), "127.0.0.1/32");
        assert_eq!(c("::ffff:10.0.0.0/104"), "10.0.0.0/8");
        assert_eq!(c("::10.0.0.1"), "10.0.0.1/32");
        assert_eq!(c("[::1]"), "::1/128");
        assert_eq!(c("::/0"), "::/0");
        assert_eq!(c("fd00::1/8"), "fd00::/8");
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("example.com".parse::<Cidr>().is_err());
    }

    #[test]
    fn cidr_contains_every_spelling() {
        let net: Cidr = "127.0.0.0/8".parse().unwrap();
        for ip in ["127.0.0.1", "::ffff:127.0.0.1", "::127.0.0.1"] {
            assert!(net.contains(ip.parse().unwrap()), "{ip}");
        }
        assert!(!net.contains("::1".parse().unwrap()));
        assert!(!net.contains("128.0.0.1".parse().unwrap()));
    }

    #[test]
    fn suffix_patterns_match_whole_labels() {
        let p: NamePattern = "*.example.com".parse().unwrap();
        assert!(p.matches("api.example.com"));
        assert!(p.matches("a.b.example.com"));
        assert!(!p.matches("example.com"));
        assert!(!p.matches("evilexample.com"));
        assert!(!p.matches(".example.com"));
        assert!("api.*.com".parse::<NamePattern>().is_err());
        assert_eq!(
            normalize_name("API.Example.COM.").unwrap(),
            "api.example.com"
        );
        assert!(normalize_name("a..b").is_none());
        assert!(normalize_name("a b").is_none());
    }

    #[test]
    fn target_ports_forms() {
        let t = |s: &str| {
            let (t, p) = parse_target_ports(s).unwrap();
            format!("{t}:{p}")
        };
        assert_eq!(t("api.example.com:443"), "api.example.com:443");
        assert_eq!(t("*.example.com:80-89"), "*.example.com:80-89");
        assert_eq!(t("10.0.0.0/8:*"), "10.0.0.0/8:*");
        assert_eq!(t("127.0.0.1:8080"), "127.0.0.1/32:8080");
        assert_eq!(t("[::1]:443"), "[::1/128]:443");
        assert_eq!(t("[fd00::/8]:1-2"), "[fd00::/8]:1-2");
        assert_eq!(t("[::ffff:1.2.3.4]:1"), "1.2.3.4/32:1");
        assert_eq!(
            parse_target_ports("::1:443").unwrap_err(),
            "`::1:443`: write an IPv6 address in brackets, for example [::1]:443"
        );
        assert!(parse_target_ports("example.com").is_err());
        assert!(parse_target_ports("example.com:").is_err());
        assert!(parse_target_ports("[::1]443").is_err());
        assert!(parse_target_ports("ex ample.com:80").is_err());
    }
}
