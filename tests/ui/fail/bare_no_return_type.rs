#[sse::subscribe]
async fn yo_events() {}

fn main() {}
