//! The bench must not rot: its quick mode runs every workload, small, against our server, the
//! axum baseline and the floor, over real loopback TCP. It exits non-zero unless every event
//! reached every subscriber. Only correctness is checked here, never timing.

use std::process::Command;

/// Runs `sse-bench quick --out <tmp>/<dir>` with `args`: whether it succeeded, what it printed
/// (stdout, stderr) and where it wrote.
fn quick(dir: &str, args: &[&str]) -> (bool, String, String, std::path::PathBuf) {
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(dir);
    let run = Command::new(env!("CARGO_BIN_EXE_sse-bench"))
        .arg("quick")
        .arg("--out")
        .arg(&out)
        .args(args)
        .output()
        .expect("sse-bench runs");
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    (run.status.success(), stdout, stderr, out)
}

#[test]
fn quick_bench_delivers_every_event_and_reports_each_workload() {
    let (success, stdout, stderr, out) = quick("bench-quick", &[]);
    assert!(success, "sse-bench quick failed\n{stdout}\n{stderr}");
    for workload in ["Fan-out", "Latency", "Many groups", "Capacity", "Churn"] {
        assert!(
            stdout.contains(workload),
            "no {workload} table in\n{stdout}"
        );
    }
    for system in ["| sse |", "| axum-baseline |", "| floor |"] {
        assert!(stdout.contains(system), "no row {system} in\n{stdout}");
    }
    let chart = std::fs::read_to_string(out.join("fanout.svg")).expect("the chart was written");
    assert!(chart.starts_with("<svg"), "fanout.svg is not an SVG");
}

#[test]
fn pinned_the_servers_and_the_load_generator_run_on_cores_of_their_own() {
    let args = [
        "--pin",
        "--only",
        "fanout",
        "--deliveries",
        "4000",
        "sse",
        "floor",
    ];
    let (success, stdout, stderr, _) = quick("bench-quick-pinned", &args);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    if cores < 2 {
        assert!(!success, "one core cannot be split\n{stderr}");
        assert!(stderr.contains("--pin: needs 2 cores at least"), "{stderr}");
        return;
    }
    // A server that did not start on the servers' cores fails the run.
    assert!(success, "sse-bench quick --pin failed\n{stdout}\n{stderr}");
    assert!(
        stderr.contains("pinned: the servers on cores"),
        "no word of the split in\n{stderr}"
    );
    for system in ["| sse |", "| floor |"] {
        assert!(stdout.contains(system), "no row {system} in\n{stdout}");
    }
    assert!(
        stdout.contains("(load generator's)"),
        "no load generator's CPU in\n{stdout}"
    );
}
