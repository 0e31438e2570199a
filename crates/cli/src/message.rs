//! `claudemesh message …` (`send`, `inbox`): send an end-to-end encrypted
//! message (to a peer, a `#topic`, an `@group` or `*`) and print its id
//! once the broker has durably accepted it; fetch what is queued (stored
//! locally and acknowledged before it is printed); and report
//! per-recipient delivery. Their clap types (`MessageCmd`, `SendArgs`,
//! `InboxArgs`) say what each asks the policy. `--ttl` gives a message a
//! time to live: not shown by then, it is reported `expired` and dropped.
//! `--at` / `--in` have the broker hold it and deliver it then (`schedule`).

use std::io::Read as _;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use claudemesh_client::local::InboxMessage;
use claudemesh_client::mesh::Label;
use claudemesh_client::messages;
use claudemesh_client::{Event, SendOptions, Via};
use claudemesh_crypto::envelope::{MessageId, Priority};

use crate::exit::{self, Failure, Outcome};
use crate::global::Global;
use crate::mesh::connect;
use crate::policy::{Request, Verb};
use crate::schedule::{When, local_time, until};
use crate::{names, output};

#[derive(Debug, Subcommand)]
pub enum MessageCmd {
    /// Send a message (end-to-end encrypted and signed)
    Send(SendArgs),
    /// Fetch queued messages, store and acknowledge them, print the unread ones
    Inbox(InboxArgs),
    /// Per-recipient state of a message you sent: queued, delivered, read
    Status {
        /// The message id `send` printed
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Recipient: a display name, a key prefix (8+ hex digits), a session
    /// name, '#topic', '@group', or '*' (everyone)
    pub to: String,
    /// The text ("-" reads it from stdin)
    pub text: String,
    /// Delivery priority
    #[arg(long, value_enum, default_value_t = PriorityArg::Next)]
    pub priority: PriorityArg,
    /// The message id this one answers
    #[arg(long, value_name = "ID")]
    pub reply_to: Option<String>,
    /// Time to live: not shown by then (30s, 10m, 2h, 1d, or seconds; at
    /// least 1s), the message expires and `message status` says so
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
    pub ttl: Option<Duration>,
    #[command(flatten)]
    pub later: crate::schedule::LaterArgs,
}

#[derive(Debug, Args)]
pub struct InboxArgs {
    /// Keep running and print messages as they arrive
    #[arg(long)]
    pub watch: bool,
    /// Show read (and expired) messages too (the newest --limit)
    #[arg(long)]
    pub all: bool,
    /// At most this many messages
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PriorityArg {
    Now,
    Next,
    Low,
}

impl SendArgs {
    /// What it asks the policy.
    pub fn request(&self) -> Request {
        Request::new(Verb::MessageSend, Some(&self.to), true)
    }
}

impl InboxArgs {
    /// What it asks the policy.
    pub fn request(&self) -> Request {
        Request::new(Verb::MessageInbox, None, true)
    }
}

impl MessageCmd {
    /// What it asks the policy.
    pub fn request(&self) -> Option<Request> {
        Some(match self {
            MessageCmd::Send(a) => a.request(),
            MessageCmd::Inbox(a) => a.request(),
            MessageCmd::Status { id } => Request::new(Verb::MessageStatus, Some(id), true),
        })
    }

    pub async fn run(self, g: &Global) -> Outcome {
        match self {
            MessageCmd::Send(a) => send(g, a).await,
            MessageCmd::Inbox(a) => inbox(g, a).await,
            MessageCmd::Status { id } => status(g, &id).await,
        }
    }
}

/// The text of a message: the argument, or stdin for "-"; never empty.
pub fn read_body(text: &str) -> Result<String, Failure> {
    let body = if text == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Failure::new(exit::IO, format!("cannot read stdin: {e}")))?;
        s
    } else {
        text.to_owned()
    };
    if body.is_empty() {
        return Err(Failure::new(exit::USAGE, "the message is empty"));
    }
    Ok(body)
}

/// `--reply-to`, checked.
pub fn parse_reply_to(reply_to: Option<&str>) -> Result<Option<MessageId>, Failure> {
    reply_to
        .map(|r| {
            MessageId::from_hex(r).map_err(|_| {
                Failure::new(
                    exit::USAGE,
                    format!("--reply-to {r:?} is not a message id (32 hex digits)"),
                )
            })
        })
        .transpose()
}

/// `--ttl`: a duration of at least 1 s (a bad one is a usage error).
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    claudemesh_client::ttl::parse_ttl(text).map_err(|e| e.to_string())
}

/// `--priority`.
pub fn priority(p: PriorityArg) -> Priority {
    match p {
        PriorityArg::Now => Priority::Now,
        PriorityArg::Next => Priority::Next,
        PriorityArg::Low => Priority::Low,
    }
}

pub async fn send(g: &Global, a: SendArgs) -> Outcome {
    let when = a.later.when()?;
    let body = read_body(&a.text)?;
    let reply_to = parse_reply_to(a.reply_to.as_deref())?;
    let opts = SendOptions::new(priority(a.priority), reply_to).ttl(a.ttl);
    deliver(g, &a.to, &body, opts, when).await
}

/// Sends `body` to what the user typed (a peer, `#topic`, `@group`, `*`),
/// now or at a time (`--at` / `--in`: the broker holds it until then), and
/// prints the id (and, for a topic, who was notified of a mention; with a
/// time to live, when it expires; held, when it goes).
pub async fn deliver(g: &Global, to: &str, body: &str, opts: SendOptions, when: When) -> Outcome {
    let (home, mesh, client) = connect(g).await?;
    let opts = opts.deliver_at_ms(when.deliver_at_ms(&client));
    let skew = client.broker_skew_ms();
    let result = async {
        let target = client.resolve(to).await?;
        let pins = names::pins_or_warn(&home, &mesh.id);
        let reached = names::reached(&client, &pins, &target).await;
        let posted = messages::send_with(&client, MessageId::random(), target, body, opts).await?;
        Ok::<_, claudemesh_client::ClientError>(claudemesh_client::naming::sent(posted, reached))
    }
    .await;
    client.close().await;
    let sent = result?;
    let posted = &sent.posted;
    for f in &posted.mention_failures {
        eprintln!("warning: could not tell a mentioned member: {f}");
    }
    if g.json {
        output::json(&sent);
    } else {
        if !g.quiet
            && let Some(at) = posted.deliver_at_ms
        {
            let at = claudemesh_client::schedule::local_clock(at, skew);
            eprintln!(
                "scheduled {} for {} ({}) to {}; the broker holds it until then (`claudemesh schedule list` shows it, `claudemesh schedule cancel {}` drops it).",
                output::short(&posted.id),
                local_time(at),
                until(at, claudemesh_client::client::now_ms()),
                sent.reached.text,
                output::short(&posted.id)
            );
            if let Some(deadline) = posted.deadline_ms {
                eprintln!(
                    "Expires {} unless shown by then.",
                    output::timestamp(deadline)
                );
            }
        } else if !g.quiet {
            eprintln!(
                "Sent to {}; stored by the broker (`claudemesh message status <id>` tracks it).",
                sent.reached.text
            );
            if let Some(deadline) = posted.deadline_ms {
                eprintln!(
                    "Expires {} unless shown by then.",
                    output::timestamp(deadline)
                );
            }
            if !posted.mentioned.is_empty() {
                eprintln!(
                    "Mentioned {} (not in {}): each got a direct message quoting it.",
                    posted.mentioned.join(", "),
                    posted.to
                );
            }
        }
        println!("{}", posted.id);
    }
    Ok(())
}

/// ` (#deploys)`, ` (@eng)`, ` (*)` for a fan-out target; nothing for a
/// direct message.
pub fn target_suffix(target: &str) -> String {
    if target.starts_with("member:") || target.starts_with("session:") {
        String::new()
    } else {
        format!(" ({target})")
    }
}

/// ` [now]` / ` [low]`, and ` [mentions you]`.
pub fn markers(priority: &str, mentions_me: bool) -> String {
    let p = match priority {
        "now" => " [now]",
        "low" => " [low]",
        _ => "",
    };
    let m = if mentions_me { " [mentions you]" } else { "" };
    format!("{p}{m}")
}

/// ` [expired]` for a message whose time to live ran out before it was
/// shown (listed by `inbox --all` only).
fn expired_marker(m: &InboxMessage) -> &'static str {
    if m.expired { " [expired]" } else { "" }
}

fn print_message(g: &Global, m: &InboxMessage, label: &Label) {
    if g.json {
        return;
    }
    print_line(g, m, &label.text, &target_suffix(&m.target));
}

/// One message as `inbox` and `topic history` print it: time, sender,
/// `suffix` (where it went, when that is not said already), markers and
/// body; then, unless quiet, its id and the message it answers. A peer's
/// words reach the terminal without control characters
/// ([`output::printable`]): a body cannot recolour, retitle or overwrite it.
pub fn print_line(g: &Global, m: &InboxMessage, name: &str, suffix: &str) {
    println!(
        "{}  {}{suffix}{}{}: {}",
        output::timestamp(m.sent_at),
        output::printable(name),
        markers(&m.priority, m.mentions_me),
        expired_marker(m),
        output::printable(&m.body)
    );
    if !g.quiet {
        println!(
            "    id {}{}",
            m.id,
            m.reply_to
                .as_deref()
                .map(|r| format!(", reply to {r}"))
                .unwrap_or_default()
        );
    }
}

#[derive(serde::Serialize)]
struct JsonMessage<'a> {
    #[serde(flatten)]
    msg: &'a InboxMessage,
    /// The sender's label: its display name, with its short key when the
    /// name does not tell it apart (see `names`).
    from_name: String,
    /// Another member bears the same name.
    name_ambiguous: bool,
    /// The name is that of a pin of another key.
    pin_mismatch: bool,
}

impl<'a> JsonMessage<'a> {
    fn new(msg: &'a InboxMessage, label: &Label) -> Self {
        JsonMessage {
            msg,
            from_name: label.text.clone(),
            name_ambiguous: label.ambiguous,
            pin_mismatch: label.pin_mismatch,
        }
    }
}

pub async fn inbox(g: &Global, a: InboxArgs) -> Outcome {
    let (home, mesh, client) = connect(g).await?;
    let mut events = client.events();
    // The broker hands over what is queued right after the handshake; wait
    // until all of it is verified and stored.
    let result = async {
        client.settle().await?;
        let list = client.local().inbox(&mesh.id, !a.all, a.limit).await?;
        Ok::<_, claudemesh_client::ClientError>(list)
    }
    .await;
    let list = match result {
        Ok(l) => l,
        Err(e) => {
            client.close().await;
            return Err(e.into());
        }
    };
    let rejected = client
        .local()
        .take_rejections(&mesh.id)
        .await
        .unwrap_or_default();
    for r in &rejected {
        eprintln!(
            "warning: refused a message claiming to be from {} (seq {}): {}. It was not shown.",
            r.sender.as_deref().map(output::short).unwrap_or("?"),
            r.seq,
            r.reason
        );
    }
    let pins = names::pins_or_warn(&home, &mesh.id);
    let mut warnings = names::Warnings::default();
    // The names as of now: rebuilt for each message while watching, as
    // members join, leave or rename.
    let label_of = |m: &InboxMessage| {
        client.with_state(|s| names::label_hex(s, &s.sender_labels(&pins), &m.from))
    };
    let labels = client.with_state(|s| {
        let all = s.sender_labels(&pins);
        list.iter()
            .map(|m| names::label_hex(s, &all, &m.from))
            .collect::<Vec<_>>()
    });
    for l in &labels {
        warnings.check(l);
    }
    if g.json && !a.watch {
        let out: Vec<JsonMessage<'_>> = list
            .iter()
            .zip(&labels)
            .map(|(m, l)| JsonMessage::new(m, l))
            .collect();
        output::json(&out);
    } else if list.is_empty() && !a.watch {
        if !g.quiet {
            println!("No unread messages.");
        }
    } else {
        for (m, l) in list.iter().zip(&labels) {
            if g.json {
                println!(
                    "{}",
                    serde_json::to_string(&JsonMessage::new(m, l)).unwrap_or_default()
                );
            } else {
                print_message(g, m, l);
            }
        }
    }
    let marked = client.mark_shown(&list, Via::Inbox).await;
    if let Err(e) = marked {
        client.close().await;
        return Err(e.into());
    }
    if !a.watch {
        client.close().await;
        return Ok(());
    }
    if !g.quiet && !g.json {
        eprintln!("Watching for messages (Ctrl-C to stop)…");
    }
    loop {
        let event = tokio::select! {
            e = claudemesh_client::MeshClient::next_event(&mut events) => e,
            _ = tokio::signal::ctrl_c() => break,
        };
        match event {
            Some(Event::Message(m)) => {
                let fresh = client.local().inbox(&mesh.id, true, 100).await?;
                for m in fresh.iter().filter(|f| f.id == m.id) {
                    let label = label_of(m);
                    warnings.check(&label);
                    if g.json {
                        println!(
                            "{}",
                            serde_json::to_string(&JsonMessage::new(m, &label)).unwrap_or_default()
                        );
                    } else {
                        print_message(g, m, &label);
                    }
                }
                client
                    .mark_shown(
                        &fresh
                            .into_iter()
                            .filter(|f| f.id == m.id)
                            .collect::<Vec<_>>(),
                        Via::Inbox,
                    )
                    .await?;
            }
            Some(Event::Rejected(r)) => eprintln!(
                "warning: refused a message claiming to be from {}: {}",
                r.sender.as_deref().map(output::short).unwrap_or("?"),
                r.reason
            ),
            Some(Event::Stopped { reason }) => {
                client.close().await;
                return Err(Failure::new(exit::NETWORK, format!("stopped: {reason}")));
            }
            Some(Event::Disconnected { reason }) if !g.quiet => {
                eprintln!("connection lost ({reason}); reconnecting…")
            }
            Some(_) => {}
            None => break,
        }
    }
    client.close().await;
    Ok(())
}

/// A proof's time: `12:01:07` today (UTC), else the full timestamp.
fn clock_time(ms: u64) -> String {
    let full = output::timestamp(ms);
    let today = output::timestamp(claudemesh_client::client::now_ms());
    match (full.split_once(' '), today.split_once(' ')) {
        (Some((day, time)), Some((today, _))) if day == today => {
            time.trim_end_matches('Z').to_owned()
        }
        _ => full,
    }
}

pub async fn status(g: &Global, id: &str) -> Outcome {
    let id = MessageId::from_hex(id.trim()).map_err(|_| {
        Failure::new(
            exit::USAGE,
            format!("{id:?} is not a message id (32 hex digits, as `send` printed it)"),
        )
    })?;
    let (home, mesh, client) = connect(g).await?;
    let report = client.message_status(&id).await;
    let report = match report {
        Ok(mut r) => {
            let pins = names::pins_or_warn(&home, &mesh.id);
            let marks = client.with_state(|s| {
                claudemesh_client::naming::label_recipients(s, &pins, &mut r.recipients)
            });
            Ok((r, marks))
        }
        Err(e) => Err(e),
    };
    client.close().await;
    let (report, marks) = report?;
    if g.json {
        output::json(
            &claudemesh_client::naming::status_json(&report, &marks, &output::timestamp)
                .map_err(|e| Failure::new(exit::FAILURE, format!("cannot encode JSON: {e}")))?,
        );
        return Ok(());
    }
    match report.state.as_str() {
        "pending" => println!(
            "{}: not yet accepted by the broker (it is resent on the next connection)",
            report.id
        ),
        "failed" => println!(
            "{}: refused by the broker: {}",
            report.id,
            report.error.as_deref().unwrap_or("no reason given")
        ),
        "expired" => println!(
            "{}: expired before the broker accepted it (its time to live ran out while it waited to be sent)",
            report.id
        ),
        "scheduled" => println!(
            "{}: scheduled: the broker holds it until {} (`claudemesh schedule list`)",
            report.id,
            report
                .deliver_at_ms
                .map(local_time)
                .unwrap_or_else(|| "its time".into())
        ),
        "cancelled" => println!(
            "{}: cancelled before it was sent (`claudemesh schedule cancel`)",
            report.id
        ),
        _ => {
            println!(
                "{}{} (seq {})",
                report.id,
                report
                    .target
                    .as_deref()
                    .map(
                        |t| if t.starts_with("member:") || t.starts_with("session:") {
                            String::new()
                        } else {
                            format!(" to {t}")
                        }
                    )
                    .unwrap_or_default(),
                report.seq.unwrap_or_default()
            );
            if let Some(deadline) = report.deadline_ms {
                let now = claudemesh_client::client::now_ms();
                println!(
                    "{} {} (time to live)",
                    if deadline <= now {
                        "expired"
                    } else {
                        "expires"
                    },
                    output::timestamp(deadline)
                );
            }
            // STATE is what a signed receipt proves, else the broker's
            // word; PROOF says which (and any receipt that does not hold).
            output::table(
                &["RECIPIENT", "KEY", "STATE", "PROOF"],
                &report
                    .recipients
                    .iter()
                    .map(|r| {
                        vec![
                            r.name.clone(),
                            output::short(&r.key).to_owned(),
                            r.state.clone(),
                            claudemesh_client::naming::proof_summary(r, &clock_time),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
        }
    }
    Ok(())
}
