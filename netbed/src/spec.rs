//! What a bed should look like: its sites and the WAN between them.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::Error;
use crate::plan::{SITES_MAX, validate_site_name};

/// The largest round trip a link may be given (a bound, not a realistic WAN).
pub(crate) const RTT_MAX: Duration = Duration::from_secs(20);

/// The shape of a bed: which sites, and the WAN between every pair of them.
///
/// Every pair of distinct sites starts with the same `rtt` and `loss`; change single pairs later
/// with [`Bed::set_rtt`](crate::Bed::set_rtt) and [`Bed::set_loss`](crate::Bed::set_loss).
#[derive(Clone, Debug)]
pub struct BedSpec {
    /// Site names (1 to 16 of them; 1..=12 chars of a-z, 0-9, '-', starting with a letter).
    pub sites: Vec<String>,
    /// Round trip between every pair of distinct sites; each direction is delayed by half.
    pub rtt: Duration,
    /// Probability (0..=1) that a packet between two distinct sites is dropped, per direction.
    pub loss: f64,
    /// Round trip between the caller's namespace ("ops") and every site; zero by default, so
    /// tests can inspect sites without paying the WAN.
    pub ops_rtt: Duration,
    /// The `cairn-netbed` binary that runs the emulator. When `None`: `$CAIRN_NETBED_BIN`, then
    /// next to the current executable (and one directory up, for test binaries in `deps/`),
    /// then `$PATH`.
    pub netbed_bin: Option<PathBuf>,
}

impl Default for BedSpec {
    fn default() -> Self {
        Self {
            sites: Vec::new(),
            rtt: Duration::from_millis(10),
            loss: 0.0,
            ops_rtt: Duration::ZERO,
            netbed_bin: None,
        }
    }
}

impl BedSpec {
    /// A spec with these sites and round trip, no loss, and an undelayed ops.
    pub fn new<S: Into<String>>(sites: impl IntoIterator<Item = S>, rtt: Duration) -> Self {
        Self {
            sites: sites.into_iter().map(Into::into).collect(),
            rtt,
            ..Self::default()
        }
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.sites.is_empty() || self.sites.len() > SITES_MAX {
            return Err(Error::InvalidSpec(format!(
                "{} sites: a bed has 1..={SITES_MAX}",
                self.sites.len()
            )));
        }
        let mut seen = BTreeSet::new();
        for site in &self.sites {
            validate_site_name(site)?;
            if !seen.insert(site) {
                return Err(Error::InvalidSpec(format!("site {site:?} listed twice")));
            }
        }
        validate_rtt(self.rtt)?;
        validate_rtt(self.ops_rtt)?;
        validate_loss(self.loss)
    }
}

pub(crate) fn validate_rtt(rtt: Duration) -> Result<(), Error> {
    if rtt > RTT_MAX {
        return Err(Error::InvalidSpec(format!(
            "round trip {rtt:?} is over the {RTT_MAX:?} limit"
        )));
    }
    Ok(())
}

pub(crate) fn validate_loss(loss: f64) -> Result<(), Error> {
    if !(0.0..=1.0).contains(&loss) {
        return Err(Error::InvalidSpec(format!(
            "loss {loss} is not a probability in 0..=1"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_validated() {
        BedSpec::new(["dc1", "dc2"], Duration::from_millis(10))
            .validate()
            .unwrap();
        assert!(
            BedSpec::new(Vec::<String>::new(), Duration::ZERO)
                .validate()
                .is_err()
        );
        assert!(
            BedSpec::new(["dc1", "dc1"], Duration::ZERO)
                .validate()
                .is_err()
        );
        assert!(
            BedSpec::new(["dc1"], Duration::from_secs(60))
                .validate()
                .is_err()
        );
        let lossy = BedSpec {
            loss: 1.5,
            ..BedSpec::new(["dc1"], Duration::ZERO)
        };
        assert!(lossy.validate().is_err());
        let many: Vec<String> = (0..=SITES_MAX).map(|i| format!("s{i}")).collect();
        assert!(BedSpec::new(many, Duration::ZERO).validate().is_err());
    }
}
