//! The one clock helper both sides share: the time as the protocol carries
//! it (`sent_at`, `created_at`, `time_ms`: Unix milliseconds).

/// Unix time in milliseconds; 0 for a clock before 1970, `u64::MAX` past
/// the year 584 million.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
