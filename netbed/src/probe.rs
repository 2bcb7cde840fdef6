//! A UDP/TCP echo server and a round-trip probe: the measuring tools of the bed's own tests
//! (hidden subcommands `cairn-netbed echo` and `cairn-netbed probe`, run inside sites).

use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Probe messages: a run nonce and a sequence number.
const MESSAGE_BYTES: usize = 16;
/// TCP connections the echo server serves at once; more are closed.
const ECHO_CONNECTIONS_MAX: usize = 64;

/// What a probe measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ProbeReport {
    /// The address probed.
    pub target: String,
    /// "udp" or "tcp".
    pub proto: String,
    /// Round trips attempted.
    pub sent: u32,
    /// Round trips answered within the timeout.
    pub received: u32,
    /// The answered round trips, in microseconds, in the order sent.
    pub rtts_us: Vec<u64>,
    /// TCP only: how long the connection took (one round trip plus a little).
    pub connect_us: Option<u64>,
}

impl ProbeReport {
    /// The `p`-th percentile (0..=100) of the answered round trips, by nearest rank.
    pub fn percentile_us(&self, p: f64) -> Option<u64> {
        let mut sorted = self.rtts_us.clone();
        sorted.sort_unstable();
        let last = sorted.len().checked_sub(1)?;
        let rank = ((p / 100.0) * last as f64).round() as usize;
        sorted.get(rank.min(last)).copied()
    }

    /// One line: count, min, p50, p90, p99, max, in milliseconds.
    pub fn summary(&self) -> String {
        let ms = |p: f64| {
            self.percentile_us(p)
                .map_or("-".into(), |us| format!("{:.2}", us as f64 / 1e3))
        };
        format!(
            "{} {}: {}/{} answered; rtt ms min {} p50 {} p90 {} p99 {} max {}",
            self.proto,
            self.target,
            self.received,
            self.sent,
            ms(0.0),
            ms(50.0),
            ms(90.0),
            ms(99.0),
            ms(100.0)
        )
    }
}

/// How to probe.
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    /// The echo server.
    pub to: SocketAddr,
    /// The local address to send from (the site's address); any if `None`.
    pub bind: Option<IpAddr>,
    /// Round trips to measure.
    pub count: u32,
    /// Pause between round trips.
    pub interval: Duration,
    /// How long to wait for each answer.
    pub timeout: Duration,
    /// Before measuring, retry until the server first answers, for at most this long (0: don't).
    pub warmup: Duration,
    /// TCP instead of UDP.
    pub tcp: bool,
}

/// Measures round trips to an echo server.
pub fn probe(options: &ProbeOptions) -> io::Result<ProbeReport> {
    let mut report = ProbeReport {
        target: options.to.to_string(),
        proto: if options.tcp { "tcp" } else { "udp" }.into(),
        ..ProbeReport::default()
    };
    if options.tcp {
        probe_tcp(options, &mut report)?
    } else {
        probe_udp(options, &mut report)?
    }
    Ok(report)
}

fn message(nonce: u64, seq: u64) -> [u8; MESSAGE_BYTES] {
    let mut m = [0u8; MESSAGE_BYTES];
    m[..8].copy_from_slice(&nonce.to_be_bytes());
    m[8..].copy_from_slice(&seq.to_be_bytes());
    m
}

fn nonce() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    t.map_or(0, |d| d.as_nanos() as u64) ^ u64::from(std::process::id())
}

fn probe_udp(options: &ProbeOptions, report: &mut ProbeReport) -> io::Result<()> {
    let bind = options.bind.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let socket = UdpSocket::bind(SocketAddr::new(bind, 0))?;
    socket.connect(options.to)?;
    let nonce = nonce();
    let mut buf = [0u8; 64];
    // Await the expected answer until `deadline`, skipping late answers to earlier messages.
    let await_answer = |expected: &[u8], deadline: Instant, buf: &mut [u8]| -> io::Result<bool> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            socket.set_read_timeout(Some(left))?;
            match socket.recv(buf) {
                Ok(n) if &buf[..n] == expected => return Ok(true),
                Ok(_) => {}
                // Refused: nothing listens yet (the ICMP error comes back through the bed).
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::ConnectionRefused => {
                    if e.kind() == io::ErrorKind::ConnectionRefused {
                        thread::sleep(Duration::from_millis(5).min(left));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    };
    let warmup_until = Instant::now() + options.warmup;
    let mut seq = u64::MAX;
    while Instant::now() < warmup_until {
        let m = message(nonce, seq);
        let _ = socket.send(&m);
        let step = (Instant::now() + Duration::from_millis(50)).min(warmup_until);
        if await_answer(&m, step, &mut buf)? {
            break;
        }
        seq -= 1;
    }
    for seq in 0..u64::from(options.count) {
        let m = message(nonce, seq);
        let start = Instant::now();
        report.sent += 1;
        // A refused send (ICMP from an earlier message) is one lost round trip, not a failure.
        if socket.send(&m).is_ok() && await_answer(&m, start + options.timeout, &mut buf)? {
            report.received += 1;
            report.rtts_us.push(start.elapsed().as_micros() as u64);
        }
        thread::sleep(options.interval);
    }
    Ok(())
}

fn probe_tcp(options: &ProbeOptions, report: &mut ProbeReport) -> io::Result<()> {
    let warmup_until = Instant::now() + options.warmup;
    let (mut stream, connect) = loop {
        let start = Instant::now();
        match connect_from(options.bind, options.to, options.timeout) {
            Ok(stream) => break (stream, start.elapsed()),
            Err(e) if Instant::now() < warmup_until => {
                let _ = e;
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::ConnectionRefused => {
                report.sent = options.count;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    };
    report.connect_us = Some(connect.as_micros() as u64);
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(options.timeout))?;
    let nonce = nonce();
    let mut buf = [0u8; MESSAGE_BYTES];
    for seq in 0..u64::from(options.count) {
        let m = message(nonce, seq);
        let start = Instant::now();
        report.sent += 1;
        stream.write_all(&m)?;
        match stream.read_exact(&mut buf) {
            Ok(()) if buf == m => {
                report.received += 1;
                report.rtts_us.push(start.elapsed().as_micros() as u64);
            }
            Ok(()) => return Err(io::Error::other("echo answered something else")),
            // A stream cannot skip a lost answer: stop counting here.
            Err(e) if is_timeout(&e) => {
                report.sent = options.count;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        thread::sleep(options.interval);
    }
    Ok(())
}

/// `connect_timeout`, from a chosen local address when given one (std cannot bind first, so
/// the source address is checked instead: the route to a bed address picks the bed link).
fn connect_from(bind: Option<IpAddr>, to: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&to, timeout)?;
    if let Some(bind) = bind {
        let local = stream.local_addr()?.ip();
        if local != bind {
            return Err(io::Error::other(format!(
                "connected from {local}, not {bind}"
            )));
        }
    }
    Ok(stream)
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Echoes UDP datagrams and TCP streams on `bind` until killed.
pub fn echo(bind: SocketAddr) -> io::Result<()> {
    let udp = UdpSocket::bind(bind)?;
    let tcp = TcpListener::bind(bind)?;
    thread::Builder::new()
        .name("echo-tcp".into())
        .spawn(move || {
            let open = Arc::new(AtomicUsize::new(0));
            for stream in tcp.incoming().flatten() {
                if open.load(Ordering::SeqCst) >= ECHO_CONNECTIONS_MAX {
                    continue;
                }
                open.fetch_add(1, Ordering::SeqCst);
                let open = open.clone();
                let _ = thread::Builder::new()
                    .name("echo-conn".into())
                    .spawn(move || {
                        let _ = stream.set_nodelay(true);
                        let _ = echo_stream(stream);
                        open.fetch_sub(1, Ordering::SeqCst);
                    });
            }
        })?;
    let mut buf = [0u8; 65_536];
    loop {
        let (n, from) = udp.recv_from(&mut buf)?;
        let _ = udp.send_to(&buf[..n], from);
    }
}

fn echo_stream(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n])?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let report = ProbeReport {
            rtts_us: (1..=101).rev().collect(),
            ..ProbeReport::default()
        };
        assert_eq!(report.percentile_us(0.0), Some(1));
        assert_eq!(report.percentile_us(50.0), Some(51));
        assert_eq!(report.percentile_us(100.0), Some(101));
        assert_eq!(ProbeReport::default().percentile_us(50.0), None);
    }

    #[test]
    fn a_probe_measures_a_local_echo_over_udp_and_tcp() {
        let port = {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap().port()
        };
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        thread::spawn(move || echo(addr));
        for tcp in [false, true] {
            let report = probe(&ProbeOptions {
                to: addr,
                bind: None,
                count: 5,
                interval: Duration::ZERO,
                timeout: Duration::from_secs(2),
                warmup: Duration::from_secs(5),
                tcp,
            })
            .unwrap();
            assert_eq!((report.sent, report.received), (5, 5), "{report:?}");
        }
    }
}
