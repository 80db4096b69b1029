//! Timestamps in the formats Lambda's API uses.

use time::OffsetDateTime;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Lambda's `LastModified` format: `2026-11-26T09:00:00.000+0000`.
pub fn lambda_timestamp(epoch_ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(epoch_ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}+0000",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_lambda_timestamps() {
        assert_eq!(super::lambda_timestamp(0), "1970-01-01T00:00:00.000+0000");
        assert_eq!(
            super::lambda_timestamp(1_764_147_723_456),
            "2025-11-26T09:02:03.456+0000"
        );
    }
}
