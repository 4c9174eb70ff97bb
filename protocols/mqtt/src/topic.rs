//! Topic name and topic filter rules (section 4.7).

/// Whether `name` may be a PUBLISH or will topic name: no `+` or `#`. Emptiness is checked by
/// the caller, since an MQTT 5 PUBLISH may have an empty name when it carries a topic alias.
pub fn is_valid_topic_name(name: &str) -> bool {
    !name.contains(['+', '#'])
}

/// Whether `filter` is a well-formed topic filter: not empty, `#` only as a whole last level,
/// `+` only as a whole level, and a shared subscription `$share/{name}/{filter}` with a
/// non-empty share name free of wildcards and a well-formed filter after it.
pub fn is_valid_topic_filter(filter: &str) -> bool {
    match filter.strip_prefix("$share/") {
        Some(shared) => match shared.split_once('/') {
            Some((share_name, inner)) => {
                !share_name.is_empty()
                    && !share_name.contains(['+', '#'])
                    && is_valid_plain_filter(inner)
            }
            None => false,
        },
        None => is_valid_plain_filter(filter),
    }
}

/// Whether `filter` names a shared subscription.
pub fn is_shared_filter(filter: &str) -> bool {
    filter.starts_with("$share/")
}

/// Whether the plain (not shared) topic filter `filter` matches the topic name `name`
/// (section 4.7): `+` matches one whole level, `#` the parent level and any below, and a
/// filter starting with a wildcard does not match a name starting with `$` (section 4.7.2).
/// Both are assumed well-formed.
pub fn matches(filter: &str, name: &str) -> bool {
    if name.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut names = name.split('/');
    for level in filter.split('/') {
        match level {
            "#" => return true,
            "+" => {
                if names.next().is_none() {
                    return false;
                }
            }
            literal => {
                if names.next() != Some(literal) {
                    return false;
                }
            }
        }
    }
    names.next().is_none()
}

/// The share name and the filter of a shared subscription `$share/{name}/{filter}`.
pub fn split_shared(filter: &str) -> Option<(&str, &str)> {
    filter.strip_prefix("$share/")?.split_once('/')
}

fn is_valid_plain_filter(filter: &str) -> bool {
    if filter.is_empty() {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        if level.contains('#') && (level != "#" || !is_last) {
            return false;
        }
        if level.contains('+') && level != "+" {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_follow_the_wildcard_rules() {
        for good in [
            "a",
            "/",
            "a/b/c",
            "#",
            "+",
            "a/#",
            "a/+/c",
            "+/+",
            "/+/",
            "a//b",
            "$SYS/#",
            "$share/group/a/+",
            "$share/g/#",
        ] {
            assert!(is_valid_topic_filter(good), "{good}");
        }
        for bad in [
            "",
            "a#",
            "a/#/b",
            "a/b#",
            "#/a",
            "a+",
            "a/+b/c",
            "++",
            "$share/",
            "$share/g",
            "$share//a",
            "$share/g+/a",
            "$share/g/",
            "$share/g/a#",
        ] {
            assert!(!is_valid_topic_filter(bad), "{bad}");
        }
    }

    #[test]
    fn filters_match_names_level_by_level() {
        for (filter, name) in [
            ("a/b", "a/b"),
            ("a/+", "a/b"),
            ("a/#", "a"),
            ("a/#", "a/b/c"),
            ("#", "a/b"),
            ("+/+", "/b"),
            ("+", ""),
            ("a//b", "a//b"),
            ("a/+/c", "a//c"),
            ("$SYS/#", "$SYS/x"),
            ("/#", "/"),
        ] {
            assert!(matches(filter, name), "{filter} should match {name}");
        }
        for (filter, name) in [
            ("a/b", "a/b/c"),
            ("a/b/c", "a/b"),
            ("a/+", "a"),
            ("a/+", "a/b/c"),
            ("+", "a/b"),
            ("#", "$SYS/x"),
            ("+/x", "$SYS/x"),
            ("a", "A"),
            ("b/#", "a/b"),
        ] {
            assert!(!matches(filter, name), "{filter} should not match {name}");
        }
        assert_eq!(split_shared("$share/g/a/+"), Some(("g", "a/+")));
        assert_eq!(split_shared("a/+"), None);
    }

    #[test]
    fn names_hold_no_wildcards() {
        assert!(is_valid_topic_name("a/b c/$d"));
        assert!(!is_valid_topic_name("a/+"));
        assert!(!is_valid_topic_name("a/#"));
        assert!(!is_valid_topic_name("a+b"));
    }
}
