//! `claudemesh schedule …` (`list`, `cancel`): the messages this member
//! holds at the broker to deliver later (`send --at` / `--in`), and
//! cancelling one before it is sent. Also the times `send` takes: `--at`
//! (RFC 3339, `HH:MM` for the next such time here, `tomorrow HH:MM`) and
//! `--in` (a duration), read here so `send`, `topic post` and the MCP
//! tool read them alike. Times the user gives and sees are on this
//! device's clock; the broker's clock differs by the skew its welcome
//! measured, which is added on the way out and taken off on the way in.

use std::time::Duration;

use chrono::{DateTime, Local, NaiveTime, TimeZone};
use clap::Subcommand;
use claudemesh_client::MeshClient;
use claudemesh_client::client::now_ms;
use claudemesh_client::schedule::{broker_clock, find_held, id_prefix, local_clock};
use claudemesh_crypto::envelope::{MessageId, Target};
use claudemesh_proto::frames::HeldMessage;
use serde::Serialize;

use crate::exit::{self, Failure, Outcome};
use crate::global::Global;
use crate::mesh::connect;
use crate::output;
use crate::policy::{Request, Verb};

#[derive(Debug, Subcommand)]
pub enum ScheduleCmd {
    /// Messages you sent with --at/--in that the broker still holds
    List,
    /// Cancel a scheduled message before it is sent
    Cancel {
        /// Its id (as `send` printed it, or at least its first 4 hex digits
        /// as `schedule list` shows it)
        id: String,
    },
}

impl ScheduleCmd {
    /// What it asks the policy.
    pub fn request(&self) -> Option<Request> {
        Some(match self {
            ScheduleCmd::List => Request::new(Verb::ScheduleList, None, true),
            ScheduleCmd::Cancel { id } => Request::new(Verb::ScheduleCancel, Some(id), true),
        })
    }

    pub async fn run(self, g: &Global) -> Outcome {
        match self {
            ScheduleCmd::List => list(g).await,
            ScheduleCmd::Cancel { id } => cancel(g, &id).await,
        }
    }
}

/// `--at` / `--in`, as `send` and `topic post` take them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LaterArgs {
    /// Deliver it at this time instead of now: RFC 3339
    /// (2026-12-03T15:00:00Z), HH:MM (the next such time here), or
    /// "tomorrow HH:MM"; the broker holds it until then
    #[arg(long, value_name = "TIME", conflicts_with = "after")]
    pub at: Option<String>,
    /// Deliver it after this long instead of now (90s, 10m, 2h, 1d, or
    /// seconds); the broker holds it until then
    #[arg(
        long = "in",
        id = "after",
        value_name = "DURATION",
        value_parser = parse_in
    )]
    pub after: Option<Duration>,
}

impl LaterArgs {
    /// When, or a usage error.
    pub fn when(&self) -> Result<When, Failure> {
        When::from_args(self.at.as_deref(), self.after)
    }
}

/// When a message is to be delivered, as the user said it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Now.
    Now,
    /// This long after it is sent.
    In(Duration),
    /// At this time (unix ms, this device's clock).
    At(u64),
}

impl When {
    /// From `--at` and `--in` (clap keeps them apart); an `--at` that does
    /// not read, or is not ahead, is a usage error.
    pub fn from_args(at: Option<&str>, after: Option<Duration>) -> Result<When, Failure> {
        match (at, after) {
            (Some(_), Some(_)) => Err(Failure::new(exit::USAGE, "give --at or --in, not both")),
            (Some(text), None) => {
                let ms = parse_at(text, &Local::now())
                    .map_err(|e| Failure::new(exit::USAGE, format!("--at {text:?}: {e}")))?;
                if ms <= now_ms() {
                    return Err(Failure::new(
                        exit::USAGE,
                        format!(
                            "--at {text:?} is in the past ({}); give a time ahead",
                            local_time(ms)
                        ),
                    ));
                }
                Ok(When::At(ms))
            }
            (None, Some(d)) => Ok(When::In(d)),
            (None, None) => Ok(When::Now),
        }
    }

    /// The delivery time to send (unix ms, the broker's clock), for a
    /// client connected to it.
    pub fn deliver_at_ms(self, client: &MeshClient) -> Option<u64> {
        match self {
            When::Now => None,
            When::In(d) => Some(
                client
                    .broker_now_ms()
                    .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            ),
            When::At(local) => Some(broker_clock(local, client.broker_skew_ms())),
        }
    }
}

/// `--in`: a duration of at least 1 s (`90s`, `10m`, `2h`, `1d`, `1h 30m`,
/// or a number of seconds).
pub fn parse_in(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let d = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("{text:?} is too large"))?
    } else {
        humantime::parse_duration(text).map_err(|e| {
            format!("{text:?}: {e} (give a duration: 90s, 10m, 2h, 1d, or a number of seconds)")
        })?
    };
    if d < Duration::from_secs(1) {
        return Err(format!("{text:?} is shorter than 1 s"));
    }
    Ok(d)
}

/// `--at`: an RFC 3339 time (`2026-12-03T15:00:00+01:00`), `HH:MM` (the
/// next such time in `now`'s time zone: today, or tomorrow once it has
/// passed), or `tomorrow HH:MM`; as unix ms. Whether it is ahead is the
/// caller's to check.
pub fn parse_at<Tz: TimeZone>(text: &str, now: &DateTime<Tz>) -> Result<u64, String> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return u64::try_from(t.timestamp_millis()).map_err(|_| "a time before 1970".to_owned());
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let (tomorrow, clock) = match words.as_slice() {
        [clock] => (false, *clock),
        [day, clock] if day.eq_ignore_ascii_case("tomorrow") => (true, *clock),
        _ => return Err(AT_FORMS.to_owned()),
    };
    let time = NaiveTime::parse_from_str(clock, "%H:%M").map_err(|_| AT_FORMS.to_owned())?;
    let zone = now.timezone();
    let today = now.date_naive();
    let on = |day: chrono::NaiveDate| {
        zone.from_local_datetime(&day.and_time(time))
            .earliest()
            .map(|t| t.timestamp_millis())
    };
    let next_day = || {
        today
            .succ_opt()
            .ok_or_else(|| "a date too far ahead".to_owned())
    };
    let ms = if tomorrow {
        on(next_day()?)
    } else {
        match on(today) {
            Some(t) if t > now.timestamp_millis() => Some(t),
            _ => on(next_day()?),
        }
    };
    let ms =
        ms.ok_or_else(|| format!("{clock} does not exist on that day here (a clock change)"))?;
    u64::try_from(ms).map_err(|_| "a time before 1970".to_owned())
}

/// The forms `--at` takes, for its error.
const AT_FORMS: &str = "give an RFC 3339 time (2026-12-03T15:00:00Z), HH:MM (the next such time here) or `tomorrow HH:MM`";

/// `2026-12-03 15:00` in this device's time zone, from unix ms on its clock.
pub fn local_time(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| Local.timestamp_millis_opt(ms).single())
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| output::timestamp(ms))
}

/// `in 45s`, `in 5m`, `in 2h 30m`, `in 3d 4h` (or `now`) from `now` to
/// `at` (unix ms).
pub fn until(at: u64, now: u64) -> String {
    let secs = at.saturating_sub(now).div_ceil(1000);
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    match secs {
        0 => "now".to_owned(),
        1..=59 => format!("in {s}s"),
        60..=3599 => format!("in {m}m"),
        3600..=86_399 if m == 0 => format!("in {h}h"),
        3600..=86_399 => format!("in {h}h {m}m"),
        _ if h == 0 => format!("in {d}d"),
        _ => format!("in {d}d {h}h"),
    }
}

/// A held message's target as the user knows it: a member's name, else
/// the target as written (`#deploys`, `@eng`, `*`, a session's short key).
fn target_name(client: &MeshClient, target: &str) -> String {
    match target.parse::<Target>() {
        Ok(Target::Member(k)) => client.with_state(|s| s.name_of(&k)),
        Ok(Target::Session(k)) => format!("session {}", output::short(&k.to_hex())),
        _ => target.to_owned(),
    }
}

/// One held message as `schedule list --json` prints it: the broker's
/// fields, the target as the user knows it, and the time on this device's
/// clock.
#[derive(Serialize)]
pub(crate) struct ListedHeld {
    #[serde(flatten)]
    held: HeldMessage,
    /// The target as the user knows it (a member's name).
    to: String,
    /// `deliver_at_ms` on this device's clock.
    deliver_at_local_ms: u64,
}

/// Held messages as `schedule list --json` (and the MCP `list_scheduled`
/// tool) show them.
pub(crate) fn listed(client: &MeshClient, held: Vec<HeldMessage>) -> Vec<ListedHeld> {
    let skew = client.broker_skew_ms();
    held.into_iter()
        .map(|m| ListedHeld {
            to: target_name(client, &m.target),
            deliver_at_local_ms: local_clock(m.deliver_at_ms, skew),
            held: m,
        })
        .collect()
}

/// Cancels the held message `input` names: its whole id, or a prefix of
/// at least 4 hex digits no other held message shares (`schedule cancel`
/// and the MCP `cancel_scheduled` tool).
pub(crate) async fn cancel_named(
    client: &MeshClient,
    input: &str,
) -> Result<MessageId, claudemesh_client::ClientError> {
    id_prefix(input)?;
    let id = match MessageId::from_hex(input.trim()) {
        Ok(id) => id,
        Err(_) => find_held(&client.schedule_list().await?, input)?,
    };
    client.schedule_cancel(id).await?;
    Ok(id)
}

pub async fn list(g: &Global) -> Outcome {
    let (_home, _mesh, client) = connect(g).await?;
    let rows = client
        .schedule_list()
        .await
        .map(|held| listed(&client, held));
    client.close().await;
    let rows = rows?;
    let now = now_ms();
    output::listing(
        g.json,
        &rows,
        "No scheduled messages (send one with `claudemesh send <to> <text> --in 2h`).",
        &["ID", "TO", "AT", "STATE", "ERROR"],
        |r| {
            vec![
                output::short(&r.held.id.to_hex()).to_owned(),
                r.to.clone(),
                format!(
                    "{} ({})",
                    local_time(r.deliver_at_local_ms),
                    until(r.deliver_at_local_ms, now)
                ),
                r.held.state.clone(),
                r.held.error.clone().unwrap_or_default(),
            ]
        },
    );
    Ok(())
}

pub async fn cancel(g: &Global, input: &str) -> Outcome {
    // Refused before connecting when it cannot name a held message.
    id_prefix(input)?;
    let (_home, _mesh, client) = connect(g).await?;
    let done = cancel_named(&client, input).await;
    client.close().await;
    let id = done?;
    if g.json {
        output::json(&serde_json::json!({ "id": id.to_hex(), "cancelled": true }));
    } else if !g.quiet {
        println!(
            "cancelled {}: it will not be sent",
            output::short(&id.to_hex())
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, Utc};

    fn at(text: &str, now: &DateTime<FixedOffset>) -> Result<String, String> {
        parse_at(text, now).map(|ms| {
            now.timezone()
                .timestamp_millis_opt(ms as i64)
                .unwrap()
                .to_rfc3339()
        })
    }

    #[test]
    fn at_reads_rfc3339_the_next_hh_mm_and_tomorrow() {
        let zone = FixedOffset::east_opt(3600).unwrap();
        let now = zone.with_ymd_and_hms(2026, 12, 3, 14, 30, 0).unwrap();
        // RFC 3339, in any zone.
        assert_eq!(
            parse_at("2026-12-03T15:00:00Z", &now).unwrap(),
            Utc.with_ymd_and_hms(2026, 12, 3, 15, 0, 0)
                .unwrap()
                .timestamp_millis() as u64
        );
        // Later today, here.
        assert_eq!(at("15:00", &now).unwrap(), "2026-12-03T15:00:00+01:00");
        // Passed today (or now exactly): tomorrow.
        assert_eq!(at("09:15", &now).unwrap(), "2026-12-04T09:15:00+01:00");
        assert_eq!(at("14:30", &now).unwrap(), "2026-12-04T14:30:00+01:00");
        assert_eq!(
            at("tomorrow 15:00", &now).unwrap(),
            "2026-12-04T15:00:00+01:00"
        );
        assert_eq!(
            at(" Tomorrow  08:00 ", &now).unwrap(),
            "2026-12-04T08:00:00+01:00"
        );
        // Across a month's end.
        let late = zone.with_ymd_and_hms(2026, 12, 31, 23, 0, 0).unwrap();
        assert_eq!(at("00:10", &late).unwrap(), "2027-01-01T00:10:00+01:00");
        for bad in [
            "",
            "soon",
            "25:00",
            "15",
            "15:00:00:00",
            "next 15:00",
            "tomorrow",
            "3pm",
        ] {
            assert!(parse_at(bad, &now).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn in_is_a_duration_of_at_least_a_second() {
        assert_eq!(parse_in("3s").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_in("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_in("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_in("90").unwrap(), Duration::from_secs(90));
        for bad in ["", "0", "500ms", "later", "-5s"] {
            assert!(parse_in(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn at_and_in_exclude_each_other_and_a_past_at_is_refused() {
        assert_eq!(When::from_args(None, None).unwrap(), When::Now);
        assert_eq!(
            When::from_args(None, Some(Duration::from_secs(5))).unwrap(),
            When::In(Duration::from_secs(5))
        );
        let both = When::from_args(Some("15:00"), Some(Duration::from_secs(5))).unwrap_err();
        assert_eq!(both.code, exit::USAGE);
        let past = When::from_args(Some("2001-01-01T00:00:00Z"), None).unwrap_err();
        assert_eq!(past.code, exit::USAGE);
        assert!(past.message.contains("past"), "{}", past.message);
        let bad = When::from_args(Some("teatime"), None).unwrap_err();
        assert_eq!(bad.code, exit::USAGE);
        // HH:MM is always ahead: the next such time.
        assert!(matches!(
            When::from_args(Some("00:00"), None),
            Ok(When::At(ms)) if ms > now_ms()
        ));
    }

    #[test]
    fn until_reads_like_people_say_it() {
        let now = 1_000_000;
        assert_eq!(until(now, now), "now");
        assert_eq!(until(now - 5000, now), "now");
        assert_eq!(until(now + 200, now), "in 1s");
        assert_eq!(until(now + 45_000, now), "in 45s");
        assert_eq!(until(now + 5 * 60_000, now), "in 5m");
        assert_eq!(until(now + 2 * 3_600_000, now), "in 2h");
        assert_eq!(until(now + 9_000_000, now), "in 2h 30m");
        assert_eq!(until(now + 3 * 86_400_000, now), "in 3d");
        assert_eq!(until(now + 3 * 86_400_000 + 4 * 3_600_000, now), "in 3d 4h");
    }
}
