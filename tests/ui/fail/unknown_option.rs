#[sse::subscribe("yo", keep_alive = 30)]
async fn yo_events() {}

fn main() {}
