//! The names and addresses of one bed, all derived from its id and its site list: the library,
//! the emulator and `gc` compute them here, so they cannot disagree.
//!
//! Bed `id` owns the subnet `10.(200+id).0.0/16`. Site `i` (1-based) is `10.(200+id).i.0/24`:
//! the site host is `.2`, its gateway in the WAN namespace `.1`. The pseudo-site "ops" (the
//! caller's own namespace) is index 0: `10.(200+id).0.2`, gateway `10.(200+id).0.1`.

use std::net::Ipv4Addr;

use crate::error::Error;

/// The name of the pseudo-site that stands for the caller's (root) network namespace.
pub const OPS: &str = "ops";
/// Bed ids run 0..=ID_MAX: the second octet 200+id must stay a valid octet, with room to spare.
pub(crate) const ID_MAX: u8 = 49;
/// At most this many sites (not counting ops) in one bed.
pub(crate) const SITES_MAX: usize = 16;
/// Site names are short: the WAN-side link is `to-<site>` and interface names have 15 bytes.
pub(crate) const SITE_NAME_MAX_CHARS: usize = 12;
/// The routing table in the WAN namespace that sends every packet from a site into the TUN.
pub(crate) const WAN_TABLE: &str = "100";
/// The TUN device of the emulator, inside the WAN namespace.
pub(crate) const TUN_NAME: &str = "tun0";
/// The link inside every site namespace.
pub(crate) const SITE_LINK: &str = "eth0";

/// Names and addresses of one bed.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) id: u8,
    /// Real sites in order; site `sites[k]` has index `k + 1`.
    pub(crate) sites: Vec<String>,
}

impl Plan {
    pub(crate) fn new(id: u8, sites: Vec<String>) -> Self {
        assert!(id <= ID_MAX, "bed id {id} out of range");
        Self { id, sites }
    }

    /// The second octet of every address of the bed.
    pub(crate) fn octet(&self) -> u8 {
        octet(self.id)
    }

    pub(crate) fn subnet(&self) -> String {
        format!("10.{}.0.0/16", self.octet())
    }

    pub(crate) fn wan_netns(&self) -> String {
        format!("{}wan", prefix(self.id))
    }

    pub(crate) fn site_netns(&self, site: &str) -> String {
        format!("{}{site}", prefix(self.id))
    }

    /// Every namespace of the bed: the sites', then the WAN's.
    pub(crate) fn all_netns(&self) -> Vec<String> {
        let mut all: Vec<String> = self.sites.iter().map(|s| self.site_netns(s)).collect();
        all.push(self.wan_netns());
        all
    }

    /// The root-namespace end of the ops veth.
    pub(crate) fn ops_link(&self) -> String {
        ops_link(self.id)
    }

    /// The WAN-namespace end of the veth to `site` (or to ops).
    pub(crate) fn wan_link(site: &str) -> String {
        format!("to-{site}")
    }

    /// The index of a site: 0 for ops, 1.. for real sites.
    pub(crate) fn index(&self, site: &str) -> Result<usize, Error> {
        if site == OPS {
            return Ok(0);
        }
        match self.sites.iter().position(|s| s == site) {
            Some(k) => Ok(k + 1),
            None => Err(Error::UnknownSite {
                site: site.to_owned(),
                known: self.names().join(","),
            }),
        }
    }

    /// Ops first, then the real sites: position = index.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names = vec![OPS.to_owned()];
        names.extend(self.sites.iter().cloned());
        names
    }

    /// The host address of the site with this index.
    pub(crate) fn host_ip(&self, index: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, self.octet(), index_octet(index), 2)
    }

    /// The gateway (WAN-namespace) address on the link of the site with this index.
    pub(crate) fn gateway_ip(&self, index: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, self.octet(), index_octet(index), 1)
    }
}

fn index_octet(index: usize) -> u8 {
    assert!(index <= SITES_MAX, "site index {index} out of range");
    index as u8
}

pub(crate) fn octet(id: u8) -> u8 {
    200 + id
}

/// Every namespace of bed `id` starts with this; `cnb1-` is no prefix of `cnb10-`.
pub(crate) fn prefix(id: u8) -> String {
    format!("cnb{id}-")
}

pub(crate) fn ops_link(id: u8) -> String {
    format!("cnb{id}-ops")
}

/// Checks a site name: short, lower-case, starts with a letter, not a reserved word.
pub(crate) fn validate_site_name(name: &str) -> Result<(), Error> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let starts = name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    if !ok_chars || !starts || name.len() > SITE_NAME_MAX_CHARS {
        return Err(Error::InvalidSpec(format!(
            "site name {name:?}: use 1..={SITE_NAME_MAX_CHARS} of a-z, 0-9, '-', starting with a letter"
        )));
    }
    if name == OPS || name == "wan" {
        return Err(Error::InvalidSpec(format!(
            "site name {name:?} is reserved"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses_follow_the_id() {
        let plan = Plan::new(7, vec!["dc1".into(), "dc2".into()]);
        assert_eq!(plan.wan_netns(), "cnb7-wan");
        assert_eq!(plan.site_netns("dc2"), "cnb7-dc2");
        assert_eq!(plan.ops_link(), "cnb7-ops");
        assert_eq!(plan.subnet(), "10.207.0.0/16");
        assert_eq!(plan.index("ops").unwrap(), 0);
        assert_eq!(plan.index("dc2").unwrap(), 2);
        assert_eq!(plan.host_ip(2), Ipv4Addr::new(10, 207, 2, 2));
        assert_eq!(plan.gateway_ip(0), Ipv4Addr::new(10, 207, 0, 1));
        assert!(plan.index("dc3").is_err());
    }

    #[test]
    fn interface_names_fit_in_fifteen_bytes() {
        assert!(ops_link(ID_MAX).len() <= 15);
        assert!(Plan::wan_link(&"x".repeat(SITE_NAME_MAX_CHARS)).len() <= 15);
    }

    #[test]
    fn site_names_are_checked() {
        for good in ["dc1", "a", "eu-west-1"] {
            validate_site_name(good).unwrap();
        }
        for bad in [
            "",
            "ops",
            "wan",
            "1dc",
            "DC1",
            "dc_1",
            "averyveryverylongname",
        ] {
            assert!(
                validate_site_name(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }
}
