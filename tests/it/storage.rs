//! The log inside the real process: opened before the broker reports ready, configured by
//! `storage.*` keys, closed cleanly on shutdown.

use weir_tests::{Weir, http_get, run_weir};

#[test]
fn the_log_is_open_before_the_broker_is_ready() {
    let mut weir = Weir::builder().start().unwrap();
    let opened = weir.wait_for_log("log opened at").unwrap();
    assert!(opened.contains("Fsync"), "{opened}");
    assert!(weir.cwd().join("weir-data/log/data.mdb").exists());
    let addr = weir.admin_addr().unwrap();
    assert_eq!(http_get(addr, "/health").unwrap().0, 200);
    weir.signal(libc::SIGTERM).unwrap();
    assert_eq!(weir.wait_exit().unwrap().code(), Some(0));
}

#[test]
fn relaxed_durability_starts_syncs_and_stops_cleanly() {
    let mut weir = Weir::builder()
        .env("WEIR_STORAGE_DURABILITY", "relaxed")
        .env("WEIR_STORAGE_RELAXED_SYNC_INTERVAL_MS", "20")
        .start()
        .unwrap();
    let opened = weir.wait_for_log("log opened at").unwrap();
    assert!(opened.contains("Relaxed"), "{opened}");
    weir.signal(libc::SIGINT).unwrap();
    assert_eq!(weir.wait_exit().unwrap().code(), Some(0));
}

#[test]
fn a_restart_reopens_the_same_log() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let mut weir = Weir::builder().cwd(dir.path()).start().unwrap();
        weir.signal(libc::SIGTERM).unwrap();
        assert_eq!(weir.wait_exit().unwrap().code(), Some(0));
        assert!(
            !weir.log().iter().any(|line| line.contains("repaired")),
            "{:?}",
            weir.log()
        );
    }
}

#[test]
fn bad_storage_values_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) =
        run_weir(&[], &[("WEIR_STORAGE_DURABILITY", "sometimes")], dir.path()).unwrap();
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("`sometimes` is not a durability mode"),
        "{out}"
    );
    std::fs::write(
        dir.path().join("w.toml"),
        "[storage]\ncommit_bytes_max = 0\n",
    )
    .unwrap();
    let (code, out) = run_weir(&["-c", "w.toml"], &[], dir.path()).unwrap();
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("w.toml:2: key `storage.commit_bytes_max`: must be at least 1"),
        "{out}"
    );
}
