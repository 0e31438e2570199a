//! How the CLI, the MCP server and the gateway name peers (TM8): every
//! sender of a shown message through the one rule
//! (`MeshState::sender_labels`: the display name, invisible characters
//! shown as `?`, with the short key when it does not tell the member apart
//! — another member's name looks the same ([`crate::lookalike`]: case,
//! invisible characters, look-alike letters ignored), or it is altered, not
//! plain ASCII, or shaped like a key — marked when it looks like the name
//! of a pin of another key); who a direct message reached — always the
//! verified member (name and short key) and, for one session, that session
//! and its name — never a bare `session:<hex>`; and each recipient of a
//! status report named the same way, with what its evidence proves in
//! words.

use claudemesh_crypto::envelope::Target;
use claudemesh_crypto::{PublicKey, SessionKey};
use serde::Serialize;

use crate::MeshClient;
use crate::client::{RecipientReport, StatusReport};
use crate::mesh::pins::Pins;
use crate::mesh::{Label, MeshState, SenderLabels, session_display_name, short};
use crate::receipts::ProofKind;
use claudemesh_crypto::receipt::ReceiptState;

/// The label of a sender given as a key in hex (as stored in the inbox).
pub fn label_hex(state: &MeshState, labels: &SenderLabels, hex: &str) -> Label {
    match PublicKey::from_hex(hex) {
        Ok(k) => labels.label(state, &k),
        Err(_) => {
            let s = hex[..hex.len().min(8)].to_owned();
            Label {
                text: s.clone(),
                name: s,
                key: hex.to_owned(),
                ambiguous: false,
                pin_mismatch: false,
                verified: false,
                pinned_name: None,
            }
        }
    }
}

/// Who a sent message reached, as this device verified it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize)]
pub struct Reached {
    /// For people: `alice (1bbf6ba3)`, `alice (1bbf6ba3), session alice@api
    /// (4e362ed2)`, or the fan-out target (`#deploys`, `@eng`, `*`).
    #[serde(skip)]
    pub text: String,
    /// The member's label (`to` in JSON) for a direct message.
    #[serde(skip)]
    pub name: Option<String>,
    /// The member's key (hex), for a direct message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_key: Option<String>,
    /// The session's key (hex), for a message to one session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_session: Option<String>,
    /// That session's name as shown (`alice@api`, or `mallory: api` for a
    /// name that is not its member's), when it published one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_session_name: Option<String>,
    /// The member's name does not tell it apart (another member's name
    /// looks the same, or it is altered, not plain ASCII, or key-shaped):
    /// the key tells.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub name_ambiguous: bool,
}

/// Who `target` reaches: for a direct message the verified member, and for
/// a session target that session (its name from the peer list).
pub async fn reached(client: &MeshClient, pins: &Pins, target: &Target) -> Reached {
    let Some(member) = client.with_state(|s| s.member_of_target(target)) else {
        return Reached {
            text: target.to_string(),
            ..Reached::default()
        };
    };
    let label = client.with_state(|s| s.sender_label(&member, pins));
    let mut out = Reached {
        text: label.with_key(),
        name: Some(label.text.clone()),
        to_key: Some(member.to_hex()),
        name_ambiguous: label.ambiguous,
        ..Reached::default()
    };
    if let Target::Session(session) = target {
        let hex = session.to_hex();
        let published = match client.peers().await {
            Ok(peers) => peers.iter().find_map(|p| {
                let s = p.sessions.iter().find(|s| s.key == hex)?;
                let name = s.name.as_deref()?;
                Some(session_display_name(&p.name, name))
            }),
            Err(e) => {
                tracing::info!("cannot list peers to name the session: {e}");
                None
            }
        };
        out.text = match &published {
            Some(n) => format!("{}, session {n} ({})", out.text, short(session)),
            None => format!("{}, session {}", out.text, short(session)),
        };
        out.to_session = Some(hex);
        out.to_session_name = published;
    }
    out
}

/// A sent message as `send --json` and the MCP `send_message` tool show
/// it: the broker's answer, and whom it reached (`to` is the member's
/// label for a direct message, never a bare `session:<hex>`; `to_key`,
/// `to_session`, `to_session_name` say which member and session).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, serde::Serialize)]
pub struct Sent {
    #[serde(flatten)]
    pub posted: crate::messages::Posted,
    #[serde(flatten)]
    pub reached: Reached,
}

/// Joins what the broker answered with whom it reached.
pub fn sent(mut posted: crate::messages::Posted, reached: Reached) -> Sent {
    if let Some(name) = &reached.name {
        posted.to = name.clone();
    }
    Sent { posted, reached }
}

/// A status report as JSON, each recipient with `name_ambiguous` and
/// `pin_mismatch` (from [`label_recipients`]) and `proof`, what its
/// evidence says in words ([`proof_summary`], times by `time`).
pub fn status_json(
    report: &StatusReport,
    marks: &[(bool, bool)],
    time: &dyn Fn(u64) -> String,
) -> Result<serde_json::Value, serde_json::Error> {
    let mut v = serde_json::to_value(report)?;
    if let Some(rs) = v.get_mut("recipients").and_then(|r| r.as_array_mut()) {
        for (r, (ambiguous, mismatch)) in rs.iter_mut().zip(marks) {
            r["name_ambiguous"] = (*ambiguous).into();
            r["pin_mismatch"] = (*mismatch).into();
        }
        for (r, report) in rs.iter_mut().zip(&report.recipients) {
            r["proof"] = proof_summary(report, time).into();
        }
    }
    Ok(v)
}

/// Unix milliseconds as `2026-01-31 12:01:07Z` (UTC, to the second): the
/// times of [`proof_summary`] for a program without a clock library.
pub fn utc_time(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// What a recipient's evidence says, in words (times by `time`): the
/// proof of its state (`signed 12:01:07 via hook`), what the broker says
/// without one (`broker only (unsigned)`), and every proof that does not
/// hold (`BAD RECEIPT (shown): receipt signature does not verify`). Empty
/// when there is nothing to say (queued, expired, nothing claimed).
pub fn proof_summary(r: &RecipientReport, time: &dyn Fn(u64) -> String) -> String {
    let mut parts = Vec::new();
    if let Some(proven) = r.proven {
        // The earliest proof of the state proven: when it was first reached.
        if let Some(p) = r
            .proofs
            .iter()
            .filter(|p| p.ok && p.state == proven)
            .min_by_key(|p| p.at_ms)
        {
            let kind = match p.kind {
                ProofKind::Receipt => "",
                ProofKind::Watermark => " (watermark)",
            };
            parts.push(format!("signed {} via {}{kind}", time(p.at_ms), p.via));
        }
    }
    let claimed = matches!(r.observed.as_str(), "delivered" | "shown" | "answered");
    let beyond = match (r.proven, r.observed.as_str()) {
        (None, _) => claimed,
        (Some(p), "shown") => p < ReceiptState::Shown,
        (Some(p), "answered") => p < ReceiptState::Answered,
        _ => false,
    };
    if beyond {
        parts.push(if r.proven.is_some() {
            format!("{}: broker only (unsigned)", r.observed)
        } else {
            "broker only (unsigned)".to_owned()
        });
    }
    if r.proven.is_some() && r.observed == "expired" {
        parts.push("expired (broker)".to_owned());
    }
    for p in r.proofs.iter().filter(|p| !p.ok) {
        let what = match p.kind {
            ProofKind::Receipt => "RECEIPT",
            ProofKind::Watermark => "WATERMARK",
        };
        parts.push(format!(
            "BAD {what} ({}): {}",
            p.state,
            p.error.as_deref().unwrap_or("does not verify")
        ));
    }
    parts.join("; ")
}

/// Names each recipient of a status report by the one rule for names
/// (`names`): a member (current or departed) by its label, a session by
/// its member's label and its short key. Returns, per recipient, whether
/// the name is ambiguous and whether it is that of a pin of another key.
pub fn label_recipients(
    state: &MeshState,
    pins: &Pins,
    recipients: &mut [RecipientReport],
) -> Vec<(bool, bool)> {
    let labels = state.sender_labels(pins);
    recipients
        .iter_mut()
        .map(|r| {
            let Ok(key) = PublicKey::from_hex(&r.key) else {
                return (false, false);
            };
            let roster = state.roster();
            let (label, session) = if roster.is_member(&key) || roster.departed().contains_key(&key)
            {
                (labels.label(state, &key), None)
            } else if let Some(member) = state.member_of_target(&Target::Session(SessionKey(key))) {
                (labels.label(state, &member), Some(key))
            } else {
                return (false, false);
            };
            r.name = match session {
                Some(s) => format!("{}, session {}", label.with_key(), short(&s)),
                None => label.text.clone(),
            };
            (label.ambiguous, label.pin_mismatch)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipts::Proof;
    use claudemesh_crypto::receipt::Via;

    #[test]
    fn utc_times_read_as_written() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc_time(951_782_400_000), "2000-02-29 00:00:00Z");
        assert_eq!(utc_time(1_769_861_467_999), "2026-01-31 12:11:07Z");
    }

    fn report(
        observed: &'static str,
        proven: Option<ReceiptState>,
        proofs: Vec<Proof>,
    ) -> RecipientReport {
        RecipientReport {
            name: "bob".into(),
            key: "00".into(),
            state: proven.map_or(observed, ReceiptState::as_str).to_owned(),
            observed: observed.into(),
            proven,
            proofs,
        }
    }

    fn proof(state: ReceiptState, via: Via, error: Option<&str>) -> Proof {
        Proof {
            state,
            kind: ProofKind::Receipt,
            at_ms: 1000,
            via,
            session: "ab".into(),
            reply: None,
            ok: error.is_none(),
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn a_summary_tells_signed_from_the_brokers_word_and_names_bad_receipts() {
        let t = |ms: u64| format!("t{ms}");
        let shown = proof(ReceiptState::Shown, Via::Hook, None);
        assert_eq!(
            proof_summary(&report("shown", Some(ReceiptState::Shown), vec![shown]), &t),
            "signed t1000 via hook"
        );
        assert_eq!(
            proof_summary(&report("delivered", None, vec![]), &t),
            "broker only (unsigned)"
        );
        assert_eq!(proof_summary(&report("queued", None, vec![]), &t), "");
        let delivered = proof(ReceiptState::Delivered, Via::Store, None);
        let bad = proof(
            ReceiptState::Shown,
            Via::Inbox,
            Some("receipt signature does not verify"),
        );
        assert_eq!(
            proof_summary(
                &report("shown", Some(ReceiptState::Delivered), vec![delivered, bad]),
                &t
            ),
            "signed t1000 via store; shown: broker only (unsigned); \
             BAD RECEIPT (shown): receipt signature does not verify"
        );
    }
}
