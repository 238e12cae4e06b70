"""Every way a publish can fail is a PublishError with its cause chained, against real sockets
on loopback that misbehave as servers do: one that accepts and never answers, one that stops
halfway through its answer, one that does not speak HTTP, and no server at all."""

from __future__ import annotations

import asyncio
import socket
import threading
from contextlib import contextmanager
from typing import Iterator, Optional

import pytest

import sse_publish as sse


@contextmanager
def misbehaving_server(answer: Optional[bytes]) -> Iterator[str]:
    """A server on a free loopback port that reads a request, writes `answer` (nothing if None)
    and then holds the connection open until the test is done."""
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            if answer is not None:
                connection.sendall(answer)
            done.wait(30)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/publish"
    finally:
        done.set()
        thread.join(30)
        listener.close()


def test_a_server_that_accepts_and_never_answers_is_a_timeout_publish_error():
    with misbehaving_server(None) as url:
        with pytest.raises(sse.PublishError, match="no answer") as failed:
            sse.Publisher(url, "token", timeout=0.3).publish("g", None, "x")
    assert failed.value.status is None
    assert isinstance(failed.value.__cause__, (TimeoutError, socket.timeout, OSError))
    assert "timed out" in str(failed.value.__cause__)


def test_an_error_answer_cut_short_is_a_publish_error():
    half = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 100\r\n\r\n{\"err"
    with misbehaving_server(half) as url:
        with pytest.raises(sse.PublishError, match="no answer"):
            sse.Publisher(url, "token", timeout=0.3).publish("g", None, "x")


def test_an_answer_that_is_not_http_is_a_publish_error():
    with misbehaving_server(b"HELLO\r\n\r\n") as url:
        with pytest.raises(sse.PublishError, match="no answer"):
            sse.Publisher(url, "token", timeout=5).publish("g", None, "x")


def test_an_answer_without_ids_is_a_publish_error():
    body = b'{"id": 1}'
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    with misbehaving_server(answer) as url:
        with pytest.raises(sse.PublishError, match="unexpected answer"):
            sse.Publisher(url, "token", timeout=5).publish("g", None, "x")


def test_no_server_is_a_publish_error():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    with pytest.raises(sse.PublishError, match="no answer"):
        sse.Publisher(f"http://127.0.0.1:{port}/publish", "token").publish("g", None, "x")


def test_asyncio_times_out_the_same_way():
    with misbehaving_server(None) as url:
        publisher = sse.AsyncPublisher(url, "token", timeout=0.3)
        with pytest.raises(sse.PublishError, match="no answer"):
            asyncio.run(publisher.publish("g", None, "x"))
