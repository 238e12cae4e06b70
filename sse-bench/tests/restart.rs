//! The rolling restart must not rot: a small one against our server, two processes on a real
//! `redis-server`, one killed with `SIGKILL` and started again while events are published. The
//! program exits non-zero unless every client got every event exactly once and caught up after
//! moving; this checks that, and that the table says so. Only correctness, never timing.

use std::process::Command;

#[test]
fn clients_of_a_killed_process_resume_elsewhere_missing_and_repeating_nothing() {
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-restart");
    let run = Command::new(env!("CARGO_BIN_EXE_sse-bench"))
        .args([
            "restart",
            "--clients",
            "40",
            "--groups",
            "4",
            "--rate",
            "40",
        ])
        .args(["--retry-ms", "300", "--before", "0.5", "--after", "0.5"])
        .arg("--out")
        .arg(&out)
        .arg("sse")
        .output()
        .expect("sse-bench runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "sse-bench restart failed\n{stdout}\n{stderr}"
    );
    for row in [
        "| clients (on the killed process) | 40 (20) |",
        "| **missed** (clients; worst) | **0** (0; –) |",
        "| **received twice** (clients; worst) | **0** (0; –) |",
        "| never caught up; survivor's streams ended | 0; 0 |",
    ] {
        assert!(stdout.contains(row), "no row {row:?} in\n{stdout}");
    }
    let json = std::fs::read_to_string(out.join("restart.json")).expect("restart.json written");
    let (_sizes, outcomes): (serde_json::Value, Vec<serde_json::Value>) =
        serde_json::from_str(&json).expect("restart.json parses");
    let reopened = |key: &str| outcomes[0][key].as_u64().expect("a count");
    assert!(
        reopened("reopened_on_survivor") + reopened("reopened_on_restarted") >= 20,
        "every client of the killed process opened a stream again: {json}"
    );
}
