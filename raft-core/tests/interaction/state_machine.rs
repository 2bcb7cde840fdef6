//! The replicated state machine of the test cluster: the list of applied entries, each with its
//! log index, plus the configuration history so a snapshot at any applied index can be taken.

use std::error::Error;

use raft_core::{ConfState, LogIndex, Snapshot};

/// The applied state of one node. The application persists it atomically with its applied
/// index (as a real store would), so it survives crashes.
#[derive(Clone, Debug, Default)]
pub(crate) struct StateMachine {
    /// The highest applied index.
    applied: LogIndex,
    /// Applied application entries, in log order.
    items: Vec<(LogIndex, String)>,
    /// `(index, configuration in force from that index on)`, in log order.
    confs: Vec<(LogIndex, ConfState)>,
}

impl StateMachine {
    /// The state a snapshot describes.
    pub(crate) fn from_snapshot(snapshot: &Snapshot) -> Result<Self, Box<dyn Error>> {
        let text = std::str::from_utf8(&snapshot.data)?;
        let mut items = Vec::new();
        for line in text.lines() {
            let (index, data) = line
                .split_once(' ')
                .ok_or_else(|| format!("bad snapshot line {line:?}"))?;
            items.push((LogIndex(index.parse()?), data.to_owned()));
        }
        let index = snapshot.metadata.index;
        Ok(Self {
            applied: index,
            items,
            confs: vec![(index, snapshot.metadata.conf_state.clone())],
        })
    }

    /// The snapshot data and configuration as of `index`, which must be applied.
    pub(crate) fn snapshot_at(&self, index: LogIndex) -> Result<(ConfState, Vec<u8>), String> {
        if index > self.applied {
            return Err(format!(
                "index {index} is not applied yet (applied {})",
                self.applied
            ));
        }
        let conf = self
            .confs
            .iter()
            .rev()
            .find(|(from, _)| *from <= index)
            .map(|(_, conf)| conf.clone())
            .ok_or_else(|| format!("no configuration known at {index}"))?;
        let data: String = self
            .items
            .iter()
            .filter(|(at, _)| *at <= index)
            .map(|(at, data)| format!("{at} {data}\n"))
            .collect();
        Ok((conf, data.into_bytes()))
    }

    pub(crate) fn applied(&self) -> LogIndex {
        self.applied
    }

    pub(crate) fn items(&self) -> &[(LogIndex, String)] {
        &self.items
    }

    /// Applies an application entry.
    pub(crate) fn apply_data(&mut self, index: LogIndex, data: &[u8]) {
        self.items
            .push((index, String::from_utf8_lossy(data).into_owned()));
        self.applied = index;
    }

    /// Applies an entry that changes nothing in the state (empty or refused).
    pub(crate) fn apply_noop(&mut self, index: LogIndex) {
        self.applied = index;
    }

    /// Applies a configuration change.
    pub(crate) fn apply_conf(&mut self, index: LogIndex, conf: ConfState) {
        self.confs.push((index, conf));
        self.applied = index;
    }

    /// `[a b c]`.
    pub(crate) fn describe(&self) -> String {
        let items: Vec<&str> = self.items.iter().map(|(_, data)| data.as_str()).collect();
        format!("[{}]", items.join(" "))
    }
}
