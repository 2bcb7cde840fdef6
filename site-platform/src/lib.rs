//! A cairn platform spread over sites, for the multi-site tests (`cairn/tests/multisite.rs`) and
//! the multi-site benchmark (`cairn-bench sites`).
//!
//! Every site is a network namespace of a [`cairn_netbed::Bed`], with the bed's WAN emulator
//! delaying (and, on demand, cutting) the traffic between sites. The managers, shard-node hosts
//! and routers are real `cairn` processes started inside their site's namespace, bound to the
//! site's address; the caller runs in the root namespace ("ops"), which reaches every site
//! undelayed.
//!
//! Two values say what to start: a [`SiteShape`] (the sites and where the processes go: the
//! same layout of names, node ids and ports for every caller, see [`shape`]) and a [`Launch`]
//! (the `cairn` binary, Raft timing, catalog settings, directory and logging: what the tests and
//! the benchmark do differently). Everything returns `anyhow::Result`: this crate serves tests
//! and benchmarks, whose errors are reports.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use cairn_site_platform::{Launch, SitePlatform, SiteShape};
//!
//! let shape = SiteShape {
//!     sites: vec!["a", "b"],
//!     rtt: Duration::from_millis(10),
//!     manager_sites: vec!["a"],
//!     host_sites: vec!["a", "a", "b"],
//!     router_sites: vec!["a", "b"],
//! };
//! let launch = Launch::new("target/release/cairn", Default::default());
//! let platform = SitePlatform::start(&shape, &launch)?; // needs root
//! let managers = platform.managers()?;
//! platform.wait_hosts(&managers, Duration::from_secs(30)).await?;
//! let shard = platform
//!     .create_namespace(&managers, "photos", "a", Duration::from_secs(30))
//!     .await?;
//! let router_b = platform.client_of(&["router-b"])?;
//! # let _ = (shard, router_b);
//! # Ok(())
//! # }
//! ```
//!
//! Dropping the [`SitePlatform`] removes every process, namespace and file it made, also while
//! the caller panics (the tails of the logs are printed then).

mod launch;
mod platform;
pub mod shape;

pub use launch::Launch;
pub use platform::SitePlatform;
pub use shape::SiteShape;
