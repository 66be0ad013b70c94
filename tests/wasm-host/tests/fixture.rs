//! Drives the fixture filter (`fixture-filter/`) through the host's public API.
//! The fixture is built for wasm32-wasip1 once per test run (see `fixture_wasm`).
// Tests fail loudly: unwrap, expect and panic are how they report (the workspace denies
// them outside tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proxy_wasm_test_host::{
    headers, Action, Direction, LogLevel, LogSource, StreamKind, Vm, VmOptions, World,
};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

/// Builds the fixture with the same cargo, into `<target dir>/fixture-filter`, once.
fn fixture_wasm() -> &'static [u8] {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    WASM.get_or_init(|| {
        let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        // The test binary lives in <target>/<profile>/deps/.
        let exe = std::env::current_exe().unwrap();
        let target_dir = exe.ancestors().nth(3).unwrap().join("fixture-filter");
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip1",
                "--manifest-path",
            ])
            .arg(manifest_dir.join("fixture-filter/Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target_dir)
            .status()
            .expect("running cargo for the fixture");
        assert!(
            status.success(),
            "building the fixture filter failed (is wasm32-wasip1 installed?)"
        );
        std::fs::read(target_dir.join("wasm32-wasip1/release/fixture_filter.wasm")).unwrap()
    })
}

fn load(world: &World, opts: VmOptions) -> Vm {
    Vm::load(world, fixture_wasm(), opts).expect("fixture loads")
}

fn vm() -> Vm {
    load(&World::new(), VmOptions::default())
}

fn get(path: &str) -> headers::Headers {
    headers::request("GET", path)
}

#[test]
fn start_sequence_passes_configuration_and_properties() {
    let opts = VmOptions::default()
        .vm_config("vm-cfg")
        .plugin_config("x=1")
        .property(&["plugin_name"], "mine");
    let vm = load(&World::new(), opts);
    assert!(
        vm.logged("vm_start size=6 config=vm-cfg"),
        "{:?}",
        vm.logs()
    );
    assert!(vm.logged("configure plugin_name=mine"));
    assert_eq!(vm.hostcall_counts().get("proxy_define_metric"), Some(&3));
    assert!(vm.memory_size() > 0);
}

#[test]
fn rejected_configuration_fails_load_with_logs() {
    let err = Vm::load(
        &World::new(),
        fixture_wasm(),
        VmOptions::default().plugin_config("fail=1"),
    )
    .err()
    .unwrap();
    let message = format!("{err:#}");
    assert!(
        message.contains("proxy_on_configure returned false"),
        "{message}"
    );
    assert!(message.contains("rejecting configuration"), "{message}");
}

#[test]
fn request_headers_reflect_add_replace_remove() {
    let mut vm = vm();
    let s = vm.new_stream().unwrap();
    vm.set_stream_property(s, &["xds", "route_name"], "route-a")
        .unwrap();
    let request = headers::with(
        headers::with(get("/plain"), "X-Replace-Me", "old"),
        "x-remove-me",
        "gone",
    );
    assert_eq!(
        vm.request_headers(s, &request, true).unwrap(),
        Action::Continue
    );
    let map = vm.request_header_map(s);
    assert!(
        map.contains(&("x-replace-me".into(), "replaced".into())),
        "{map:?}"
    );
    assert!(!map.iter().any(|(k, _)| k == "x-remove-me"));
    assert_eq!(vm.request_header(s, "x-fixture-seen").as_deref(), Some("1"));
    assert_eq!(vm.request_header(s, "x-route").as_deref(), Some("route-a"));
    assert_eq!(
        vm.filter_state(s).get("fixture.path").map(Vec::as_slice),
        Some(&b"/plain"[..])
    );
}

#[test]
fn stream_property_does_not_leak_to_other_streams() {
    let mut vm = vm();
    let (a, b) = (vm.new_stream().unwrap(), vm.new_stream().unwrap());
    vm.set_stream_property(a, &["xds", "route_name"], "only-a")
        .unwrap();
    vm.request_headers(b, &get("/"), true).unwrap();
    assert_eq!(vm.request_header(b, "x-route"), None);
}

#[test]
fn request_body_is_buffered_until_end_of_stream() {
    let world = World::new();
    let mut vm = load(&world, VmOptions::default());
    let s = vm.new_stream().unwrap();
    vm.request_headers(s, &headers::request("POST", "/body"), false)
        .unwrap();
    assert_eq!(vm.request_body(s, b"hello", false).unwrap(), Action::Pause);
    assert!(vm.forwarded_request_body(s).is_empty());
    assert_eq!(vm.buffered_body(s, Direction::Request), b"hello");
    assert_eq!(
        vm.request_body(s, b" world", true).unwrap(),
        Action::Continue
    );
    assert!(vm.logged("request body size=5 eos=false"));
    assert!(
        vm.logged("request body size=11 eos=true"),
        "second callback sees the whole buffer"
    );
    assert_eq!(vm.forwarded_request_body(s), b"hello world");
    assert_eq!(world.histogram("fixture_body_bytes"), Some(vec![11]));
}

#[test]
fn set_buffer_bytes_rewrites_the_released_body() {
    let mut vm = vm();
    let mut stream = vm.stream().unwrap();
    stream
        .request_headers(&headers::request("POST", "/"), false)
        .unwrap();
    stream.request_body(b"please REDACT ", false).unwrap();
    stream.request_body(b"this", true).unwrap();
    let id = stream.id();
    assert_eq!(vm.forwarded_request_body(id), b"[redacted]");
}

#[test]
fn streamed_response_chunks_are_modified_and_released() {
    let mut vm = vm();
    let s = vm.new_stream().unwrap();
    vm.request_headers(s, &get("/upper"), true).unwrap();
    vm.response_headers(s, &headers::response(200), false)
        .unwrap();
    assert_eq!(
        vm.response_header(s, "x-fixture-response").as_deref(),
        Some("1")
    );
    vm.response_body(s, b"data: a\n", false).unwrap();
    assert_eq!(
        vm.forwarded_response_body(s),
        b"DATA: A\n",
        "each chunk released on Continue"
    );
    vm.response_body(s, b"data: b\n", true).unwrap();
    assert_eq!(vm.forwarded_response_body(s), b"DATA: A\nDATA: B\n");
}

#[test]
fn trailers_release_the_buffered_body_and_can_be_modified() {
    let mut vm = vm();
    let s = vm.new_stream().unwrap();
    vm.request_headers(s, &headers::request("POST", "/"), false)
        .unwrap();
    vm.request_body(s, b"abc", false).unwrap();
    assert_eq!(
        vm.request_trailers(s, &[("grpc-status", "0")]).unwrap(),
        Action::Continue
    );
    assert_eq!(vm.forwarded_request_body(s), b"abc");
    let trailers = vm.header_map(s, Direction::Request, true);
    assert!(
        trailers.contains(&("x-trailer-seen".into(), "1".into())),
        "{trailers:?}"
    );
}

#[test]
fn local_replies_are_recorded() {
    let mut vm = vm();
    let s = vm.new_stream().unwrap();
    assert_eq!(
        vm.request_headers(s, &get("/deny"), true).unwrap(),
        Action::Pause
    );
    let reply = vm.local_reply(s).expect("local reply");
    assert_eq!(
        (reply.status_code, reply.body.as_slice(), reply.grpc_status),
        (403, &b"denied"[..], None)
    );
    assert_eq!(
        reply.headers,
        vec![("x-deny".to_string(), "yes".to_string())]
    );

    let g = vm.new_stream().unwrap();
    vm.request_headers(g, &get("/grpc-deny"), true).unwrap();
    let reply = vm.local_reply(g).unwrap();
    assert_eq!(
        (reply.status_code, reply.grpc_status, reply.body.as_slice()),
        (200, Some(7), &b"nope"[..])
    );
}

#[test]
fn callout_pauses_the_request_until_the_response_resumes_it() {
    let mut vm = vm();
    let s = vm.new_stream().unwrap();
    assert_eq!(
        vm.request_headers(s, &headers::request("POST", "/callout"), false)
            .unwrap(),
        Action::Pause
    );
    let calls = vm.pending_http_calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(
        (call.upstream.as_str(), call.header(":path"), call.timeout),
        ("authz", Some("/check"), Duration::from_millis(250))
    );
    // Envoy (without allow_on_headers_stop_iteration) delivers no body while stopped.
    assert!(vm.request_body(s, b"payload", true).is_err());

    vm.http_call_response(call.token, 200, &[("x-reason", "fine")], b"ok")
        .unwrap();
    assert_eq!(vm.continue_calls(s), vec![StreamKind::HttpRequest]);
    assert_eq!(vm.request_header(s, "x-authz").as_deref(), Some("ok"));
    assert_eq!(
        vm.request_body(s, b"payload", true).unwrap(),
        Action::Continue
    );
    assert_eq!(vm.forwarded_request_body(s), b"payload");
    assert!(vm.pending_http_calls().is_empty());
    assert!(
        vm.http_call_response(call.token, 200, &[("a", "b")], b"")
            .is_err(),
        "token already answered"
    );
}

#[test]
fn callout_failure_is_delivered_without_headers() {
    let mut vm = vm();
    let s = vm.new_stream().unwrap();
    vm.request_headers(s, &get("/callout"), true).unwrap();
    let token = vm.pending_http_calls()[0].token;
    vm.http_call_failure(token).unwrap();
    assert_eq!(vm.local_reply(s).map(|r| r.status_code), Some(503));
    assert!(vm.continue_calls(s).is_empty());
}

#[test]
fn callout_without_required_pseudo_headers_is_bad_argument() {
    let mut vm = vm();
    let s = vm.new_stream().unwrap();
    vm.request_headers(s, &get("/bad-callout"), true).unwrap();
    assert!(
        vm.logged("bad callout result=Err(BadArgument)"),
        "{:?}",
        vm.logs()
    );
    assert!(vm.pending_http_calls().is_empty());
}

#[test]
fn complete_runs_on_log_and_cancels_pending_callouts() {
    let world = World::new();
    let mut vm = load(&world, VmOptions::default());
    let s = vm.new_stream().unwrap();
    vm.request_headers(s, &get("/callout"), true).unwrap();
    assert_eq!(world.gauge("fixture_inflight"), Some(1));
    vm.complete(s).unwrap();
    assert!(vm.logged("on_log path=/callout status=None"));
    assert_eq!(world.gauge("fixture_inflight"), Some(0));
    assert!(vm.pending_http_calls().is_empty());
    assert!(
        vm.request_body(s, b"late", true).is_err(),
        "completed streams reject events"
    );
    let counts = vm.hostcall_counts();
    assert!(counts.contains_key("proxy_get_header_map_value"));
}

#[test]
fn ticks_follow_the_world_clock_and_dispatch_callouts() {
    let world = World::new();
    let mut vm = load(&world, VmOptions::default().plugin_config("tick_ms=500"));
    assert_eq!(vm.tick_period(), Some(Duration::from_millis(500)));
    world.set_time(UNIX_EPOCH + Duration::from_secs(1_800_000_000));
    world.advance(Duration::from_secs(5));
    vm.tick().unwrap();
    let call = vm
        .pending_http_calls()
        .pop()
        .expect("tick dispatched a callout");
    assert_eq!(
        (call.upstream.as_str(), call.body.as_slice()),
        ("collector", &b"tick at 1800000005"[..])
    );
    assert_eq!(call.context_id, 1, "dispatched from the root context");
    vm.http_call_response(call.token, 204, &[("a", "b")], b"")
        .unwrap();
    assert_eq!(world.shared_data("last_callout_status").unwrap().0, b"204");
    assert_eq!(world.counter("fixture_ticks"), Some(1));
}

#[test]
fn cas_conflicts_injected_between_get_and_set_are_retried() {
    let world = World::new();
    let mut vm = load(&world, VmOptions::default());
    world.set_shared_data("cb_counter", "1");
    let interfered = AtomicBool::new(false);
    world.on_shared_data_get(move |world, key| {
        if key == "cb_counter" && !interfered.swap(true, Ordering::SeqCst) {
            world.set_shared_data("cb_counter", "10");
        }
    });
    let s = vm.new_stream().unwrap();
    vm.request_headers(s, &get("/cas"), true).unwrap();
    assert_eq!(vm.request_header(s, "x-cas-retries").as_deref(), Some("1"));
    assert_eq!(world.shared_data("cb_counter").unwrap().0, b"11");
}

#[test]
fn vms_of_one_world_share_metrics_and_shared_data() {
    let world = World::new();
    let mut vms = [
        load(&world, VmOptions::default()),
        load(&world, VmOptions::default()),
    ];
    for vm in &mut vms {
        let s = vm.new_stream().unwrap();
        vm.request_headers(s, &get("/cas"), true).unwrap();
    }
    assert_eq!(world.counter("fixture_requests_total"), Some(2));
    assert_eq!(world.shared_data("cb_counter").unwrap().0, b"2");
    assert_eq!(world.metrics().len(), 3);
}

#[test]
fn a_trap_kills_the_vm() {
    let mut vm = vm();
    let s = vm.new_stream().unwrap();
    let err = vm.request_headers(s, &get("/panic"), true).unwrap_err();
    assert!(
        format!("{err:#}").contains("fixture panic on purpose"),
        "{err:#}"
    );
    assert!(vm.trapped());
    let again = vm.new_stream().unwrap_err();
    assert!(format!("{again}").contains("VM is dead"), "{again}");
}

#[test]
fn unknown_imports_are_stubbed_as_unimplemented() {
    let mut vm = vm();
    let s = vm.new_stream().unwrap();
    vm.request_headers(s, &get("/unknown"), true).unwrap();
    assert!(vm.logged("unknown call status=12"));
    assert_eq!(vm.unimplemented_calls(), ["env.proxy_fixture_unknown_call"]);
}

#[test]
fn wasi_clock_randomness_and_stdio_are_virtualized() {
    let world = World::new();
    world.set_time(UNIX_EPOCH + Duration::from_secs(2_000_000_000));
    let mut vm = load(&world, VmOptions::default());
    let s = vm.new_stream().unwrap();
    vm.request_headers(s, &get("/wasi"), true).unwrap();
    assert_eq!(
        vm.request_header(s, "x-wasi-time").as_deref(),
        Some("2000000000")
    );
    let stdout = vm
        .logs()
        .iter()
        .find(|l| l.source == LogSource::Stdout)
        .expect("stdout captured");
    assert_eq!(
        (stdout.level, stdout.message.as_str()),
        (LogLevel::Info, "hello from stdout")
    );
    assert!(vm
        .logs()
        .iter()
        .any(|l| l.source == LogSource::Stderr && l.message == "hello from stderr"));
    for call in ["wasi:clock_time_get", "wasi:random_get", "wasi:fd_write"] {
        assert!(
            vm.hostcall_counts().contains_key(call),
            "{call} missing: {:?}",
            vm.hostcall_counts()
        );
    }
}

#[test]
fn close_stream_is_recorded() {
    let mut vm = vm();
    let s = vm.new_stream().unwrap();
    vm.request_headers(s, &get("/close"), true).unwrap();
    assert_eq!(vm.close_calls(s), vec![StreamKind::HttpRequest]);
}

#[test]
fn log_level_drops_lower_messages() {
    let mut vm = load(
        &World::new(),
        VmOptions {
            log_level: LogLevel::Warn,
            ..VmOptions::default()
        },
    );
    let s = vm.new_stream().unwrap();
    vm.request_headers(s, &get("/"), true).unwrap();
    assert!(
        vm.logs().iter().all(|l| l.level >= LogLevel::Warn),
        "{:?}",
        vm.logs()
    );
    assert!(vm.take_logs().is_empty() || vm.logs().is_empty());
}

fn request_lifecycle_fuel(vm: &mut Vm) -> u64 {
    vm.reset_fuel();
    let s = vm.new_stream().unwrap();
    vm.request_headers(s, &headers::request("POST", "/"), false)
        .unwrap();
    vm.request_body(s, b"{}", true).unwrap();
    vm.response_headers(s, &headers::response(200), true)
        .unwrap();
    vm.complete(s).unwrap();
    vm.fuel_consumed()
}

#[test]
fn fuel_counts_are_deterministic_and_limits_trap() {
    let (mut a, mut b) = (vm(), vm());
    let fuel = request_lifecycle_fuel(&mut a);
    assert!(fuel > 1000, "{fuel}");
    assert_eq!(fuel, request_lifecycle_fuel(&mut b));
    a.reset_fuel();
    assert_eq!(a.fuel_consumed(), 0);

    let mut limited = vm();
    limited.set_fuel_limit(Some(100));
    let err = limited.new_stream().unwrap_err();
    assert!(format!("{err:#}").contains("fuel"), "{err:#}");
    assert!(limited.trapped());
}
