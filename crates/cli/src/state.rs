//! `claudemesh state …` (`set`, `get`, `list`, `delete`, `watch`): small
//! named values shared by the mesh, sealed (the broker orders writes by
//! version without reading a key or a value), with compare-and-set through
//! `--if-version`. What an entry is, how it is sealed, synced and
//! arbitrated is the client's ([`claudemesh_client::state`]); this file
//! reads the command line and shows entries, for people and (`--json`) for
//! scripts, and for the MCP tools (`state_*`).
//!
//! Keys and values are peers' words: they are shown without control
//! characters (no terminal escapes).

use clap::{Args, Subcommand};
use claudemesh_client::state::{StateChange, StateEntry, validate_key};

use crate::exit::{self, Failure, Outcome};
use crate::global::Global;
use crate::mesh::{connect, connect_as};
use crate::output;
use crate::policy::{Request, Verb};
use crate::schedule::local_time;

#[derive(Debug, Subcommand)]
pub enum StateCmd {
    /// Set a key to a value, for the whole mesh (sealed: the broker cannot read either)
    Set(SetArgs),
    /// The value of a key
    Get {
        /// The key
        key: String,
    },
    /// Every key (with --prefix, those starting with it), with its value and version
    #[command(visible_alias = "ls")]
    List {
        /// Only keys starting with this
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Delete a key for everyone
    Delete {
        /// The key
        key: String,
        /// Only if the key is at this version now (exit 12 otherwise)
        #[arg(long, value_name = "N")]
        if_version: Option<u64>,
    },
    /// Print each change of these keys as it happens (until Ctrl-C)
    Watch {
        /// The keys
        #[arg(required = true)]
        keys: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// The key (1-256 bytes, as typed: case-sensitive)
    pub key: String,
    /// The value: stored as a string unless --json-value (at most 8 KiB)
    pub value: String,
    /// Read VALUE as JSON (a number, true, an object, …) instead of a string
    #[arg(long)]
    pub json_value: bool,
    /// Only if the key is at this version now (0: it must not exist); exit 12 otherwise
    #[arg(long, value_name = "N")]
    pub if_version: Option<u64>,
}

impl StateCmd {
    /// What it asks the policy: keys are targets (values never are).
    pub fn request(&self) -> Option<Request> {
        let key = |k: &str| output::printable(k).chars().take(80).collect::<String>();
        Some(match self {
            StateCmd::Set(a) => Request::new(Verb::StateSet, Some(&key(&a.key)), true),
            StateCmd::Get { key: k } => Request::new(Verb::StateGet, Some(&key(k)), true),
            StateCmd::List { .. } => Request::new(Verb::StateList, None, true),
            StateCmd::Delete { key: k, .. } => Request::new(Verb::StateDelete, Some(&key(k)), true),
            StateCmd::Watch { keys } => {
                Request::new(Verb::StateWatch, Some(&key(&keys.join(" "))), true)
            }
        })
    }

    pub async fn run(self, g: &Global) -> Outcome {
        match self {
            StateCmd::Set(a) => set(g, a).await,
            StateCmd::Get { key } => get(g, &key).await,
            StateCmd::List { prefix } => list(g, &prefix).await,
            StateCmd::Delete { key, if_version } => delete(g, &key, if_version).await,
            StateCmd::Watch { keys } => watch(g, &keys).await,
        }
    }
}

/// `VALUE` as stored: a JSON string, or parsed JSON with `--json-value`.
pub fn value_of(text: &str, json: bool) -> Result<serde_json::Value, Failure> {
    if !json {
        return Ok(serde_json::Value::String(text.to_owned()));
    }
    serde_json::from_str(text).map_err(|e| {
        Failure::new(
            exit::USAGE,
            format!("--json-value: {e} (give JSON such as 3, true, \"text\" or {{\"a\": 1}})"),
        )
    })
}

/// A value for people: a string as it is, anything else as JSON.
pub fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => output::printable(s),
        other => output::printable(&other.to_string()),
    }
}

/// `v3 by bob 5m ago`.
fn provenance(e: &StateEntry) -> String {
    format!(
        "v{} by {} {}",
        e.version,
        output::printable(&e.writer_name),
        output::ago(e.updated_at_ms)
    )
}

async fn set(g: &Global, a: SetArgs) -> Outcome {
    validate_key(&a.key)?;
    let value = value_of(&a.value, a.json_value)?;
    let (_home, _mesh, client) = connect(g).await?;
    let done = client.state_set(&a.key, value, a.if_version).await;
    client.close().await;
    let entry = done?;
    if g.json {
        output::json(&entry);
    } else if !g.quiet {
        println!(
            "{} = {}  (version {})",
            output::printable(&entry.key),
            value_text(&entry.value),
            entry.version
        );
    }
    Ok(())
}

async fn get(g: &Global, key: &str) -> Outcome {
    validate_key(key)?;
    let (_home, _mesh, client) = connect(g).await?;
    let got = client.state_get(key).await;
    client.close().await;
    let Some(entry) = got? else {
        return Err(Failure::new(
            exit::NOT_FOUND,
            format!(
                "no state key {:?} (see claudemesh state list)",
                output::printable(key)
            ),
        ));
    };
    if g.json {
        output::json(&entry);
    } else {
        println!("{}", value_text(&entry.value));
        if !g.quiet {
            eprintln!("({})", provenance(&entry));
        }
    }
    Ok(())
}

async fn list(g: &Global, prefix: &str) -> Outcome {
    let (_home, _mesh, client) = connect(g).await?;
    let got = client.state_list(prefix).await;
    client.close().await;
    let entries = got?;
    if g.json {
        output::json(&entries);
        return Ok(());
    }
    if entries.is_empty() {
        if !g.quiet {
            println!("No state keys yet (set one with `claudemesh state set <key> <value>`).");
        }
        return Ok(());
    }
    for e in &entries {
        println!(
            "{} = {}  ({})",
            output::printable(&e.key),
            value_text(&e.value),
            provenance(e)
        );
    }
    Ok(())
}

async fn delete(g: &Global, key: &str, if_version: Option<u64>) -> Outcome {
    validate_key(key)?;
    let (_home, _mesh, client) = connect(g).await?;
    let done = client.state_delete(key, if_version).await;
    client.close().await;
    let version = done?;
    if g.json {
        output::json(&serde_json::json!({ "key": key, "deleted": true, "version": version }));
    } else if !g.quiet {
        println!("deleted {} (version {version})", output::printable(key));
    }
    Ok(())
}

/// One change as `watch` prints it.
fn change_line(c: &StateChange) -> String {
    let key = output::printable(&c.key);
    match &c.entry {
        Some(e) => format!(
            "{key} = {}  (v{} by {} at {})",
            value_text(&e.value),
            e.version,
            output::printable(&e.writer_name),
            local_time(e.updated_at_ms)
        ),
        None if c.version == 0 => format!("{key} is not set"),
        None => format!("{key} deleted (v{})", c.version),
    }
}

async fn watch(g: &Global, keys: &[String]) -> Outcome {
    for k in keys {
        validate_key(k)?;
    }
    let (_home, _mesh, client) = connect_as(g, claudemesh_client::SessionChoice::Ephemeral).await?;
    let json = g.json;
    let watched = client.state_watch(keys, |c| {
        if json {
            output::json_line(&c);
        } else {
            println!("{}", change_line(&c));
        }
        true
    });
    let done = tokio::select! {
        r = watched => r.map_err(Failure::from),
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    client.close().await;
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_strings_unless_read_as_json() {
        assert_eq!(
            value_of("1.4.2", false).unwrap(),
            serde_json::json!("1.4.2")
        );
        assert_eq!(value_of("3", true).unwrap(), serde_json::json!(3));
        assert_eq!(
            value_of(r#"{"a":[1]}"#, true).unwrap(),
            serde_json::json!({"a": [1]})
        );
        assert!(value_of("not json", true).is_err());
        assert_eq!(value_text(&serde_json::json!("plain")), "plain");
        assert_eq!(value_text(&serde_json::json!({"a": 1})), r#"{"a":1}"#);
    }
}
