//! The `--to` question: `PEER[:PORT][/PROTO]` (an island of the same project) or
//! `ADDRESS:PORT[/PROTO]`. A port without a protocol is tcp; no port asks about the link and the
//! flows allowed at all (icmp takes no port).

use std::net::Ipv4Addr;

use serde::Serialize;

use crate::error::DoctorError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Peer {
    /// An island, by its name in the subject's project.
    Island(String),
    Address(Ipv4Addr),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    pub peer: Peer,
    pub port: Option<u16>,
    pub proto: Proto,
}

impl Target {
    pub fn parse(s: &str) -> Result<Target, DoctorError> {
        let bad = |why: &str| DoctorError::Usage(format!("--to {s:?}: {why}"));
        let (rest, proto) = match s.rsplit_once('/') {
            Some((r, p)) => (
                r,
                Some(match p {
                    "tcp" => Proto::Tcp,
                    "udp" => Proto::Udp,
                    "icmp" => Proto::Icmp,
                    _ => return Err(bad("the protocol is tcp, udp or icmp")),
                }),
            ),
            None => (s, None),
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => {
                let port: u16 = p
                    .parse()
                    .map_err(|_| bad("the port is a number from 1 to 65535"))?;
                if port == 0 {
                    return Err(bad("the port is a number from 1 to 65535"));
                }
                (h, Some(port))
            }
            None => (rest, None),
        };
        if host.is_empty() {
            return Err(bad("name an island or an IPv4 address"));
        }
        let proto = proto.unwrap_or(Proto::Tcp);
        if proto == Proto::Icmp && port.is_some() {
            return Err(bad("icmp has no port"));
        }
        let peer = match host.parse::<Ipv4Addr>() {
            Ok(a) => Peer::Address(a),
            Err(_) if host.chars().all(|c| c.is_ascii_digit() || c == '.') => {
                return Err(bad("not an IPv4 address"))
            }
            Err(_) => Peer::Island(host.to_string()),
        };
        if matches!(peer, Peer::Address(_)) && port.is_none() && proto != Proto::Icmp {
            return Err(bad("an address needs a port (ADDRESS:PORT) or /icmp"));
        }
        Ok(Target { peer, port, proto })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.peer {
            Peer::Island(n) => write!(f, "{n}")?,
            Peer::Address(a) => write!(f, "{a}")?,
        }
        match self.port {
            Some(p) => write!(f, " {}/{p}", self.proto.as_str()),
            None => write!(f, " {}", self.proto.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_the_help_shows_parses() {
        let t = Target::parse("db:5432").unwrap();
        assert_eq!(t.peer, Peer::Island("db".into()));
        assert_eq!((t.port, t.proto), (Some(5432), Proto::Tcp));
        let t = Target::parse("db:53/udp").unwrap();
        assert_eq!((t.port, t.proto), (Some(53), Proto::Udp));
        let t = Target::parse("db").unwrap();
        assert_eq!((t.port, t.proto), (None, Proto::Tcp));
        let t = Target::parse("db/icmp").unwrap();
        assert_eq!((t.port, t.proto), (None, Proto::Icmp));
        let t = Target::parse("10.0.0.2:80").unwrap();
        assert_eq!(t.peer, Peer::Address("10.0.0.2".parse().unwrap()));
    }

    #[test]
    fn bad_questions_are_named() {
        for bad in [
            "db:0",
            "db:x",
            "db:70000",
            ":80",
            "db/sctp",
            "db:80/icmp",
            "10.0.0.2",
            "10.0.0:80",
        ] {
            let e = Target::parse(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }
}
