//! The host against real components: the example plugins built by `cargo xtask plugins`
//! (plugins/target/wasm).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use weir_core::plugin::{Message, PluginCall, PluginFailure, RejectKind, Verdict, layout};
use weir_plugin_host::{EngineSettings, Limits, PluginEngine, PluginError, World};

const MIB: usize = 1024 * 1024;

fn wasm(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins/target/wasm")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the plugins first: cargo xtask plugins",
            path.display()
        )
    })
}

fn engine(cache_dir: Option<PathBuf>) -> PluginEngine {
    PluginEngine::new(&EngineSettings {
        instances_max: 16,
        memory_bytes_max: 64 * MIB,
        cache_dir,
    })
    .expect("engine")
}

const LIMITS: Limits = Limits {
    deadline_ticks: 50,
    memory_bytes_max: 16 * MIB,
};

fn config(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn run(instance: &mut impl PluginCall, batch: &[Message]) -> Result<Vec<Verdict>, PluginFailure> {
    instance.process(&layout::write_batch(batch), batch.len())
}

/// Ticks the engine's epoch every millisecond until dropped, as the server does.
struct Ticker(Arc<AtomicBool>);

impl Ticker {
    fn start(engine: &PluginEngine) -> Ticker {
        let stop = Arc::new(AtomicBool::new(false));
        let (engine, flag) = (engine.clone(), stop.clone());
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(1));
                engine.tick();
            }
        });
        Ticker(stop)
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn a_rust_plugin_filters_a_batch_through_the_bytes_world() {
    let engine = engine(None);
    let plugin = engine
        .load("threshold-filter", &wasm("threshold-filter"))
        .unwrap();
    assert_eq!(plugin.world(), World::Bytes);
    assert_eq!(plugin.version().len(), 12);
    let mut instance = plugin
        .instantiate(&config(&[("field", "t"), ("max", "30")]), LIMITS)
        .unwrap();
    let verdicts = run(
        &mut instance,
        &[
            Message::new("s", r#"{"t": 20}"#),
            Message::new("s", r#"{"t": 40}"#),
            Message::new("s", "x"),
        ],
    )
    .unwrap();
    assert_eq!(verdicts[..2], [Verdict::Keep, Verdict::Drop]);
    assert!(matches!(&verdicts[2], Verdict::Reject(r) if r.kind == RejectKind::Invalid));
    // The instance is warm: a second batch on the same instance.
    let again = run(&mut instance, &[Message::new("s", r#"{"t": 1}"#)]).unwrap();
    assert_eq!(again, [Verdict::Keep]);
}

#[test]
fn a_configuration_init_refuses_fails_instantiation_with_its_reason() {
    let engine = engine(None);
    let plugin = engine
        .load("threshold-filter", &wasm("threshold-filter"))
        .unwrap();
    let refused = plugin
        .instantiate(&config(&[("min", "ten")]), LIMITS)
        .unwrap_err();
    assert!(
        matches!(&refused, PluginError::Init(m) if m.contains("min")),
        "{refused}"
    );
}

#[test]
fn bytes_that_are_no_component_of_the_contract_are_refused() {
    let engine = engine(None);
    let garbage = engine.load("garbage", b"\0asm not really").unwrap_err();
    assert!(matches!(garbage, PluginError::Invalid(_)), "{garbage}");
    // A core module (not a component) exporting a function.
    let core = b"\0asm\x01\0\0\0";
    assert!(matches!(
        engine.load("core", core).unwrap_err(),
        PluginError::Invalid(_)
    ));
}

#[test]
fn a_loop_is_stopped_at_its_deadline_and_memory_growth_at_its_cap() {
    let engine = engine(None);
    let _ticker = Ticker::start(&engine);
    let plugin = engine.load("misbehave", &wasm("misbehave")).unwrap();
    let mut looping = plugin
        .instantiate(&config(&[("mode", "loop"), ("trigger", "spin")]), LIMITS)
        .unwrap();
    assert_eq!(
        run(&mut looping, &[Message::new("s", "ok")]).unwrap(),
        [Verdict::Keep]
    );
    assert_eq!(
        run(&mut looping, &[Message::new("s", "spin")]),
        Err(PluginFailure::Timeout)
    );
    let mut growing = plugin
        .instantiate(&config(&[("mode", "grow")]), LIMITS)
        .unwrap();
    assert_eq!(
        run(&mut growing, &[Message::new("s", "x")]),
        Err(PluginFailure::MemoryCap)
    );
    let mut trapping = plugin
        .instantiate(&config(&[("mode", "trap")]), LIMITS)
        .unwrap();
    assert!(matches!(
        run(&mut trapping, &[Message::new("s", "x")]),
        Err(PluginFailure::Trap(_))
    ));
}

#[test]
fn compiled_components_are_cached_on_disk_and_loaded_from_there() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = wasm("passthrough");
    let first = engine(Some(dir.path().to_owned()));
    first.load("passthrough", &bytes).unwrap();
    let cached: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(cached[0].extension().is_some_and(|e| e == "cwasm"));
    // A new engine (a restart) loads it from the cache; a damaged file is compiled again.
    let second = engine(Some(dir.path().to_owned()));
    let plugin = second.load("passthrough", &bytes).unwrap();
    let mut instance = plugin.instantiate(&[], LIMITS).unwrap();
    assert_eq!(
        run(&mut instance, &[Message::new("s", "x")]).unwrap(),
        [Verdict::Keep]
    );
    std::fs::write(&cached[0], b"damaged").unwrap();
    engine(Some(dir.path().to_owned()))
        .load("passthrough", &bytes)
        .unwrap();
    assert!(std::fs::read(&cached[0]).unwrap().len() > 100);
}
