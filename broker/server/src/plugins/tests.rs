use super::spec::*;

#[test]
fn binding_specs_parse_and_are_checked() {
    let ok = serde_json::json!([{
        "name": "f", "topics": ["sensors", "plant-*"],
        "plugins": [{"path": "a.wasm", "config": {"max": 50, "on": true, "s": "x"}}],
        "when_open": "pass"
    }]);
    let specs = parse_bindings(ok).unwrap();
    assert_eq!(specs[0].plugins[0].config["max"], "50");
    assert_eq!(specs[0].when_open, WhenOpen::Pass);
    for bad in [
        serde_json::json!([{"name": "f", "topics": [], "plugins": [{"path": "a"}]}]),
        serde_json::json!([{"name": "f", "topics": ["a*b"], "plugins": [{"path": "a"}]}]),
        serde_json::json!([{"name": "f", "topics": ["t"], "plugins": []}]),
        serde_json::json!([{"name": "f", "topics": ["t"], "plugins": [{"path": "a", "module": "m"}]}]),
        serde_json::json!([{"name": "bad name", "topics": ["t"], "plugins": [{"path": "a"}]}]),
        serde_json::json!([{"name": "f", "topics": ["t"], "plugins": [{"path": "a"}], "colour": 1}]),
        serde_json::json!([{"name": "f", "topics": ["t"], "plugins": [{"path": "a"}]},
                           {"name": "f", "topics": ["u"], "plugins": [{"path": "a"}]}]),
    ] {
        assert!(parse_bindings(bad.clone()).is_err(), "{bad}");
    }
}

#[test]
fn patterns_match_names_or_prefixes() {
    assert!(matches("sensors", "sensors"));
    assert!(!matches("sensors", "sensors2"));
    assert!(matches("plant-*", "plant-a"));
    assert!(matches("*", "anything"));
    assert!(!matches("plant-*", "plan"));
}
