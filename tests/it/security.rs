//! Locking the doors: the admin API's token (`admin.token_file`) and its loopback default.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use weir_tests::{Weir, http_get, http_request_with_token, plugin_wasm, run_weir};

const TOKEN: &str = "5f0c2a9e6b7d4e1f8a3c0b2d9e7f6a1c";

/// Writes `token` to a file only its owner may read, in `dir`; returns its path.
fn token_file(dir: &Path, token: &str) -> String {
    let path = dir.join("admin-token");
    std::fs::write(&path, format!("{token}\n")).expect("write the token file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
    path.display().to_string()
}

/// With `admin.token_file`, plugin management without the token (or with a wrong one, or
/// without the `Bearer` scheme) gets 401 and deploys nothing; `/health` and `/metrics` stay
/// open; the same requests with the token work, and `weir plugin` sends the token from the
/// configured file.
#[test]
fn admin_requests_without_the_token_get_401_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = token_file(dir.path(), TOKEN);
    let mut weir = Weir::builder()
        .env("WEIR_ADMIN_TOKEN_FILE", &file)
        .start()
        .unwrap();
    let addr = weir.admin_addr().unwrap();
    assert_eq!(http_get(addr, "/health").unwrap().0, 200);
    assert_eq!(http_get(addr, "/metrics").unwrap().0, 200);
    let module = std::fs::read(plugin_wasm("passthrough")).unwrap();
    let binding = br#"{"topics": ["guarded"], "plugins": [{"module": "intruder"}]}"#;
    let wrong = format!("{TOKEN}0");
    for token in [None, Some(wrong.as_str()), Some("")] {
        for (method, path, body) in [
            ("PUT", "/plugins/modules/intruder", &module[..]),
            ("PUT", "/plugins/bindings/intruder", &binding[..]),
            ("DELETE", "/plugins/bindings/intruder", &b""[..]),
            ("GET", "/plugins", &b""[..]),
        ] {
            let (status, text) =
                http_request_with_token(addr, token, (method, path, body)).unwrap();
            assert_eq!(status, 401, "{method} {path} with {token:?}: {text}");
            assert!(text.contains("admin.token_file"), "{text}");
        }
    }
    // Nothing was deployed; the token opens the same doors.
    let with_token = |method, path, body| {
        http_request_with_token(addr, Some(TOKEN), (method, path, body)).unwrap()
    };
    let (status, listed) = with_token("GET", "/plugins", &b""[..]);
    assert_eq!(status, 200, "{listed}");
    assert!(!listed.contains("intruder"), "{listed}");
    let (status, text) = with_token("PUT", "/plugins/modules/intruder", &module[..]);
    assert_eq!(status, 200, "{text}");
    // `weir plugin list` reads the token from the configured file; without it, it is refused.
    let admin = addr.to_string();
    let list = ["plugin", "list", "--admin", admin.as_str()];
    let env = [("WEIR_ADMIN_TOKEN_FILE", file.as_str())];
    let (code, output) = run_weir(&list, &env, dir.path()).unwrap();
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("intruder"), "{output}");
    let (code, output) = run_weir(&list, &[], dir.path()).unwrap();
    assert_ne!(code, 0, "{output}");
    assert!(output.contains("401"), "{output}");
}

/// `admin.metrics_require_token`: `/metrics` needs the token too; `/health` never does.
#[test]
fn metrics_can_require_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let file = token_file(dir.path(), TOKEN);
    let mut weir = Weir::builder()
        .env("WEIR_ADMIN_TOKEN_FILE", &file)
        .env("WEIR_ADMIN_METRICS_REQUIRE_TOKEN", "true")
        .start()
        .unwrap();
    let addr = weir.admin_addr().unwrap();
    assert_eq!(http_get(addr, "/health").unwrap().0, 200);
    assert_eq!(http_get(addr, "/metrics").unwrap().0, 401);
    let (status, text) =
        http_request_with_token(addr, Some(TOKEN), ("GET", "/metrics", b"")).unwrap();
    assert_eq!(status, 200);
    assert!(text.contains("weir_"), "{text}");
}

/// Without a token the admin API may only listen on loopback: any other address, or a token
/// file with too short a token, stops Weir at start with the reason.
#[test]
fn an_unguarded_admin_listener_off_loopback_refuses_to_start() {
    let mut weir = Weir::builder()
        .env("WEIR_ADMIN_LISTEN", "0.0.0.0:0")
        .spawn()
        .unwrap();
    assert_eq!(weir.wait_exit().unwrap().code(), Some(1));
    weir.wait_for_log("admin.token_file is not set").unwrap();

    let dir = tempfile::tempdir().unwrap();
    let file = token_file(dir.path(), "short");
    let mut weir = Weir::builder()
        .env("WEIR_ADMIN_LISTEN", "0.0.0.0:0")
        .env("WEIR_ADMIN_TOKEN_FILE", &file)
        .spawn()
        .unwrap();
    assert_eq!(weir.wait_exit().unwrap().code(), Some(1));
    weir.wait_for_log("it needs at least 16").unwrap();
}
