//! The command line: `claudemesh-bench <scenario> [options]`. Every
//! scenario is bounded in count (`--messages`) and in time (`--duration`,
//! whichever comes first) and talks to loopback only.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// claudemesh load generator: handshake, dm, fanout, topic and peer-list
/// scenarios against a broker on loopback (embedded by default).
#[derive(Debug, Parser)]
#[command(
    name = "claudemesh-bench",
    version,
    after_help = "Examples:\n  claudemesh-bench dm --senders 64 --recipients 4 --messages 20000\n  claudemesh-bench dm --store postgres --client wire --messages 100000\n  claudemesh-bench dm --senders 16 --recipients 4 --rate 1000 --duration 20\n  claudemesh-bench dm --store postgres --replicas 2 --client wire\n  claudemesh-bench handshake --senders 64 --messages 20000\n  claudemesh-bench fanout --recipients 1000 --messages 200 --rate 10\n  claudemesh-bench fanout --target broadcast --store postgres\n  claudemesh-bench topic --senders 8 --recipients 64 --rate 200\n  claudemesh-bench peer-list --cli target/release/claudemesh\n  claudemesh-bench gateway --rate 100 --messages 2000\n\nBuild with --release for figures."
)]
pub struct Cli {
    /// The scenario.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// What to run.
#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Open authenticated connections (challenge, signed hello, welcome) and
    /// close them; reports handshakes/s and connect latency.
    Handshake(HandshakeArgs),
    /// N senders send durable direct messages round-robin to M connected
    /// recipients; reports accepted msgs/s and send→deliver latency.
    Dm(DmArgs),
    /// One poster sends paced fan-out messages (a topic, or a broadcast)
    /// to S connected subscribers; reports latency to the last subscriber
    /// per message.
    Fanout(FanoutArgs),
    /// P posters post to one topic read by R connected readers; reports
    /// accepted posts/s and delivery latency.
    Topic(TopicArgs),
    /// Times cold `claudemesh peer list` processes against the broker.
    PeerList(PeerListArgs),
    /// Two `claudemesh serve` gateways: POST messages to one at a paced
    /// rate, read them as server-sent events from the other; reports
    /// POST → event latency and the gateways' memory.
    Gateway(GatewayArgs),
    /// Makes a mesh (owner plus members) on an external broker and prints
    /// the owner's home, for timing the CLI with hyperfine.
    Setup(SetupArgs),
}

/// The broker's store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// A temporary SQLite file (WAL, synchronous = FULL).
    Sqlite,
    /// A fresh database on the Postgres at `DATABASE_URL`
    /// (default postgres://postgres@127.0.0.1:5432/postgres), dropped after.
    Postgres,
}

impl StoreKind {
    /// `sqlite` or `postgres`.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Sqlite => "sqlite",
            StoreKind::Postgres => "postgres",
        }
    }
}

/// Where the peers' homes (keys, local SQLite state) live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClientState {
    /// /dev/shm: the clients' own fsyncs cost nothing, so the disk is the
    /// broker's alone (on a real deployment each client has its own disk).
    Tmpfs,
    /// A temporary directory on the same disk as the broker.
    Disk,
}

impl ClientState {
    /// `tmpfs` or `disk`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientState::Tmpfs => "tmpfs",
            ClientState::Disk => "disk",
        }
    }
}

/// How the load is driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClientPath {
    /// Through `MeshClient`: seal, outbox write, send, accepted; recipients
    /// verify, open, store in the inbox and ack: what an application sees.
    Sdk,
    /// Raw protocol frames (the SDK's `wire` module): envelopes sealed
    /// before the clock starts, recipients parse and ack without opening.
    /// Measures the broker with the least client work.
    Wire,
}

impl ClientPath {
    /// `sdk` or `wire`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientPath::Sdk => "sdk",
            ClientPath::Wire => "wire",
        }
    }
}

/// Options every scenario takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// The broker's store (embedded broker); with --broker, only a label.
    #[arg(long, value_enum, default_value_t = StoreKind::Sqlite)]
    pub store: StoreKind,
    /// Target a running broker (ws://127.0.0.1:PORT; loopback only) instead
    /// of starting one in this process.
    #[arg(long, value_name = "URL")]
    pub broker: Option<String>,
    /// Process id of the external broker, for its RSS and CPU time.
    #[arg(long, value_name = "PID", requires = "broker")]
    pub broker_pid: Option<u32>,
    /// Hard limit on the measured phase, seconds (setup has its own bound).
    #[arg(long, default_value_t = 60, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub duration: u64,
    /// Where the peers' homes live [default: tmpfs, except peer-list: disk].
    #[arg(long, value_enum)]
    pub client_state: Option<ClientState>,
    /// Before the measured phase (fanout, topic and dm --client wire:
    /// before connecting), wait up to this many seconds for the machine to
    /// be less than 10 % busy (0: just report how busy it was).
    #[arg(long, default_value_t = 0, value_name = "SECS", value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub wait_idle: u64,
    /// Print one JSON object instead of the text block.
    #[arg(long)]
    pub json: bool,
}

/// `handshake`.
#[derive(Debug, Clone, Args)]
pub struct HandshakeArgs {
    /// Common options.
    #[command(flatten)]
    pub common: Common,
    /// Concurrent connecting clients.
    #[arg(long, default_value_t = 64, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub senders: u32,
    /// Handshakes in total.
    #[arg(long, default_value_t = 20_000, value_name = "K", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub messages: u64,
    /// `wire`: TCP + upgrade + challenge + signed hello + welcome with
    /// pre-made session certificates; `sdk`: `MeshClient::connect` (ephemeral
    /// session, log verification, catch-up) and `close`.
    #[arg(long, value_enum, default_value_t = ClientPath::Wire)]
    pub client: ClientPath,
}

/// `dm`.
#[derive(Debug, Clone, Args)]
pub struct DmArgs {
    /// Common options.
    #[command(flatten)]
    pub common: Common,
    /// Sending members (one connection each).
    #[arg(long, default_value_t = 64, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub senders: u32,
    /// Receiving members (one connection each), addressed round-robin.
    #[arg(long, default_value_t = 4, value_name = "M", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub recipients: u32,
    /// Messages in total [default: 20000; with --rate, rate × duration].
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub messages: Option<u64>,
    /// Open loop: all senders together send at this many msgs/s (paced),
    /// whatever the answers; without it, each sender is a closed loop.
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Closed loop: sends in flight per sender (1 = wait for `accepted`).
    #[arg(long, default_value_t = 1, value_name = "P", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub pipeline: u32,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 256, value_name = "BYTES")]
    pub body_bytes: usize,
    /// `sdk` (MeshClient) or `wire` (pre-sealed frames; broker-bound).
    #[arg(long, value_enum, default_value_t = ClientPath::Sdk)]
    pub client: ClientPath,
    /// Brokers on the one Postgres database: with 2, a second embedded
    /// broker (a replica) starts on the same database and every recipient
    /// connects to it while every sender stays on the first, so each
    /// message crosses replicas (needs --store postgres, no --broker).
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=2))]
    pub replicas: u32,
}

/// Where `fanout` posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FanoutTarget {
    /// A public topic every subscriber joined (`#bench`; the subscribers'
    /// `topic_join` entries are in the log).
    Topic,
    /// `*`: every member of the mesh.
    Broadcast,
}

/// How subscribers acknowledge fan-out messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AckMode {
    /// As the SDK does: a signed watermark per target at most every
    /// 250 ms (`docs/security.md` §8.1).
    Watermark,
    /// The unsigned `ack` of older clients: a row per (member, message).
    Unsigned,
}

/// `fanout`.
#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    /// Common options.
    #[command(flatten)]
    pub common: Common,
    /// Subscribers: members with one connection each (added to the mesh
    /// through the membership log, not by invite).
    #[arg(long, default_value_t = 1000, value_name = "S", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub recipients: u32,
    /// Messages in total.
    #[arg(long, default_value_t = 200, value_name = "K", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub messages: u64,
    /// Messages per second, paced, so each fan-out is measured on its own.
    #[arg(long, default_value_t = 10.0, value_name = "R")]
    pub rate: f64,
    /// A topic all subscribers joined, or a broadcast.
    #[arg(long, value_enum, default_value_t = FanoutTarget::Topic)]
    pub target: FanoutTarget,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 256, value_name = "BYTES")]
    pub body_bytes: usize,
    /// A subscriber acks this long after its first unacked message (or
    /// at 256). Longer than the run: it acks only after the measured phase,
    /// which takes the broker's ack writes out of the measurement.
    #[arg(long, default_value_t = 5, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub ack_delay_ms: u64,
    /// How subscribers acknowledge: signed watermarks (as the SDK does)
    /// or unsigned per-message acks (`--ack-delay-ms` paces those).
    #[arg(long, value_enum, default_value_t = AckMode::Watermark)]
    pub acks: AckMode,
}

/// `topic`.
#[derive(Debug, Clone, Args)]
pub struct TopicArgs {
    /// Common options.
    #[command(flatten)]
    pub common: Common,
    /// Posters: the owner and members who joined by invite (one connection
    /// each; not members of the topic, so each post reaches every reader).
    #[arg(long, visible_alias = "posters", default_value_t = 8, value_name = "P", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub senders: u32,
    /// Readers: members in the topic, one connection each.
    #[arg(long, visible_alias = "readers", default_value_t = 64, value_name = "R", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub recipients: u32,
    /// Posts in total [default: 5000; with --rate, rate × duration].
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub messages: Option<u64>,
    /// Open loop: all posters together post at this many msgs/s (paced);
    /// without it, each poster is a closed loop.
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Closed loop: posts in flight per poster (1 = wait for `accepted`).
    #[arg(long, default_value_t = 1, value_name = "P", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub pipeline: u32,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 256, value_name = "BYTES")]
    pub body_bytes: usize,
    /// A reader acks this long after its first unacked message (or at 256).
    #[arg(long, default_value_t = 5, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub ack_delay_ms: u64,
    /// How subscribers acknowledge: signed watermarks (as the SDK does)
    /// or unsigned per-message acks (`--ack-delay-ms` paces those).
    #[arg(long, value_enum, default_value_t = AckMode::Watermark)]
    pub acks: AckMode,
}

/// `peer-list`.
#[derive(Debug, Clone, Args)]
pub struct PeerListArgs {
    /// Common options.
    #[command(flatten)]
    pub common: Common,
    /// The `claudemesh` binary [default: next to this one].
    #[arg(long, value_name = "PATH")]
    pub cli: Option<PathBuf>,
    /// Timed runs (one more untimed warm-up run comes first).
    #[arg(long, default_value_t = 30, value_name = "K", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub messages: u64,
    /// Members besides the owner (offline; they fill the list).
    #[arg(long, default_value_t = 4, value_name = "M", value_parser = clap::value_parser!(u32).range(0..=1024))]
    pub recipients: u32,
}

/// `gateway`.
#[derive(Debug, Clone, Args)]
pub struct GatewayArgs {
    /// Common options.
    #[command(flatten)]
    pub common: Common,
    /// The `claudemesh` binary [default: next to this one].
    #[arg(long, value_name = "PATH")]
    pub cli: Option<PathBuf>,
    /// Messages in total.
    #[arg(long, default_value_t = 2000, value_name = "K", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub messages: u64,
    /// Messages per second, paced.
    #[arg(long, default_value_t = 100.0, value_name = "R")]
    pub rate: f64,
    /// Keep-alive connections the POSTs are spread over.
    #[arg(long, default_value_t = 8, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub connections: u32,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 256, value_name = "BYTES")]
    pub body_bytes: usize,
}

/// `setup`.
#[derive(Debug, Clone, Args)]
pub struct SetupArgs {
    /// The running broker (loopback only).
    #[arg(long, value_name = "URL")]
    pub broker: String,
    /// Directory for the homes (created; must be empty or absent).
    #[arg(long, value_name = "DIR")]
    pub home: PathBuf,
    /// Members besides the owner.
    #[arg(long, default_value_t = 4, value_name = "M", value_parser = clap::value_parser!(u32).range(0..=1024))]
    pub recipients: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_examples() {
        let cli = Cli::try_parse_from([
            "claudemesh-bench",
            "dm",
            "--store",
            "postgres",
            "--senders",
            "64",
            "--messages",
            "1000",
            "--rate",
            "1000",
            "--json",
        ])
        .unwrap();
        let Scenario::Dm(a) = cli.scenario else {
            panic!("not dm")
        };
        assert_eq!(a.common.store, StoreKind::Postgres);
        assert_eq!(a.senders, 64);
        assert_eq!(a.messages, Some(1000));
        assert_eq!(a.rate, Some(1000.0));
        assert_eq!(a.body_bytes, 256);
        assert_eq!(a.replicas, 1);
        assert!(a.common.json);
        let Scenario::Dm(r) = Cli::try_parse_from([
            "claudemesh-bench",
            "dm",
            "--store",
            "postgres",
            "--replicas",
            "2",
        ])
        .unwrap()
        .scenario
        else {
            panic!("not dm")
        };
        assert_eq!(r.replicas, 2);
        assert!(Cli::try_parse_from(["claudemesh-bench", "dm", "--replicas", "3"]).is_err());
        let Scenario::Fanout(f) = Cli::try_parse_from(["claudemesh-bench", "fanout"])
            .unwrap()
            .scenario
        else {
            panic!("not fanout")
        };
        assert_eq!(
            (f.recipients, f.messages, f.rate, f.target),
            (1000, 200, 10.0, FanoutTarget::Topic)
        );
        let Scenario::Topic(t) = Cli::try_parse_from([
            "claudemesh-bench",
            "topic",
            "--posters",
            "4",
            "--readers",
            "32",
            "--store",
            "postgres",
        ])
        .unwrap()
        .scenario
        else {
            panic!("not topic")
        };
        assert_eq!((t.senders, t.recipients, t.rate), (4, 32, None));
        assert_eq!(t.common.store, StoreKind::Postgres);
        assert!(
            Cli::try_parse_from(["claudemesh-bench", "handshake", "--broker-pid", "1"]).is_err(),
            "--broker-pid needs --broker"
        );
    }
}
