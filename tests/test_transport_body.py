"""Reading a reply's body under the request's deadline never touches a connection that
urllib3 has already handed back to its pool (#25.7's deadline, with several workers)."""

from __future__ import annotations

import socket
import time

import requests

from airflow_provider_meti.transport import _read_body


class ReleasingRaw:
    """A urllib3 reply body: once its last byte is read, the connection goes back to the
    pool (``connection`` becomes None), and there another thread closes its socket, as a
    pool does with a connection the server had closed (a 503 with ``Connection: close``)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks
        self._ours, self._theirs = socket.socketpair()
        self.connection = type("Connection", (), {"sock": self._ours})()

    def read1(self, amount: int, decode_content: bool = True) -> bytes:
        if not self._chunks:
            return b""
        chunk = self._chunks.pop(0)
        if not self._chunks:
            self.connection = None  # released to the pool...
            self._ours.close()  # ...where another worker found it dropped and closed it
            self._theirs.close()
        return chunk


def test_the_body_is_read_after_the_connection_went_back_to_the_pool():
    response = requests.Response()
    response.raw = ReleasingRaw([b'{"message": ', b'"busy"}'])

    _read_body(response, time.monotonic() + 30)  # raised OSError: Bad file descriptor

    assert response.json() == {"message": "busy"}
