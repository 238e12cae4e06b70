#[sse::subscribe("ticker", rewind = "one")]
async fn ticker() {}

fn main() {}
