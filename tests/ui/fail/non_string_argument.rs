#[sse::subscribe(yo)]
async fn yo_events() {}

fn main() {}
