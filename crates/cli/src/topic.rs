//! `claudemesh topic …` and `claudemesh group …`: topics (`#name`, public
//! or private, with their own history) and groups (`@name`, hierarchical)
//! as the membership log records them — create, join, add, leave, list,
//! post (with `@name` mentions), read the verified history, mark read.
//! Their clap types (`TopicCmd`, `GroupCmd`) say what each asks the policy.

use clap::Subcommand;
use claudemesh_client::ClientError;
use claudemesh_client::groups;
use claudemesh_client::mesh::Label;
use claudemesh_client::topics::{self, TopicView};
use claudemesh_crypto::envelope::{MessageId, Target};

use crate::exit::{self, Failure, Outcome};
use crate::global::Global;
use crate::mesh::connect;
use crate::message::{self, PriorityArg, parse_reply_to, read_body};
use crate::policy::{Request, Verb};
use crate::{names, output};

#[derive(Debug, Subcommand)]
pub enum TopicCmd {
    /// Create a topic; you become its first member
    Create {
        /// The topic's name (with or without #): 1-64 of A-Z a-z 0-9 . _ - /
        name: String,
        /// Private: its own key, only members read it, members add members
        #[arg(long)]
        private: bool,
        /// What the topic is for (shown in `topic list`)
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
    },
    /// List the mesh's topics with your unread counts
    #[command(visible_alias = "ls")]
    List,
    /// Join a public topic
    Join {
        /// The topic (with or without #)
        topic: String,
    },
    /// Leave a topic
    Leave {
        /// The topic (with or without #)
        topic: String,
    },
    /// Add a member to a topic (private: you must be in it)
    Add {
        /// The topic (with or without #)
        topic: String,
        /// The member: a display name or a key prefix (8+ hex digits)
        peer: String,
    },
    /// List a topic's members
    Members {
        /// The topic (with or without #)
        topic: String,
    },
    /// Post to a topic (same as `send '#topic' <text>`)
    Post {
        /// The topic (with or without #)
        topic: String,
        /// The text ("-" reads it from stdin)
        text: String,
        /// Delivery priority
        #[arg(long, value_enum, default_value_t = PriorityArg::Next)]
        priority: PriorityArg,
        /// The message id this one answers
        #[arg(long, value_name = "ID")]
        reply_to: Option<String>,
        /// Time to live: not shown by then (30s, 10m, 2h, 1d, or seconds;
        /// at least 1s), the post expires
        #[arg(long, value_name = "DURATION", value_parser = message::parse_ttl)]
        ttl: Option<std::time::Duration>,
        #[command(flatten)]
        later: crate::schedule::LaterArgs,
    },
    /// A topic's stored messages (yours too), verified like deliveries
    History {
        /// The topic (with or without #)
        topic: String,
        /// At most this many (1-200)
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: u32,
        /// Only messages older than this message id
        #[arg(long, value_name = "ID")]
        before: Option<String>,
    },
    /// Mark every unread message of a topic read
    Read {
        /// The topic (with or without #)
        topic: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// Join a group (again, to change your role in it)
    Join {
        /// The group (with or without @), e.g. eng/backend
        group: String,
        /// Your role in the group, e.g. lead
        #[arg(long, value_name = "ROLE")]
        role: Option<String>,
    },
    /// Leave a group
    Leave {
        /// The group (with or without @)
        group: String,
    },
    /// List the groups that have members, with their members and roles
    #[command(visible_alias = "ls")]
    List,
}

impl TopicCmd {
    /// What it asks the policy.
    pub fn request(&self) -> Option<Request> {
        use Request as R;
        Some(match self {
            TopicCmd::Create { name, .. } => R::new(Verb::TopicCreate, Some(name), true),
            TopicCmd::List => R::new(Verb::TopicList, None, true),
            TopicCmd::Join { topic } => R::new(Verb::TopicJoin, Some(topic), true),
            TopicCmd::Leave { topic } => R::new(Verb::TopicLeave, Some(topic), true),
            TopicCmd::Add { topic, peer } => {
                R::new(Verb::TopicAdd, Some(&format!("{peer} to {topic}")), true)
            }
            TopicCmd::Members { topic } => R::new(Verb::TopicMembers, Some(topic), true),
            TopicCmd::Post { topic, .. } => R::new(Verb::TopicPost, Some(topic), true),
            TopicCmd::History { topic, .. } => R::new(Verb::TopicHistory, Some(topic), true),
            TopicCmd::Read { topic } => R::new(Verb::TopicRead, Some(topic), true),
        })
    }

    pub async fn run(self, g: &Global) -> Outcome {
        match self {
            TopicCmd::Create {
                name,
                private,
                description,
            } => create(g, &name, private, description).await,
            TopicCmd::List => list(g).await,
            TopicCmd::Join { topic } => join(g, &topic).await,
            TopicCmd::Leave { topic } => leave(g, &topic).await,
            TopicCmd::Add { topic, peer } => add(g, &topic, &peer).await,
            TopicCmd::Members { topic } => members(g, &topic).await,
            TopicCmd::Post {
                topic,
                text,
                priority,
                reply_to,
                ttl,
                later,
            } => post(g, &topic, &text, priority, reply_to, ttl, &later).await,
            TopicCmd::History {
                topic,
                limit,
                before,
            } => history(g, &topic, limit, before).await,
            TopicCmd::Read { topic } => read(g, &topic).await,
        }
    }
}

impl GroupCmd {
    /// What it asks the policy.
    pub fn request(&self) -> Option<Request> {
        Some(match self {
            GroupCmd::Join { group, .. } => Request::new(Verb::GroupJoin, Some(group), true),
            GroupCmd::Leave { group } => Request::new(Verb::GroupLeave, Some(group), true),
            GroupCmd::List => Request::new(Verb::GroupList, None, true),
        })
    }

    pub async fn run(self, g: &Global) -> Outcome {
        match self {
            GroupCmd::Join { group, role } => group_join(g, &group, role).await,
            GroupCmd::Leave { group } => group_leave(g, &group).await,
            GroupCmd::List => group_list(g).await,
        }
    }
}

/// Runs `f` on a connected client, closes it, and maps the error.
async fn with_client<T>(
    g: &Global,
    f: impl AsyncFnOnce(&claudemesh_client::MeshClient) -> Result<T, ClientError>,
) -> Result<T, Failure> {
    let (_home, _mesh, client) = connect(g).await?;
    let r = f(&client).await;
    client.close().await;
    r.map_err(Failure::from)
}

fn kind(t: &TopicView) -> &'static str {
    if t.private { "private" } else { "public" }
}

pub async fn create(g: &Global, name: &str, private: bool, description: Option<String>) -> Outcome {
    let description = description.unwrap_or_default();
    let t = with_client(g, async |c| {
        topics::topic_create(c, name, private, &description).await
    })
    .await?;
    if g.json {
        output::json(&t);
    } else if !g.quiet {
        println!(
            "Created the {} topic #{}; you are its first member.",
            kind(&t),
            t.name
        );
        if t.private {
            println!("Add members with `claudemesh topic add {} <name>`.", t.name);
        } else {
            println!(
                "Others join with `claudemesh topic join {}`; post with `claudemesh topic post {} <text>`.",
                t.name, t.name
            );
        }
    }
    Ok(())
}

pub async fn list(g: &Global) -> Outcome {
    let topics = with_client(g, async |c| {
        // Count what the broker had queued too.
        c.settle().await?;
        topics::topics(c).await
    })
    .await?;
    if g.json {
        output::json(&topics);
        return Ok(());
    }
    if topics.is_empty() {
        if !g.quiet {
            println!("No topics yet. Create one with `claudemesh topic create <name>`.");
        }
        return Ok(());
    }
    output::table(
        &[
            "TOPIC",
            "KIND",
            "MEMBERS",
            "JOINED",
            "UNREAD",
            "DESCRIPTION",
        ],
        &topics
            .iter()
            .map(|t| {
                vec![
                    format!("#{}", t.name),
                    if t.needs_rekey {
                        format!("{} (key rotates on the next post)", kind(t))
                    } else {
                        kind(t).to_owned()
                    },
                    t.members.to_string(),
                    if t.joined { "yes" } else { "no" }.to_owned(),
                    t.unread.to_string(),
                    t.description.clone(),
                ]
            })
            .collect::<Vec<_>>(),
    );
    Ok(())
}

pub async fn join(g: &Global, topic: &str) -> Outcome {
    let t = with_client(g, async |c| topics::topic_join(c, topic).await).await?;
    if g.json {
        output::json(&t);
    } else if !g.quiet {
        println!("Joined #{} ({} members).", t.name, t.members);
    }
    Ok(())
}

pub async fn leave(g: &Global, topic: &str) -> Outcome {
    let name = topics::topic_name(topic)?;
    with_client(g, async |c| topics::topic_leave(c, &name).await).await?;
    if g.json {
        output::json(&serde_json::json!({ "left": name }));
    } else if !g.quiet {
        println!("Left #{name}.");
    }
    Ok(())
}

pub async fn add(g: &Global, topic: &str, peer: &str) -> Outcome {
    let name = topics::topic_name(topic)?;
    let (who, key) = with_client(g, async |c| topics::topic_add(c, &name, peer).await).await?;
    if g.json {
        output::json(&serde_json::json!({
            "topic": name,
            "added": { "name": who, "key": key.to_hex() },
        }));
    } else if !g.quiet {
        println!("Added {who} to #{name}.");
    }
    Ok(())
}

pub async fn members(g: &Global, topic: &str) -> Outcome {
    let members = with_client(g, async |c| topics::topic_members(c, topic)).await?;
    if g.json {
        output::json(&members);
        return Ok(());
    }
    output::table(
        &["NAME", "KEY", ""],
        &members
            .iter()
            .map(|m| {
                let mut notes = Vec::new();
                if m.creator {
                    notes.push("creator");
                }
                if m.you {
                    notes.push("you");
                }
                vec![
                    m.name.clone(),
                    output::short(&m.key).to_owned(),
                    notes.join(", "),
                ]
            })
            .collect::<Vec<_>>(),
    );
    Ok(())
}

pub async fn post(
    g: &Global,
    topic: &str,
    text: &str,
    priority: PriorityArg,
    reply_to: Option<String>,
    ttl: Option<std::time::Duration>,
    later: &crate::schedule::LaterArgs,
) -> Outcome {
    let when = later.when()?;
    let name = topics::topic_name(topic)?;
    let body = read_body(text)?;
    let reply_to = parse_reply_to(reply_to.as_deref())?;
    let opts = claudemesh_client::SendOptions::new(message::priority(priority), reply_to).ttl(ttl);
    message::deliver(g, &Target::Topic(name).to_string(), &body, opts, when).await
}

pub async fn history(g: &Global, topic: &str, limit: u32, before: Option<String>) -> Outcome {
    if !(1..=topics::MAX_HISTORY_PAGE).contains(&limit) {
        return Err(Failure::new(
            exit::USAGE,
            format!(
                "--limit must be 1-{} (page with --before)",
                topics::MAX_HISTORY_PAGE
            ),
        ));
    }
    let before = before
        .as_deref()
        .map(|b| {
            MessageId::from_hex(b.trim()).map_err(|_| {
                Failure::new(
                    exit::USAGE,
                    format!("--before {b:?} is not a message id (32 hex digits)"),
                )
            })
        })
        .transpose()?;
    let (home, mesh, client) = connect(g).await?;
    let pins = names::pins_or_warn(&home, &mesh.id);
    let h = topics::topic_history(&client, topic, limit, before)
        .await
        .map(|h| {
            let labels = client.with_state(|s| {
                let all = s.sender_labels(&pins);
                h.messages
                    .iter()
                    .map(|m| names::label_hex(s, &all, &m.from))
                    .collect::<Vec<_>>()
            });
            (h, labels)
        });
    client.close().await;
    let (h, labels) = h?;
    let mut warnings = names::Warnings::default();
    for l in &labels {
        warnings.check(l);
    }
    for r in &h.rejected {
        eprintln!(
            "warning: refused a stored message claiming to be from {} (seq {}): {}. It was not shown.",
            r.sender.as_deref().map(output::short).unwrap_or("?"),
            r.seq,
            r.reason
        );
    }
    if g.json {
        output::json(&history_json(&h, &labels)?);
        return Ok(());
    }
    if h.messages.is_empty() && !g.quiet {
        println!("No messages in #{}.", h.topic);
    }
    // Oldest first, as a conversation reads.
    for (m, label) in h.messages.iter().zip(&labels).rev() {
        message::print_line(g, m, &label.text, "");
    }
    if !g.quiet {
        if h.unreadable > 0 {
            eprintln!(
                "{} older message(s) are sealed under keys from before you could read #{}.",
                h.unreadable, h.topic
            );
        }
        if h.more
            && let Some(oldest) = h.messages.last()
        {
            eprintln!(
                "Older messages: claudemesh topic history {} --before {}",
                h.topic, oldest.id
            );
        }
    }
    Ok(())
}

/// A history page as JSON, each message's `from_name` the sender's label
/// (see `names`), with `name_ambiguous` and `pin_mismatch`.
pub fn history_json(
    h: &topics::TopicHistory,
    labels: &[Label],
) -> Result<serde_json::Value, Failure> {
    let mut v = serde_json::to_value(h)
        .map_err(|e| Failure::new(exit::FAILURE, format!("cannot encode JSON: {e}")))?;
    if let Some(ms) = v.get_mut("messages").and_then(|m| m.as_array_mut()) {
        for (m, label) in ms.iter_mut().zip(labels) {
            m["from_name"] = label.text.clone().into();
            m["name_ambiguous"] = label.ambiguous.into();
            m["pin_mismatch"] = label.pin_mismatch.into();
        }
    }
    Ok(v)
}

pub async fn read(g: &Global, topic: &str) -> Outcome {
    let name = topics::topic_name(topic)?;
    let n = with_client(g, async |c| {
        c.settle().await?;
        topics::topic_read(c, &name, claudemesh_crypto::receipt::Via::Inbox).await
    })
    .await?;
    if g.json {
        output::json(&serde_json::json!({ "topic": name, "marked_read": n }));
    } else if !g.quiet {
        println!("Marked {n} message(s) of #{name} read.");
    }
    Ok(())
}

pub async fn group_join(g: &Global, group: &str, role: Option<String>) -> Outcome {
    let name = with_client(g, async |c| {
        groups::group_join(c, group, role.as_deref()).await
    })
    .await?;
    if g.json {
        output::json(&serde_json::json!({ "group": name, "role": role }));
    } else if !g.quiet {
        match &role {
            Some(r) => println!("Joined @{name} as {r}."),
            None => println!("Joined @{name}."),
        }
    }
    Ok(())
}

pub async fn group_leave(g: &Global, group: &str) -> Outcome {
    let name = with_client(g, async |c| groups::group_leave(c, group).await).await?;
    if g.json {
        output::json(&serde_json::json!({ "left": name }));
    } else if !g.quiet {
        println!("Left @{name}.");
    }
    Ok(())
}

pub async fn group_list(g: &Global) -> Outcome {
    let groups = with_client(g, async |c| Ok(groups::groups(c))).await?;
    if g.json {
        output::json(&groups);
        return Ok(());
    }
    if groups.is_empty() {
        if !g.quiet {
            println!("No groups yet. Join one with `claudemesh group join @<name>`.");
        }
        return Ok(());
    }
    output::table(
        &["GROUP", "MEMBERS"],
        &groups
            .iter()
            .map(|gr| {
                let members: Vec<String> = gr
                    .members
                    .iter()
                    .map(|m| {
                        let you = if m.you { ", you" } else { "" };
                        match &m.role {
                            Some(r) => format!("{} ({r}{you})", m.name),
                            None if m.you => format!("{} (you)", m.name),
                            None => m.name.clone(),
                        }
                    })
                    .collect();
                vec![format!("@{}", gr.name), members.join(", ")]
            })
            .collect::<Vec<_>>(),
    );
    Ok(())
}
