//! `claudemesh message …` (`send`, `inbox`): send an end-to-end encrypted
//! message and print its id once the broker has durably accepted it; fetch
//! what is queued (stored locally and acknowledged before it is printed);
//! and report per-recipient delivery.

use std::io::Read as _;

use claudemesh_client::Event;
use claudemesh_client::local::InboxMessage;
use claudemesh_crypto::envelope::{MessageId, Priority};

use crate::args::{Global, InboxArgs, PriorityArg, SendArgs};
use crate::exit::{self, Failure};
use crate::mesh::connect;
use crate::{Outcome, output};

pub async fn send(g: &Global, a: SendArgs) -> Outcome {
    let body = if a.text == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Failure::new(exit::IO, format!("cannot read stdin: {e}")))?;
        s
    } else {
        a.text.clone()
    };
    if body.is_empty() {
        return Err(Failure::new(exit::USAGE, "the message is empty"));
    }
    let reply_to = a
        .reply_to
        .as_deref()
        .map(|r| {
            MessageId::from_hex(r).map_err(|_| {
                Failure::new(
                    exit::USAGE,
                    format!("--reply-to {r:?} is not a message id (32 hex digits)"),
                )
            })
        })
        .transpose()?;
    let priority = match a.priority {
        PriorityArg::Now => Priority::Now,
        PriorityArg::Next => Priority::Next,
        PriorityArg::Low => Priority::Low,
    };
    let (_home, _mesh, client) = connect(g).await?;
    let result = async {
        let target = client.resolve(&a.to).await?;
        let name = match &target {
            claudemesh_crypto::envelope::Target::Member(k) => {
                client.with_state(|s| s.display_name(k))
            }
            other => other.to_string(),
        };
        let outcome = client
            .send(target, body.as_bytes(), priority, reply_to)
            .await?;
        Ok::<_, claudemesh_client::ClientError>((name, outcome))
    }
    .await;
    client.close().await;
    let (name, outcome) = result?;
    if g.json {
        output::json(&serde_json::json!({
            "id": outcome.id.to_hex(),
            "to": name,
            "seq": outcome.seq,
            "duplicate": outcome.duplicate,
        }));
    } else {
        if !g.quiet {
            eprintln!(
                "Sent to {name} (stored by the broker; `claudemesh message status <id>` tracks it)."
            );
        }
        println!("{}", outcome.id.to_hex());
    }
    Ok(())
}

fn print_message(g: &Global, m: &InboxMessage, name: &str) {
    if g.json {
        return;
    }
    let marker = match m.priority.as_str() {
        "now" => " [now]",
        "low" => " [low]",
        _ => "",
    };
    println!(
        "{}  {name}{marker}: {}",
        output::timestamp(m.sent_at),
        m.body
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
    from_name: String,
}

pub async fn inbox(g: &Global, a: InboxArgs) -> Outcome {
    let (_home, mesh, client) = connect(g).await?;
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
    let name_of = |m: &InboxMessage| {
        claudemesh_crypto::PublicKey::from_hex(&m.from)
            .map(|k| client.with_state(|s| s.display_name(&k)))
            .unwrap_or_else(|_| output::short(&m.from).to_owned())
    };
    if g.json && !a.watch {
        let out: Vec<JsonMessage<'_>> = list
            .iter()
            .map(|m| JsonMessage {
                msg: m,
                from_name: name_of(m),
            })
            .collect();
        output::json(&out);
    } else if list.is_empty() && !a.watch {
        if !g.quiet {
            println!("No unread messages.");
        }
    } else {
        for m in &list {
            if g.json {
                println!(
                    "{}",
                    serde_json::to_string(&JsonMessage {
                        msg: m,
                        from_name: name_of(m),
                    })
                    .unwrap_or_default()
                );
            } else {
                print_message(g, m, &name_of(m));
            }
        }
    }
    let marked = client.mark_read(&list).await;
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
                    if g.json {
                        println!(
                            "{}",
                            serde_json::to_string(&JsonMessage {
                                msg: m,
                                from_name: name_of(m),
                            })
                            .unwrap_or_default()
                        );
                    } else {
                        print_message(g, m, &name_of(m));
                    }
                }
                client
                    .mark_read(
                        &fresh
                            .into_iter()
                            .filter(|f| f.id == m.id)
                            .collect::<Vec<_>>(),
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

pub async fn status(g: &Global, id: &str) -> Outcome {
    let id = MessageId::from_hex(id.trim()).map_err(|_| {
        Failure::new(
            exit::USAGE,
            format!("{id:?} is not a message id (32 hex digits, as `send` printed it)"),
        )
    })?;
    let (_home, _mesh, client) = connect(g).await?;
    let report = client.message_status(&id).await;
    client.close().await;
    let report = report?;
    if g.json {
        output::json(&report);
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
        _ => {
            println!("{} (seq {})", report.id, report.seq.unwrap_or_default());
            output::table(
                &["RECIPIENT", "KEY", "STATE"],
                &report
                    .recipients
                    .iter()
                    .map(|r| {
                        vec![
                            r.name.clone(),
                            output::short(&r.key).to_owned(),
                            r.state.clone(),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
        }
    }
    Ok(())
}
