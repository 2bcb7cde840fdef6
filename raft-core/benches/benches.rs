//! Micro-benchmarks of the core's hot path: propose → ready → replicate → commit → apply, in an
//! in-memory three-node loop (no I/O, so this measures the core's own CPU cost).
//!
//! Run: `cargo bench -p raft-core` (CI runs `cargo bench -p raft-core -- --test` so the benches
//! keep compiling and running).

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use raft_core::{ConfState, Config, MemStorage, Message, RawNode, Role};

/// Three nodes wired together in memory; `stabilize` plays the Ready loop until quiet.
struct Cluster {
    nodes: Vec<RawNode<MemStorage>>,
    applied: u64,
}

impl Cluster {
    fn new() -> Self {
        let conf = ConfState::with_voters([1, 2, 3]);
        let nodes = (1..=3)
            .map(|id| {
                let config = Config {
                    lease_duration_ticks: 0,
                    ..Config::new(id)
                };
                RawNode::new(config, MemStorage::new_with_conf_state(conf.clone()))
                    .expect("valid config")
            })
            .collect();
        let mut cluster = Self { nodes, applied: 0 };
        cluster.nodes[0].campaign();
        cluster.stabilize();
        assert_eq!(cluster.nodes[0].role(), Role::Leader);
        cluster
    }

    fn stabilize(&mut self) {
        let mut inbox: Vec<Message> = Vec::new();
        loop {
            let mut progressed = false;
            for node in &mut self.nodes {
                while node.has_ready() {
                    progressed = true;
                    let mut ready = node.ready();
                    let storage = node.storage_mut();
                    storage.append(&ready.entries).expect("contiguous");
                    if let Some(hard_state) = ready.hard_state {
                        storage.set_hard_state(hard_state);
                    }
                    inbox.append(&mut ready.messages);
                    self.applied += ready.committed_entries.len() as u64;
                    node.advance(ready);
                }
            }
            for message in inbox.drain(..) {
                progressed = true;
                let to = message.to.get() as usize - 1;
                self.nodes[to].step(message).expect("well-formed");
            }
            if !progressed {
                return;
            }
        }
    }
}

fn propose_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("three_nodes");
    let payload = vec![7u8; 1024];

    group.throughput(Throughput::Elements(1));
    group.bench_function("propose_commit_1KiB", |b| {
        let mut cluster = Cluster::new();
        b.iter(|| {
            cluster.nodes[0]
                .propose(black_box(payload.clone()))
                .expect("leader");
            cluster.stabilize();
        });
    });

    for batch in [16usize, 256] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("propose_batch_{batch}x1KiB"), |b| {
            b.iter_batched(
                Cluster::new,
                |mut cluster| {
                    let entries = vec![payload.clone(); batch];
                    cluster.nodes[0]
                        .propose_batch(black_box(entries))
                        .expect("leader");
                    cluster.stabilize();
                    cluster
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

fn heartbeat_round(c: &mut Criterion) {
    // The steady cost of an idle group: one leader tick, its heartbeats and their answers.
    c.bench_function("idle_heartbeat_round", |b| {
        let mut cluster = Cluster::new();
        b.iter(|| {
            cluster.nodes[0].tick();
            cluster.stabilize();
        });
    });
}

criterion_group!(benches, propose_commit, heartbeat_round);
criterion_main!(benches);
