#[sse::subscribe("yo/events")]
async fn yo_events() {}

fn main() {}
