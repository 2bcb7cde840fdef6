//! Where the processes of a platform go, and the names, node ids and ports they get.
//!
//! The layout is a pure function of the shape, so it is the same for every user and testable
//! without a bed: managers `manager-101`, `manager-102`, ... (node ids from [`MANAGER_ID_BASE`],
//! one per entry of `manager_sites`), hosts `host-1`, `host-2`, ... (node ids 1, 2, ... in the
//! order of `host_sites`), routers `router-SITE`. Every site has an address of its own, so ports
//! only need to differ between processes of one site: a manager listens on
//! [`MANAGER_PORT_BASE`] + its index, a host on [`HOST_PORT_BASE`] + its id, a router on
//! [`ROUTER_PORT`]; each serves its metrics [`METRICS_PORT_OFFSET`] above that.

use std::time::Duration;

use anyhow::bail;

/// The first manager's node id (managers are 101, 102, ... in the order of their sites).
pub const MANAGER_ID_BASE: u64 = 101;
/// The first manager's port (7001, 7002, ...).
pub const MANAGER_PORT_BASE: u16 = 7001;
/// Host `id` listens on this port + `id` (7101, 7102, ...).
pub const HOST_PORT_BASE: u16 = 7100;
/// Every router's port (one router per site).
pub const ROUTER_PORT: u16 = 7201;
/// A process serves `/metrics` on its port + this.
pub const METRICS_PORT_OFFSET: u16 = 2000;
/// Managers and hosts each fit below the next range of ports (and ids stay below 101).
const MANAGERS_MAX: usize = (HOST_PORT_BASE - MANAGER_PORT_BASE) as usize;
const HOSTS_MAX: usize = (ROUTER_PORT - HOST_PORT_BASE - 1) as usize;

/// The sites of a platform and where its processes go. A site may hold several managers and
/// several hosts (their ports differ, see the module docs) but at most one router; every site
/// named must be one of `sites`.
#[derive(Clone, Debug)]
pub struct SiteShape<'a> {
    /// The sites (network namespaces of the bed).
    pub sites: Vec<&'a str>,
    /// The round trip between every two sites.
    pub rtt: Duration,
    /// One manager per entry; together they form the catalog group. At least one.
    pub manager_sites: Vec<&'a str>,
    /// One shard-node host per entry: host ids 1, 2, ... in this order.
    pub host_sites: Vec<&'a str>,
    /// One router per entry, configured with its site (site-aware reads); each site at most once.
    pub router_sites: Vec<&'a str>,
}

/// What a process of the platform runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A manager (`cairn manager`): the catalog.
    Manager,
    /// A shard-node host (`cairn shard-node`).
    Host,
    /// A router (`cairn router`).
    Router,
}

impl Kind {
    /// The `cairn` subcommand that runs it.
    pub fn subcommand(self) -> &'static str {
        match self {
            Self::Manager => "manager",
            Self::Host => "shard-node",
            Self::Router => "router",
        }
    }
}

/// One process as the shape places it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    /// `manager-ID`, `host-ID` or `router-SITE`.
    pub name: String,
    /// What it runs.
    pub kind: Kind,
    /// Its site.
    pub site: String,
    /// Its node id (managers and hosts).
    pub node_id: Option<u64>,
    /// Its port on the site's address.
    pub port: u16,
}

impl SiteShape<'_> {
    /// Every process, managers first, then hosts, then routers; fails on a shape that cannot be
    /// laid out.
    pub fn layout(&self) -> anyhow::Result<Vec<Placed>> {
        self.validate()?;
        let managers = self.manager_sites.iter().enumerate().map(|(i, site)| {
            let id = MANAGER_ID_BASE + i as u64;
            Placed {
                name: format!("manager-{id}"),
                kind: Kind::Manager,
                site: (*site).to_owned(),
                node_id: Some(id),
                port: MANAGER_PORT_BASE + i as u16,
            }
        });
        let hosts = self.host_sites.iter().enumerate().map(|(i, site)| {
            let id = i as u64 + 1;
            Placed {
                name: format!("host-{id}"),
                kind: Kind::Host,
                site: (*site).to_owned(),
                node_id: Some(id),
                port: HOST_PORT_BASE + id as u16,
            }
        });
        let routers = self.router_sites.iter().map(|site| Placed {
            name: format!("router-{site}"),
            kind: Kind::Router,
            site: (*site).to_owned(),
            node_id: None,
            port: ROUTER_PORT,
        });
        Ok(managers.chain(hosts).chain(routers).collect())
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.manager_sites.is_empty() {
            bail!("a platform needs at least one manager");
        }
        if self.manager_sites.len() > MANAGERS_MAX || self.host_sites.len() > HOSTS_MAX {
            bail!(
                "at most {MANAGERS_MAX} managers and {HOSTS_MAX} hosts (their ports would collide)"
            );
        }
        let placed = self
            .manager_sites
            .iter()
            .chain(&self.host_sites)
            .chain(&self.router_sites);
        for site in placed {
            if !self.sites.contains(site) {
                bail!(
                    "site {site:?} is not one of the platform's sites {:?}",
                    self.sites
                );
            }
        }
        for (i, site) in self.router_sites.iter().enumerate() {
            if self.router_sites[..i].contains(site) {
                bail!("two routers in site {site:?} (one router per site)");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_sites() -> SiteShape<'static> {
        SiteShape {
            sites: vec!["a", "b"],
            rtt: Duration::from_millis(10),
            manager_sites: vec!["a"],
            host_sites: vec!["a", "a", "b"],
            router_sites: vec!["a", "b"],
        }
    }

    #[test]
    fn the_layout_numbers_managers_and_hosts_in_order_and_gives_each_process_its_port() {
        let layout = two_sites().layout().unwrap();
        let summary: Vec<(&str, Kind, &str, Option<u64>, u16)> = layout
            .iter()
            .map(|p| (p.name.as_str(), p.kind, p.site.as_str(), p.node_id, p.port))
            .collect();
        assert_eq!(
            summary,
            [
                ("manager-101", Kind::Manager, "a", Some(101), 7001),
                ("host-1", Kind::Host, "a", Some(1), 7101),
                ("host-2", Kind::Host, "a", Some(2), 7102),
                ("host-3", Kind::Host, "b", Some(3), 7103),
                ("router-a", Kind::Router, "a", None, 7201),
                ("router-b", Kind::Router, "b", None, 7201),
            ]
        );
    }

    #[test]
    fn several_managers_take_consecutive_ids_and_ports() {
        let shape = SiteShape {
            sites: vec!["a", "b", "c"],
            manager_sites: vec!["a", "b", "c"],
            host_sites: vec![],
            router_sites: vec![],
            ..two_sites()
        };
        let managers: Vec<(String, Option<u64>, u16)> = shape
            .layout()
            .unwrap()
            .into_iter()
            .map(|p| (p.name, p.node_id, p.port))
            .collect();
        assert_eq!(
            managers,
            [
                ("manager-101".into(), Some(101), 7001),
                ("manager-102".into(), Some(102), 7002),
                ("manager-103".into(), Some(103), 7003),
            ]
        );
    }

    #[test]
    fn shapes_that_cannot_be_laid_out_are_refused() {
        let no_manager = SiteShape {
            manager_sites: vec![],
            ..two_sites()
        };
        assert!(no_manager.layout().is_err());
        let unknown_site = SiteShape {
            host_sites: vec!["a", "z"],
            ..two_sites()
        };
        let e = unknown_site.layout().unwrap_err().to_string();
        assert!(e.contains("\"z\""), "{e}");
        let two_routers = SiteShape {
            router_sites: vec!["a", "a"],
            ..two_sites()
        };
        assert!(two_routers.layout().is_err());
        let too_many_hosts = SiteShape {
            host_sites: vec!["a"; HOSTS_MAX + 1],
            ..two_sites()
        };
        assert!(too_many_hosts.layout().is_err());
    }

    #[test]
    fn the_port_ranges_do_not_overlap() {
        let last_manager = MANAGER_PORT_BASE + MANAGERS_MAX as u16 - 1;
        let first_host = HOST_PORT_BASE + 1;
        let last_host = HOST_PORT_BASE + HOSTS_MAX as u16;
        assert!(last_manager < first_host);
        assert!(last_host < ROUTER_PORT);
        assert!(
            MANAGER_ID_BASE > HOSTS_MAX as u64,
            "host ids stay below the managers'"
        );
    }
}
