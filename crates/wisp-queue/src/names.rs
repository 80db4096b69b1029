//! Queue names, URLs and ARNs.

use crate::error::{clip, ErrorKind, QueueError, Result};
use crate::limits::{ACCOUNT_ID, QUEUE_NAME_MAX_CHARS};

/// Checks a queue name: `[A-Za-z0-9_-]`, 1 to 80 characters. FIFO queues (`.fifo`) are
/// refused as unsupported.
pub fn validate_queue_name(name: &str) -> Result<()> {
    if name.ends_with(".fifo") {
        return Err(QueueError::new(
            ErrorKind::UnsupportedOperation,
            format!(
                "FIFO queues are not supported by wisp: {}. Use a standard queue (a name without \".fifo\").",
                clip(name)
            ),
        ));
    }
    let ok = !name.is_empty()
        && name.len() <= QUEUE_NAME_MAX_CHARS
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(QueueError::invalid(format!(
            "Invalid queue name {:?}: a queue name has 1 to {QUEUE_NAME_MAX_CHARS} characters, each a letter, a digit, '-' or '_'.",
            clip(name)
        )))
    }
}

/// `arn:aws:sqs:REGION:000000000000:NAME`.
pub fn queue_arn(region: &str, name: &str) -> String {
    format!("arn:aws:sqs:{region}:{ACCOUNT_ID}:{name}")
}

/// The queue name of a queue ARN of this region and account.
pub fn name_from_arn(region: &str, arn: &str) -> Result<String> {
    let bad = |why: &str| {
        QueueError::invalid(format!(
            "Invalid queue ARN {:?}: {why}. Expected arn:aws:sqs:{region}:{ACCOUNT_ID}:QUEUE_NAME.",
            clip(arn)
        ))
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" || parts[1] != "aws" || parts[2] != "sqs" {
        return Err(bad("not an SQS queue ARN"));
    }
    if parts[3] != region {
        return Err(bad("the queue is in another region"));
    }
    if parts[4] != ACCOUNT_ID {
        return Err(bad("the queue is in another account"));
    }
    validate_queue_name(parts[5]).map_err(|_| bad("invalid queue name"))?;
    Ok(parts[5].to_string())
}

/// The queue name of a `QueueUrl`: `http(s)://HOST/000000000000/NAME` (any host: the URL
/// a client holds may name the server differently than this request does). A bare queue
/// name is accepted too.
pub fn name_from_url(url: &str) -> Result<String> {
    let invalid = || {
        QueueError::new(
            ErrorKind::InvalidAddress,
            format!(
                "Invalid QueueUrl {:?}: expected http://HOST/{ACCOUNT_ID}/QUEUE_NAME, as CreateQueue and GetQueueUrl return it.",
                clip(url)
            ),
        )
    };
    let path = if let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    {
        match rest.find('/') {
            Some(i) => &rest[i + 1..],
            None => return Err(invalid()),
        }
    } else if !url.contains('/') {
        // A bare name.
        validate_queue_name(url).map_err(|_| invalid())?;
        return Ok(url.to_string());
    } else {
        url.trim_start_matches('/')
    };
    let path = path.trim_end_matches('/');
    let Some((account, name)) = path.split_once('/') else {
        return Err(invalid());
    };
    if account != ACCOUNT_ID {
        if account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(QueueError::no_queue(url));
        }
        return Err(invalid());
    }
    if name.ends_with(".fifo") {
        return Err(QueueError::no_queue(name));
    }
    validate_queue_name(name).map_err(|_| invalid())?;
    Ok(name.to_string())
}

/// The URL of a queue for a client that reached wisp at `endpoint` (`http://HOST`).
pub fn queue_url(endpoint: &str, name: &str) -> String {
    format!("{}/{ACCOUNT_ID}/{name}", endpoint.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names() {
        for ok in ["a", "orders", "A-b_9", &"x".repeat(80)] {
            assert!(validate_queue_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a.b", "ü", &"x".repeat(81), "a/b", "../x"] {
            let e = validate_queue_name(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidParameterValue, "{bad}");
        }
        assert_eq!(
            validate_queue_name("jobs.fifo").unwrap_err().kind,
            ErrorKind::UnsupportedOperation
        );
    }

    #[test]
    fn urls() {
        let check = |url: &str, expect: Result<&str, ErrorKind>| {
            let got = name_from_url(url);
            match expect {
                Ok(name) => assert_eq!(got.unwrap(), name, "{url}"),
                Err(kind) => assert_eq!(got.unwrap_err().kind, kind, "{url}"),
            }
        };
        check("http://127.0.0.1:8790/000000000000/q1", Ok("q1"));
        check("https://sqs.example/000000000000/q1/", Ok("q1"));
        check("/000000000000/q1", Ok("q1"));
        check("q1", Ok("q1"));
        check(
            "http://h/123456789012/q1",
            Err(ErrorKind::QueueDoesNotExist),
        );
        check(
            "http://h/000000000000/q1.fifo",
            Err(ErrorKind::QueueDoesNotExist),
        );
        check("http://h/000000000000", Err(ErrorKind::InvalidAddress));
        check("http://h", Err(ErrorKind::InvalidAddress));
        check("http://h/000000000000/a/b", Err(ErrorKind::InvalidAddress));
        check("http://h/000000000000/a b", Err(ErrorKind::InvalidAddress));
        check("", Err(ErrorKind::InvalidAddress));
        check("ftp://x/y", Err(ErrorKind::InvalidAddress));
    }

    #[test]
    fn arns() {
        let arn = queue_arn("us-east-1", "dlq");
        assert_eq!(arn, "arn:aws:sqs:us-east-1:000000000000:dlq");
        assert_eq!(name_from_arn("us-east-1", &arn).unwrap(), "dlq");
        for bad in [
            "arn:aws:sqs:eu-west-1:000000000000:dlq",
            "arn:aws:sqs:us-east-1:111111111111:dlq",
            "arn:aws:sns:us-east-1:000000000000:dlq",
            "arn:aws:sqs:us-east-1:000000000000:",
            "dlq",
        ] {
            assert!(name_from_arn("us-east-1", bad).is_err(), "{bad}");
        }
    }
}
