//! Data-connection address encodings: PORT and 227 `h1,h2,h3,h4,p1,p2`
//! (RFC 959 §4.1.2, RFC 1123 §4.1.2.6), EPRT `|af|addr|port|` and EPSV
//! `(|||port|)` (RFC 2428 §2-§3). Parse and format, nothing else.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};

/// Why an address argument or reply could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// Not the expected shape (501).
    #[error("syntax error in address")]
    Syntax,
    /// EPRT/EPSV network protocol we cannot serve (522).
    #[error("network protocol not supported")]
    Family,
}

/// Parses a PORT argument `h1,h2,h3,h4,p1,p2`.
pub fn parse_port_arg(arg: &str) -> Result<SocketAddrV4, AddrError> {
    six_numbers(arg.trim().split(','))
}

/// Parses a 227 reply text by scanning for the first digit and reading six
/// comma-separated numbers; parentheses are optional (RFC 1123 §4.1.2.6).
pub fn parse_pasv_reply(text: &str) -> Result<SocketAddrV4, AddrError> {
    let start = text
        .find(|c: char| c.is_ascii_digit())
        .ok_or(AddrError::Syntax)?;
    let rest = &text[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == ',' || c == ' '))
        .unwrap_or(rest.len());
    six_numbers(rest[..end].split(','))
}

fn six_numbers<'a>(parts: impl Iterator<Item = &'a str>) -> Result<SocketAddrV4, AddrError> {
    let mut n = [0u8; 6];
    let mut count = 0;
    for part in parts {
        if count == 6 {
            return Err(AddrError::Syntax);
        }
        n[count] = part.trim().parse().map_err(|_| AddrError::Syntax)?;
        count += 1;
    }
    if count != 6 {
        return Err(AddrError::Syntax);
    }
    let ip = Ipv4Addr::new(n[0], n[1], n[2], n[3]);
    Ok(SocketAddrV4::new(ip, u16::from_be_bytes([n[4], n[5]])))
}

/// Formats `h1,h2,h3,h4,p1,p2` (for PORT and 227).
pub fn format_port(addr: SocketAddrV4) -> String {
    let [a, b, c, d] = addr.ip().octets();
    let [p1, p2] = addr.port().to_be_bytes();
    format!("{a},{b},{c},{d},{p1},{p2}")
}

/// The 227 reply text for `addr` (single line, parentheses present).
pub fn pasv_reply_text(addr: SocketAddrV4) -> String {
    format!("Entering Passive Mode ({}).", format_port(addr))
}

/// Parses an EPRT argument `<d>af<d>addr<d>port<d>` with any delimiter 33..=126.
pub fn parse_eprt_arg(arg: &str) -> Result<SocketAddr, AddrError> {
    let arg = arg.trim();
    let delim = arg.chars().next().ok_or(AddrError::Syntax)?;
    if !(33..=126).contains(&(delim as u32)) || !arg.ends_with(delim) || arg.len() < 2 {
        return Err(AddrError::Syntax);
    }
    let fields: Vec<&str> = arg[1..arg.len() - 1].split(delim).collect();
    let [af, addr, port] = fields.as_slice() else {
        return Err(AddrError::Syntax);
    };
    let port: u16 = port.parse().map_err(|_| AddrError::Syntax)?;
    let ip: IpAddr = match *af {
        "1" => IpAddr::V4(addr.parse::<Ipv4Addr>().map_err(|_| AddrError::Syntax)?),
        "2" => IpAddr::V6(addr.parse::<Ipv6Addr>().map_err(|_| AddrError::Syntax)?),
        _ => return Err(AddrError::Family),
    };
    Ok(SocketAddr::new(ip, port))
}

/// Formats an EPRT argument `|1|a.b.c.d|port|` or `|2|::1|port|`.
pub fn format_eprt(addr: SocketAddr) -> String {
    let af = if addr.is_ipv4() { 1 } else { 2 };
    format!("|{af}|{}|{}|", addr.ip(), addr.port())
}

/// The 229 reply text for `port`.
pub fn epsv_reply_text(port: u16) -> String {
    format!("Entering Extended Passive Mode (|||{port}|)")
}

/// Parses the port out of a 229 reply: `(<d><d><d>port<d>)`, any delimiter.
pub fn parse_epsv_reply(text: &str) -> Result<u16, AddrError> {
    let open = text.find('(').ok_or(AddrError::Syntax)?;
    let close = text[open..].find(')').ok_or(AddrError::Syntax)? + open;
    let inner = &text[open + 1..close];
    let delim = inner.chars().next().ok_or(AddrError::Syntax)?;
    let fields: Vec<&str> = inner.split(delim).collect();
    match fields.as_slice() {
        ["", "", "", port, ""] => port.parse().map_err(|_| AddrError::Syntax),
        _ => Err(AddrError::Syntax),
    }
}

/// An address as the protocol sees it: an IPv4 client reaching a dual-stack
/// (`[::]`) listener appears as `::ffff:a.b.c.d`, and is an IPv4 client for
/// PASV, PORT, EPRT `|1|` and the data-peer checks.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(canonical_ip(addr.ip()), addr.port())
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is; others unchanged.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The network-protocol number RFC 2428 uses for this address family.
pub fn family_number(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        1
    } else {
        2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pasv_replies_in_the_wild() {
        let want: SocketAddrV4 = "192.168.1.2:1234".parse().unwrap();
        for text in [
            "Entering Passive Mode (192,168,1,2,4,210).",
            "Entering Passive Mode 192,168,1,2,4,210",
            "=192,168,1,2,4,210",
            "Entering Passive Mode (192, 168, 1, 2, 4, 210)",
        ] {
            assert_eq!(parse_pasv_reply(text), Ok(want), "{text}");
        }
        assert_eq!(parse_pasv_reply("(256,1,1,1,1,1)"), Err(AddrError::Syntax));
        assert_eq!(parse_pasv_reply("(1,1,1,1,1)"), Err(AddrError::Syntax));
        assert_eq!(parse_pasv_reply("no digits"), Err(AddrError::Syntax));
    }

    #[test]
    fn port_args() {
        assert_eq!(
            parse_port_arg("127,0,0,1,4,0"),
            Ok("127.0.0.1:1024".parse().unwrap())
        );
        assert_eq!(parse_port_arg("127,0,0,1,4"), Err(AddrError::Syntax));
        assert_eq!(parse_port_arg("127,0,0,1,4,0,1"), Err(AddrError::Syntax));
        assert_eq!(parse_port_arg("a,0,0,1,4,0"), Err(AddrError::Syntax));
    }

    #[test]
    fn eprt_args() {
        assert_eq!(
            parse_eprt_arg("|1|127.0.0.1|2000|"),
            Ok("127.0.0.1:2000".parse().unwrap())
        );
        assert_eq!(
            parse_eprt_arg("!2!::1!2000!"),
            Ok("[::1]:2000".parse().unwrap())
        );
        assert_eq!(parse_eprt_arg("|3|x|1|"), Err(AddrError::Family));
        assert_eq!(parse_eprt_arg("|1|::1|2000|"), Err(AddrError::Syntax));
        assert_eq!(parse_eprt_arg("|1|127.0.0.1|2000"), Err(AddrError::Syntax));
        assert_eq!(parse_eprt_arg(""), Err(AddrError::Syntax));
    }

    #[test]
    fn epsv_replies() {
        assert_eq!(
            parse_epsv_reply("Entering Extended Passive Mode (|||6446|)"),
            Ok(6446)
        );
        assert_eq!(parse_epsv_reply("ok (!!!6446!)"), Ok(6446));
        assert_eq!(parse_epsv_reply("(|1|x|6446|)"), Err(AddrError::Syntax));
    }

    #[test]
    fn mapped_addresses_are_ipv4() {
        let a: SocketAddr = "[::ffff:192.0.2.1]:21".parse().unwrap();
        assert_eq!(canonical(a), "192.0.2.1:21".parse().unwrap());
        let v6: SocketAddr = "[2001:db8::1]:21".parse().unwrap();
        assert_eq!(canonical(v6), v6);
        let v4: SocketAddr = "192.0.2.1:21".parse().unwrap();
        assert_eq!(canonical(v4), v4);
    }

    proptest! {
        #[test]
        fn port_round_trip(ip in any::<u32>(), port in any::<u16>()) {
            let addr = SocketAddrV4::new(Ipv4Addr::from(ip), port);
            prop_assert_eq!(parse_port_arg(&format_port(addr)), Ok(addr));
            prop_assert_eq!(parse_pasv_reply(&pasv_reply_text(addr)), Ok(addr));
        }

        #[test]
        fn eprt_epsv_round_trip(v6 in any::<u128>(), v4 in any::<u32>(), port in any::<u16>()) {
            for ip in [IpAddr::V6(Ipv6Addr::from(v6)), IpAddr::V4(Ipv4Addr::from(v4))] {
                let addr = SocketAddr::new(ip, port);
                prop_assert_eq!(parse_eprt_arg(&format_eprt(addr)), Ok(addr));
            }
            prop_assert_eq!(parse_epsv_reply(&epsv_reply_text(port)), Ok(port));
        }

        #[test]
        fn parsers_never_panic(s in ".{0,80}") {
            let _ = parse_pasv_reply(&s);
            let _ = parse_port_arg(&s);
            let _ = parse_eprt_arg(&s);
            let _ = parse_epsv_reply(&s);
        }
    }
}
