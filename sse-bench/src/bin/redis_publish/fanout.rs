//! What a message costs Redis for each connection subscribed to its channel: what the
//! publishing script's `PUBLISH` adds per listening process. Raw RESP over TCP, no library: N
//! connections `SUBSCRIBE` one channel (threads read and drop what they get), one connection
//! sends `PUBLISH` of a 120-byte message, pipelined 200 at a time (writes to subscribers
//! coalesce, as under load) or one at a time (each message its own write, as when quiet).

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use crate::servers::{Error, Redis};

/// Prints Redis CPU µs per message with 0, 1, 10 and 40 subscribed connections.
pub(crate) fn measure() -> Result<(), Error> {
    let redis = Redis::single()?;
    let channel = "sse:{fanout}:events";
    let message = format!("1796172270110783:100 {}", "x".repeat(100));
    println!();
    println!("## Redis CPU per message, by subscribed connections");
    println!();
    println!("| subscribed connections | pipelined: µs/message | one at a time: µs/message |");
    println!("|---:|---:|---:|");
    let mut subscribers = Vec::new();
    for wanted in [0, 1, 10, 40] {
        while subscribers.len() < wanted {
            let mut subscriber = TcpStream::connect(("127.0.0.1", redis.port))?;
            subscriber.write_all(&command(&["SUBSCRIBE", channel]))?;
            let mut reader = subscriber.try_clone()?;
            std::thread::spawn(move || {
                let mut buffer = vec![0; 1 << 16];
                while matches!(reader.read(&mut buffer), Ok(n) if n > 0) {}
            });
            subscribers.push(subscriber);
        }
        std::thread::sleep(Duration::from_millis(300));
        let publish = command(&["PUBLISH", channel, &message]);
        let pipelined = cost(&redis, &publish, 40_000, 200)?;
        let one_at_a_time = cost(&redis, &publish, 5_000, 1)?;
        println!("| {wanted} | {pipelined:.2} | {one_at_a_time:.2} |");
    }
    Ok(())
}

/// Redis CPU µs per message for `count` publishes sent `together` at a time.
fn cost(redis: &Redis, publish: &[u8], count: usize, together: usize) -> Result<f64, Error> {
    let mut publisher = TcpStream::connect(("127.0.0.1", redis.port))?;
    let batch = publish.repeat(together);
    let before = redis.cpu()?;
    let mut buffer = vec![0; 1 << 16];
    for _ in 0..count / together {
        publisher.write_all(&batch)?;
        // Each reply is one line, `:<subscribers>\r\n`.
        let mut replies = 0;
        while replies < together {
            let n = publisher.read(&mut buffer)?;
            replies += buffer[..n].iter().filter(|&&b| b == b'\n').count();
        }
    }
    Ok((redis.cpu()? - before).as_secs_f64() * 1e6 / count as f64)
}

fn command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend(format!("${}\r\n{arg}\r\n", arg.len()).into_bytes());
    }
    out
}
