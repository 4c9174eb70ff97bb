use super::*;

const FILE: &str = "\
# anonymous clients
topic read public/#

user alice
topic readwrite plant/#
topic deny plant/secret/#
topic write commands/alice
kafka-group readers-*

user bob
topic read plant/+/temp
kafka-group audit

pattern readwrite devices/%c/#
pattern read users/%u/inbox
";

fn alice() -> Client<'static> {
    Client {
        user: Some("alice"),
        client_id: "gw-1",
    }
}

fn bob() -> Client<'static> {
    Client {
        user: Some("bob"),
        client_id: "bob-phone",
    }
}

fn anonymous() -> Client<'static> {
    Client {
        user: None,
        client_id: "sensor-9",
    }
}

#[test]
fn each_section_grants_its_clients_and_deny_wins() {
    let acl = AclRules::parse(FILE).unwrap();
    assert!(acl.allows(alice(), Access::Write, "plant/1/temp"));
    assert!(acl.allows(alice(), Access::Read, "plant/1/temp"));
    assert!(!acl.allows(alice(), Access::Write, "plant/secret/key"));
    assert!(!acl.allows(alice(), Access::Read, "plant/secret/key"));
    assert!(acl.allows(alice(), Access::Write, "commands/alice"));
    assert!(!acl.allows(alice(), Access::Read, "commands/alice"));
    assert!(
        !acl.allows(alice(), Access::Read, "public/news"),
        "anonymous lines are not alice's"
    );
    assert!(acl.allows(bob(), Access::Read, "plant/1/temp"));
    assert!(!acl.allows(bob(), Access::Write, "plant/1/temp"));
    assert!(!acl.allows(bob(), Access::Read, "plant/1/humidity"));
    assert!(acl.allows(anonymous(), Access::Read, "public/news"));
    assert!(!acl.allows(anonymous(), Access::Write, "public/news"));
    let carol = Client {
        user: Some("carol"),
        client_id: "c",
    };
    assert!(
        !acl.allows(carol, Access::Read, "public/news"),
        "an unlisted user has no lines"
    );
}

#[test]
fn patterns_apply_to_everyone_with_their_client_id_and_user_name() {
    let acl = AclRules::parse(FILE).unwrap();
    assert!(acl.allows(alice(), Access::Write, "devices/gw-1/state"));
    assert!(!acl.allows(alice(), Access::Write, "devices/gw-2/state"));
    assert!(acl.allows(anonymous(), Access::Write, "devices/sensor-9/state"));
    assert!(acl.allows(bob(), Access::Read, "users/bob/inbox"));
    assert!(!acl.allows(bob(), Access::Read, "users/alice/inbox"));
    // `%u` is nobody's for an anonymous client; an id holding a wildcard or a level
    // separator makes no pattern.
    assert!(!acl.allows(anonymous(), Access::Read, "users//inbox"));
    for id in ["+", "#", "a/b", ""] {
        let sly = Client {
            user: None,
            client_id: id,
        };
        assert!(
            !acl.allows(sly, Access::Write, &format!("devices/{id}/state")),
            "{id:?}"
        );
        assert!(!acl.allows_subscription(sly, "devices/+/state"), "{id:?}");
    }
}

#[test]
fn a_subscription_needs_read_on_everything_it_can_match() {
    let acl = AclRules::parse(FILE).unwrap();
    assert!(acl.allows_subscription(alice(), "plant/#"));
    assert!(acl.allows_subscription(alice(), "plant/+/temp"));
    assert!(!acl.allows_subscription(alice(), "#"), "beyond plant/#");
    assert!(
        !acl.allows_subscription(alice(), "plant/secret/#"),
        "all of it denied"
    );
    assert!(
        !acl.allows_subscription(alice(), "commands/alice"),
        "write only"
    );
    assert!(acl.allows_subscription(bob(), "plant/+/temp"));
    assert!(acl.allows_subscription(bob(), "plant/3/temp"));
    assert!(!acl.allows_subscription(bob(), "plant/#"));
    assert!(!acl.allows_subscription(bob(), "plant/+/+"));
    // `#` never covers `$` topics.
    let root = AclRules::parse("topic read #").unwrap();
    assert!(root.allows_subscription(anonymous(), "a/b"));
    assert!(!root.allows_subscription(anonymous(), "$SYS/#"));
}

#[test]
fn kafka_topics_are_checked_as_their_mqtt_filter() {
    let acl = AclRules::parse(FILE).unwrap();
    // plant/# covers plant/#, but plant/secret/# is denied inside it: neither way.
    assert!(!acl.allows_kafka_topic(alice(), Access::Write, "plant"));
    assert!(!acl.allows_kafka_topic(alice(), Access::Read, "plant"));
    let open = AclRules::parse("user alice\ntopic readwrite plant/#\ntopic read logs/#").unwrap();
    assert!(open.allows_kafka_topic(alice(), Access::Write, "plant"));
    assert!(open.allows_kafka_topic(alice(), Access::Read, "logs"));
    assert!(!open.allows_kafka_topic(alice(), Access::Write, "logs"));
    assert!(!open.allows_kafka_topic(alice(), Access::Read, "other"));
    // plant/+/temp does not cover plant/#.
    assert!(!acl.allows_kafka_topic(bob(), Access::Read, "plant"));
}

#[test]
fn groups_are_granted_by_name_or_prefix() {
    let acl = AclRules::parse(FILE).unwrap();
    assert!(acl.allows_group(alice(), "readers-1"));
    assert!(!acl.allows_group(alice(), "audit"));
    assert!(acl.allows_group(bob(), "audit"));
    assert!(!acl.allows_group(bob(), "audit-2"));
    assert!(!acl.allows_group(anonymous(), "readers-1"));
}

#[test]
fn the_whole_broker_needs_readwrite_on_everything() {
    let admin =
        AclRules::parse("user alice\ntopic readwrite #\nuser bob\ntopic write a/#").unwrap();
    assert!(admin.allows_everything(alice()));
    assert!(!admin.allows_everything(bob()));
    assert!(admin.grants_some_write(bob()));
    assert!(!admin.grants_some_write(anonymous()));
    let denied = AclRules::parse("user alice\ntopic readwrite #\ntopic deny a/#").unwrap();
    assert!(
        !denied.allows_everything(alice()),
        "a deny anywhere takes it away"
    );
    let read = AclRules::parse("user alice\ntopic read #").unwrap();
    assert!(!read.allows_everything(alice()));
    assert!(!read.grants_some_write(alice()));
}

#[test]
fn an_empty_file_grants_nothing() {
    let acl = AclRules::parse("# nothing\n\n").unwrap();
    assert!(!acl.allows(anonymous(), Access::Read, "a"));
    assert!(!acl.allows_subscription(alice(), "a/#"));
    assert!(!acl.allows_kafka_topic(alice(), Access::Write, "a"));
    assert!(!acl.allows_group(alice(), "g"));
}

#[test]
fn bad_lines_are_refused_with_their_number() {
    for (text, line) in [
        ("user alice\ntopic a/#/b", 2),
        ("\n\nuser", 3),
        ("subscribe a/b", 1),
        ("topic read $share/g/a", 1),
        ("pattern write devices/%c%u/x", 1),
        ("kafka-group", 1),
    ] {
        let error = AclRules::parse(text).unwrap_err();
        assert!(
            error.starts_with(&format!("line {line}:")),
            "{text:?}: {error}"
        );
    }
    // An access word alone is a topic named so, readwrite, as in Mosquitto.
    let named = AclRules::parse("topic read").unwrap();
    assert!(named.allows(anonymous(), Access::Write, "read"));
}

#[test]
fn coverage_and_overlap_of_filters() {
    for (outer, inner, covered) in [
        ("a/#", "a", true),
        ("a/#", "a/b/c", true),
        ("a/+", "a/b", true),
        ("a/+", "a/+", true),
        ("a/+", "a/#", false),
        ("a/b", "a/+", false),
        ("+/b", "a/b", true),
        ("#", "$SYS/x", false),
        ("a", "a/b", false),
    ] {
        assert_eq!(covers(outer, inner), covered, "{outer} covers {inner}");
    }
    for (a, b, overlap) in [
        ("a/#", "b/#", false),
        ("a/secret/#", "a/#", true),
        ("a/+/c", "a/b/#", true),
        ("a/b", "a/c", false),
        ("a", "a/#", true),
        ("a/b/c", "a/b", false),
    ] {
        assert_eq!(intersects(a, b), overlap, "{a} and {b}");
    }
}
