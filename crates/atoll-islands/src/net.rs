//! IPv4 subnets for links: parse, overlap, and the /30s a pool hands out.

use std::fmt;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Subnet {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    /// "10.77.1.0/30"; host bits must be zero.
    pub fn parse(s: &str) -> Result<Subnet, String> {
        let bad = || format!("{s:?} is not an IPv4 subnet like \"10.77.0.0/30\"");
        let (ip, len) = s.split_once('/').ok_or_else(bad)?;
        let base: Ipv4Addr = ip.trim().parse().map_err(|_| bad())?;
        let prefix: u8 = len.trim().parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        let net = Subnet { base, prefix };
        if u32::from(base) & !net.mask() != 0 {
            return Err(format!(
                "{s:?} has host bits set (the subnet is {}/{prefix})",
                Ipv4Addr::from(u32::from(base) & net.mask())
            ));
        }
        Ok(net)
    }

    fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    fn size(&self) -> u64 {
        1u64 << (32 - self.prefix)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.base)
    }

    /// Neither the network nor the broadcast address.
    pub fn usable(&self, ip: Ipv4Addr) -> bool {
        let off = u32::from(ip).wrapping_sub(u32::from(self.base)) as u64;
        self.contains(ip) && off != 0 && off != self.size() - 1
    }

    pub fn overlaps(&self, o: &Subnet) -> bool {
        let m = self.mask() & o.mask();
        u32::from(self.base) & m == u32::from(o.base) & m
    }

    pub fn host(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + n)
    }

    /// The n-th /30 of this subnet, if it has one.
    pub fn nth_30(&self, n: u32) -> Option<Subnet> {
        if self.prefix > 30 || (n as u64) >= self.size() / 4 {
            return None;
        }
        Some(Subnet {
            base: Ipv4Addr::from(u32::from(self.base) + n * 4),
            prefix: 30,
        })
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets() {
        let a = Subnet::parse("10.77.0.0/16").unwrap();
        assert!(Subnet::parse("10.77.0.1/30")
            .unwrap_err()
            .contains("host bits"));
        assert!(Subnet::parse("10.77.0.0").is_err());
        let b = a.nth_30(3).unwrap();
        assert_eq!(b.to_string(), "10.77.0.12/30");
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!b.overlaps(&a.nth_30(4).unwrap()));
        assert!(b.usable(b.host(1)) && b.usable(b.host(2)));
        assert!(!b.usable(b.host(0)) && !b.usable(b.host(3)));
        assert_eq!(a.nth_30(16384), None);
    }
}
