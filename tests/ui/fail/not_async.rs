#[sse::subscribe("yo")]
fn yo_events() {}

fn main() {}
