use super::*;
use crate::attributes::RedrivePolicy;
use crate::message::MessageAttributeValue;

const T0: i64 = 1_700_000_000_000;
const MAX_DEPTH: u64 = 1_000;

fn open(dir: &tempfile::TempDir) -> QueueStore {
    QueueStore::open(&dir.path().join("queues.db")).unwrap()
}

fn setup() -> (tempfile::TempDir, QueueStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    (dir, store)
}

fn create(store: &QueueStore, name: &str, settings: QueueSettings) {
    store
        .create_queue(name, &settings, &BTreeMap::new(), |_| true, 1000, T0)
        .unwrap();
}

fn msg(body: &str) -> NewMessage {
    NewMessage {
        body: body.into(),
        attributes: MessageAttributes::new(),
        trace_header: None,
        delay_s: None,
    }
}

fn send(store: &QueueStore, queue: &str, body: &str, now: i64) -> String {
    let mut sent = store.send(queue, &[msg(body)], MAX_DEPTH, now).unwrap();
    sent.remove(0).unwrap().message_id
}

fn receive(store: &QueueStore, queue: &str, max: usize, now: i64) -> Vec<Received> {
    store.receive(queue, max, None, now).unwrap().messages
}

fn bodies(msgs: &[Received]) -> Vec<&str> {
    msgs.iter().map(|m| m.body.as_str()).collect()
}

#[test]
fn send_receive_delete() {
    let (_d, s) = setup();
    create(&s, "q", QueueSettings::default());
    let mut attrs = MessageAttributes::new();
    attrs.insert("k".into(), MessageAttributeValue::string("v"));
    let sent = s
        .send(
            "q",
            &[NewMessage {
                attributes: attrs.clone(),
                trace_header: Some("Root=1-abc".into()),
                ..msg("hello")
            }],
            MAX_DEPTH,
            T0,
        )
        .unwrap()
        .remove(0)
        .unwrap();
    assert_eq!(sent.md5_of_body, "5d41402abc4b2a76b9719d911017c592");
    assert!(sent.md5_of_attributes.is_some());
    let got = receive(&s, "q", 10, T0 + 1);
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.message_id, sent.message_id);
    assert_eq!(m.body, "hello");
    assert_eq!(m.attributes, attrs);
    assert_eq!(m.trace_header.as_deref(), Some("Root=1-abc"));
    assert_eq!(m.receive_count, 1);
    assert_eq!((m.sent_ms, m.first_receive_ms), (T0, T0 + 1));
    assert!(s.delete_message("q", &m.receipt_handle).unwrap());
    // Deleting again is not an error, and deletes nothing.
    assert!(!s.delete_message("q", &m.receipt_handle).unwrap());
    assert_eq!(s.depth("q").unwrap(), 0);
    assert!(receive(&s, "q", 10, T0 + 3_600_000).is_empty());
}

#[test]
fn a_received_message_comes_back_after_its_visibility_timeout() {
    let (_d, s) = setup();
    create(&s, "q", QueueSettings::default()); // 30 s
    send(&s, "q", "m", T0);
    let first = receive(&s, "q", 1, T0);
    assert_eq!(first.len(), 1);
    assert!(
        receive(&s, "q", 1, T0 + 29_999).is_empty(),
        "hidden for 30 s"
    );
    assert_eq!(
        s.counts("q", T0 + 10).unwrap(),
        Counts {
            visible: 0,
            not_visible: 1,
            delayed: 0
        }
    );
    let again = receive(&s, "q", 1, T0 + 30_000);
    assert_eq!(bodies(&again), ["m"]);
    assert_eq!(again[0].receive_count, 2);
    assert_eq!(again[0].first_receive_ms, T0, "first receive is kept");
    assert_ne!(again[0].receipt_handle, first[0].receipt_handle);
}

#[test]
fn a_receive_may_set_its_own_visibility_timeout() {
    let (_d, s) = setup();
    create(&s, "q", QueueSettings::default());
    send(&s, "q", "m", T0);
    assert_eq!(s.receive("q", 1, Some(0), T0).unwrap().messages.len(), 1);
    // Visible again at once: the same receive loop must not hand it out twice though.
    let two = s.receive("q", 10, Some(0), T0).unwrap().messages;
    assert_eq!(two.len(), 1);
    assert_eq!(two[0].receive_count, 2);
    assert_eq!(s.receive("q", 1, Some(5), T0).unwrap().messages.len(), 1);
    assert!(receive(&s, "q", 1, T0 + 4_999).is_empty());
}

#[test]
fn a_stale_receipt_handle_does_not_delete_a_message_received_again() {
    let (_d, s) = setup();
    create(&s, "q", QueueSettings::default());
    send(&s, "q", "m", T0);
    let slow = receive(&s, "q", 1, T0).remove(0);
    // The slow consumer's timeout passes; someone else receives the message.
    let fast = receive(&s, "q", 1, T0 + 31_000).remove(0);
    assert!(!s.delete_message("q", &slow.receipt_handle).unwrap());
    assert_eq!(s.depth("q").unwrap(), 1, "still there");
    let err = s
        .change_visibility("q", &slow.receipt_handle, 60, T0 + 31_001)
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidParameterValue);
    assert!(s.delete_message("q", &fast.receipt_handle).unwrap());
    assert_eq!(s.depth("q").unwrap(), 0);
}

#[test]
fn the_latest_handle_still_deletes_after_the_timeout_passed() {
    let (_d, s) = setup();
    create(&s, "q", QueueSettings::default());
    send(&s, "q", "m", T0);
    let m = receive(&s, "q", 1, T0).remove(0);
    // Visible again but not received again: the handle is still the latest.
    assert!(s.delete_message("q", &m.receipt_handle).unwrap());
}

#[test]
fn change_visibility() {
    let (_d, s) = setup();
    create(&s, "q", QueueSettings::default());
    send(&s, "q", "m", T0);
    let m = receive(&s, "q", 1, T0).remove(0);
    s.change_visibility("q", &m.receipt_handle, 120, T0 + 1_000)
        .unwrap();
    assert!(receive(&s, "q", 1, T0 + 60_000).is_empty(), "extended");
    s.change_visibility("q", &m.receipt_handle, 0, T0 + 60_000)
        .unwrap();
    let again = receive(&s, "q", 1, T0 + 60_000).remove(0);
    // Not in flight any more: visible, and not received since.
    s.change_visibility("q", &again.receipt_handle, 0, T0 + 60_000)
        .unwrap();
    let err = s
        .change_visibility("q", &again.receipt_handle, 10, T0 + 60_001)
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::MessageNotInflight);
    // Past 12 hours from the receive.
    let third = receive(&s, "q", 1, T0 + 70_000).remove(0);
    let err = s
        .change_visibility("q", &third.receipt_handle, 43_200, T0 + 80_000)
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidParameterValue);
    for bad in ["", "garbage", "d2lzcDE6eDp5", &"a".repeat(300)] {
        assert_eq!(
            s.change_visibility("q", bad, 1, T0).unwrap_err().kind,
            ErrorKind::ReceiptHandleIsInvalid,
            "{bad}"
        );
        assert_eq!(
            s.delete_message("q", bad).unwrap_err().kind,
            ErrorKind::ReceiptHandleIsInvalid
        );
    }
}

#[test]
fn redrive_moves_a_message_past_max_receive_count_to_the_dead_letter_queue() {
    let (_d, s) = setup();
    create(&s, "dlq", QueueSettings::default());
    let settings = QueueSettings {
        visibility_timeout_s: 1,
        redrive_policy: Some(RedrivePolicy {
            dead_letter_queue: "dlq".into(),
            max_receive_count: 2,
        }),
        ..QueueSettings::default()
    };
    create(&s, "src", settings);
    let id = send(&s, "src", "poison", T0);
    send(&s, "src", "fine", T0 + 1);
    let mut now = T0 + 10;
    for expected_count in 1..=2 {
        let got = receive(&s, "src", 10, now);
        assert_eq!(bodies(&got), ["poison", "fine"]);
        assert!(got.iter().all(|m| m.receive_count == expected_count));
        // "fine" is processed on the second round.
        if expected_count == 2 {
            s.delete_message("src", &got[1].receipt_handle).unwrap();
        }
        now += 1_000;
    }
    let out = s.receive("src", 10, None, now).unwrap();
    assert!(
        out.messages.is_empty(),
        "the third receive moves it instead"
    );
    assert_eq!(out.moved_to, Some(("dlq".to_string(), 1)));
    assert_eq!(s.depth("src").unwrap(), 0);
    assert_eq!(s.depth("dlq").unwrap(), 1);
    let dead = receive(&s, "dlq", 10, now).remove(0);
    assert_eq!(dead.message_id, id, "the message keeps its id");
    assert_eq!(dead.sent_ms, T0, "and its sent time");
    assert_eq!(dead.receive_count, 1, "counting starts again");
    assert_eq!(dead.dead_letter_source.as_deref(), Some("src"));
}

#[test]
fn a_missing_dead_letter_queue_leaves_messages_deliverable() {
    let (_d, s) = setup();
    create(&s, "dlq", QueueSettings::default());
    let settings = QueueSettings {
        visibility_timeout_s: 0,
        redrive_policy: Some(RedrivePolicy {
            dead_letter_queue: "dlq".into(),
            max_receive_count: 1,
        }),
        ..QueueSettings::default()
    };
    create(&s, "src", settings);
    s.delete_queue("dlq").unwrap();
    send(&s, "src", "m", T0);
    assert_eq!(receive(&s, "src", 1, T0).len(), 1);
    assert_eq!(receive(&s, "src", 1, T0).len(), 1);
}

#[test]
fn dead_letter_target_must_exist_and_not_be_the_queue() {
    let (_d, s) = setup();
    let settings = QueueSettings {
        redrive_policy: Some(RedrivePolicy {
            dead_letter_queue: "nope".into(),
            max_receive_count: 1,
        }),
        ..QueueSettings::default()
    };
    let err = s
        .create_queue("q", &settings, &BTreeMap::new(), |_| true, 10, T0)
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidAttributeValue);
    assert!(s.queue("q").is_err(), "nothing created");
    create(&s, "q", QueueSettings::default());
    let err = s
        .update_settings(
            "q",
            |cur| {
                Ok(QueueSettings {
                    redrive_policy: Some(RedrivePolicy {
                        dead_letter_queue: "q".into(),
                        max_receive_count: 1,
                    }),
                    ..cur.clone()
                })
            },
            T0,
        )
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidAttributeValue);
    assert_eq!(s.queue("q").unwrap().settings, QueueSettings::default());
}

#[test]
fn expired_messages_are_not_received_and_are_swept() {
    let (_d, s) = setup();
    let settings = QueueSettings {
        message_retention_s: 60,
        ..QueueSettings::default()
    };
    create(&s, "q", settings);
    create(&s, "other", QueueSettings::default());
    send(&s, "q", "old", T0);
    send(&s, "q", "new", T0 + 30_000);
    send(&s, "other", "kept", T0);
    let later = T0 + 60_000;
    assert_eq!(s.counts("q", later).unwrap().visible, 1);
    assert_eq!(bodies(&receive(&s, "q", 10, later)), ["new"]);
    assert_eq!(
        s.depth("q").unwrap(),
        1,
        "the receive deleted the expired one"
    );
    assert_eq!(s.sweep_expired(T0 + 90_000).unwrap(), 1);
    assert_eq!(s.depth("q").unwrap(), 0);
    assert_eq!(s.depth("other").unwrap(), 1);
}

#[test]
fn delayed_messages() {
    let (_d, s) = setup();
    create(&s, "q", QueueSettings::default());
    s.send(
        "q",
        &[NewMessage {
            delay_s: Some(5),
            ..msg("later")
        }],
        MAX_DEPTH,
        T0,
    )
    .unwrap();
    assert_eq!(s.counts("q", T0).unwrap().delayed, 1);
    assert!(receive(&s, "q", 1, T0 + 4_999).is_empty());
    assert_eq!(s.next_visible_ms("q", T0).unwrap(), Some(T0 + 5_000));
    assert_eq!(bodies(&receive(&s, "q", 1, T0 + 5_000)), ["later"]);
    // A queue delay applies when the message sets none.
    create(
        &s,
        "slow",
        QueueSettings {
            delay_s: 2,
            ..QueueSettings::default()
        },
    );
    send(&s, "slow", "m", T0);
    assert!(receive(&s, "slow", 1, T0 + 1_999).is_empty());
    assert_eq!(receive(&s, "slow", 1, T0 + 2_000).len(), 1);
}

#[test]
fn messages_survive_reopening_and_in_flight_ones_reappear() {
    let dir = tempfile::tempdir().unwrap();
    let handle;
    {
        let s = open(&dir);
        create(&s, "q", QueueSettings::default());
        send(&s, "q", "a", T0);
        send(&s, "q", "b", T0);
        handle = receive(&s, "q", 1, T0).remove(0);
        assert_eq!(handle.body, "a");
    }
    let s = open(&dir);
    assert_eq!(s.depth("q").unwrap(), 2);
    assert_eq!(bodies(&receive(&s, "q", 10, T0 + 1)), ["b"]);
    let again = receive(&s, "q", 10, T0 + 30_000);
    assert_eq!(bodies(&again), ["a"]);
    assert_eq!(again[0].receive_count, 2);
    assert!(!s.delete_message("q", &handle.receipt_handle).unwrap());
}

#[test]
fn create_queue_is_idempotent_and_bounded() {
    let (_d, s) = setup();
    let settings = QueueSettings::default();
    let tags = BTreeMap::new();
    assert_eq!(
        s.create_queue("q", &settings, &tags, |_| true, 2, T0)
            .unwrap(),
        Created::New
    );
    assert_eq!(
        s.create_queue("q", &settings, &tags, |_| true, 2, T0)
            .unwrap(),
        Created::Existing
    );
    assert_eq!(
        s.create_queue("q", &settings, &tags, |_| false, 2, T0)
            .unwrap_err()
            .kind,
        ErrorKind::QueueNameExists
    );
    s.create_queue("r", &settings, &tags, |_| true, 2, T0)
        .unwrap();
    assert_eq!(
        s.create_queue("s", &settings, &tags, |_| true, 2, T0)
            .unwrap_err()
            .kind,
        ErrorKind::OverLimit
    );
}

#[test]
fn a_full_queue_refuses_sends() {
    let (_d, s) = setup();
    create(&s, "q", QueueSettings::default());
    s.send("q", &[msg("1"), msg("2")], 3, T0).unwrap();
    let err = s.send("q", &[msg("3"), msg("4")], 3, T0).unwrap_err();
    assert_eq!(err.kind, ErrorKind::OverLimit);
    assert_eq!(
        s.depth("q").unwrap(),
        2,
        "nothing of the refused batch stored"
    );
    s.send("q", &[msg("3")], 3, T0).unwrap();
}

#[test]
fn message_size_is_checked_against_the_queue() {
    let (_d, s) = setup();
    create(
        &s,
        "q",
        QueueSettings {
            maximum_message_size: 1024,
            ..QueueSettings::default()
        },
    );
    let out = s
        .send(
            "q",
            &[msg(&"x".repeat(1024)), msg(&"x".repeat(1025))],
            MAX_DEPTH,
            T0,
        )
        .unwrap();
    assert!(out[0].is_ok());
    assert_eq!(
        out[1].as_ref().unwrap_err().kind,
        ErrorKind::InvalidParameterValue
    );
    assert_eq!(s.depth("q").unwrap(), 1);
}

#[test]
fn purge_delete_and_missing_queues() {
    let (_d, s) = setup();
    create(&s, "q", QueueSettings::default());
    create(&s, "r", QueueSettings::default());
    send(&s, "q", "1", T0);
    send(&s, "q", "2", T0);
    send(&s, "r", "3", T0);
    assert_eq!(s.purge("q").unwrap(), 2);
    assert_eq!(s.depth("q").unwrap(), 0);
    s.delete_queue("r").unwrap();
    for err in [
        s.send("r", &[msg("x")], MAX_DEPTH, T0).unwrap_err(),
        s.receive("r", 1, None, T0).unwrap_err(),
        s.purge("r").unwrap_err(),
        s.delete_queue("r").unwrap_err(),
        s.counts("r", T0).unwrap_err(),
    ] {
        assert_eq!(err.kind, ErrorKind::QueueDoesNotExist);
    }
    // A queue of the same name starts empty.
    create(&s, "r", QueueSettings::default());
    assert!(receive(&s, "r", 10, T0).is_empty());
}

#[test]
fn list_queues_by_prefix_and_page() {
    let (_d, s) = setup();
    for name in ["a_1", "a_2", "ab", "b", "a%"] {
        if name.contains('%') {
            continue;
        }
        create(&s, name, QueueSettings::default());
    }
    assert_eq!(s.list_queues("a_", None, 10).unwrap(), ["a_1", "a_2"]);
    assert_eq!(s.list_queues("", None, 2).unwrap(), ["a_1", "a_2"]);
    assert_eq!(s.list_queues("", Some("a_2"), 2).unwrap(), ["ab", "b"]);
    assert!(s.list_queues("zz", None, 10).unwrap().is_empty());
}

#[test]
fn receipt_handles_round_trip() {
    let h = ReceiptHandle::fresh(&uuid::Uuid::new_v4().to_string());
    assert_eq!(ReceiptHandle::parse(&h.encode()).unwrap(), h);
}

#[test]
fn a_long_run_of_expired_messages_does_not_hide_a_live_one() {
    let (_d, s) = setup();
    create(
        &s,
        "q",
        QueueSettings {
            message_retention_s: 60,
            ..QueueSettings::default()
        },
    );
    let old: Vec<NewMessage> = (0..500).map(|i| msg(&format!("old{i}"))).collect();
    s.send("q", &old, MAX_DEPTH, T0).unwrap();
    send(&s, "q", "live", T0 + 59_000);
    let now = T0 + 60_000;
    let first = s.receive("q", 1, None, now).unwrap();
    assert!(first.messages.is_empty());
    assert!(first.more_ready, "stopped early, with more to look at");
    let mut calls = 1;
    let live = loop {
        let out = s.receive("q", 1, None, now).unwrap();
        calls += 1;
        if let Some(m) = out.messages.into_iter().next() {
            break m;
        }
        assert!(out.more_ready);
        assert!(calls < 100);
    };
    assert_eq!(live.body, "live");
    assert_eq!(s.depth("q").unwrap(), 1);
}
