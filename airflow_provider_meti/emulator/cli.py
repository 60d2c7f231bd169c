"""``meti-emulator`` / ``python -m airflow_provider_meti.emulator``: serve until interrupted."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

from airflow_provider_meti.emulator.app import MetiEmulator
from airflow_provider_meti.emulator.faults import FAULT_KINDS
from airflow_provider_meti.emulator.state import (
    DEFAULT_AUDIENCE,
    ENVELOPE_EXTRAS,
    LIST_ENVELOPES,
    REPLY_SHAPES,
)

PASSWORD_ENV = "METI_EMULATOR_PASSWORD"
CLIENT_SECRET_ENV = "METI_EMULATOR_CLIENT_SECRET"


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = argparse.ArgumentParser(
        prog="meti-emulator",
        description=(
            "Serve a local emulation of the METI API (v1 and v2, with an OAuth2 token "
            "endpoint at /oauth/token) until SIGINT or SIGTERM."
        ),
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=8765, help="port; 0 picks a free one (default %(default)s)"
    )
    parser.add_argument(
        "--email", default="demo@meti.local", help="accepted email (default %(default)s)"
    )
    parser.add_argument(
        "--password",
        default=os.environ.get(PASSWORD_ENV, "demo-password"),
        help=f"accepted password (default: ${PASSWORD_ENV} or demo-password)",
    )
    parser.add_argument(
        "--client-id", default="demo-client", help="accepted v2 client id (default %(default)s)"
    )
    parser.add_argument(
        "--client-secret",
        default=os.environ.get(CLIENT_SECRET_ENV, "demo-client-secret"),
        help=f"accepted v2 client secret (default: ${CLIENT_SECRET_ENV} or demo-client-secret)",
    )
    parser.add_argument(
        "--audience",
        default=DEFAULT_AUDIENCE,
        help="audience the token endpoint accepts (default %(default)s)",
    )
    parser.add_argument("--token-ttl", type=float, default=3600, help="token lifetime in seconds")
    parser.add_argument("--seed", type=int, default=0, help="seed of source ids and faults")
    parser.add_argument(
        "--fault-rate", type=float, default=0.0, help="share of /sources requests that fail (0..1)"
    )
    parser.add_argument(
        "--fault-kinds",
        default="503,429,drop",
        help=f"comma-separated, among {','.join(FAULT_KINDS)} (default %(default)s)",
    )
    parser.add_argument(
        "--retry-after", type=float, default=1.0, help="Retry-After seconds sent with 429"
    )
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds a 'latency' fault waits"
    )
    parser.add_argument(
        "--list-envelope",
        nargs="?",
        const="data",
        default=None,
        choices=LIST_ENVELOPES,
        help="wrap GET /sources pages in an object under this key (default when given: data)",
    )
    parser.add_argument(
        "--base-path", default="", help="serve the API under this prefix, e.g. /meti/api"
    )
    parser.add_argument(
        "--documented-only",
        action="store_true",
        help="ignore listing filters METI does not document (alt_id, conflict, *_since)",
    )
    parser.add_argument(
        "--reply-shape",
        default="current",
        choices=REPLY_SHAPES,
        help="2024: v1 GET replies in the GitBook 2024 names (default %(default)s)",
    )
    parser.add_argument(
        "--max-page-size", type=int, default=None, help="cap every listing's limit at this many"
    )
    parser.add_argument(
        "--envelope-extras",
        default=",".join(ENVELOPE_EXTRAS),
        help="with --list-envelope: keys beside the page, among total,limit,offset "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--trickle-bytes-per-second",
        type=float,
        default=None,
        help="send /sources reply bodies this slowly",
    )
    parser.add_argument(
        "--trickle-chunk-bytes", type=int, default=1, help="bytes per write while trickling"
    )
    parser.add_argument(
        "--echo-request-in-errors",
        action="store_true",
        help="4xx/5xx bodies quote the request body, as some gateways do",
    )
    parser.add_argument(
        "--token-reply-form",
        action="store_true",
        help="token endpoints answer 200 with a form-encoded body instead of JSON",
    )
    parser.add_argument(
        "--concurrent-conflicts",
        default=None,
        help="how concurrent creates see each other's sources (the ledger's option)",
    )
    parser.add_argument(
        "--countries",
        default=None,
        help="a GeoJSON file of country boundaries for the ledger",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request line to stderr")
    return parser


def _emulator(args: argparse.Namespace, extras: list[str]) -> MetiEmulator:
    return MetiEmulator(
        host=args.host,
        port=args.port,
        users={args.email: args.password},
        clients={args.client_id: args.client_secret},
        audience=args.audience,
        token_ttl=args.token_ttl,
        seed=args.seed,
        list_envelope=args.list_envelope,
        base_path=args.base_path,
        documented_only=args.documented_only,
        reply_shape=args.reply_shape,
        max_page_size=args.max_page_size,
        envelope_extras=extras,
        trickle_bytes_per_second=args.trickle_bytes_per_second,
        trickle_chunk_bytes=args.trickle_chunk_bytes,
        echo_request_in_errors=args.echo_request_in_errors,
        token_reply_form=args.token_reply_form,
        concurrent_conflicts=args.concurrent_conflicts,
        countries=args.countries,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator in the foreground; return the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    extras = [name.strip() for name in args.envelope_extras.split(",") if name.strip()]
    try:
        emulator = _emulator(args, extras)
    except (TypeError, ValueError, OSError) as error:
        print(f"meti-emulator: {error}", file=sys.stderr)
        return 2
    if args.fault_rate > 0:
        kinds = [kind.strip() for kind in args.fault_kinds.split(",") if kind.strip()]
        try:
            emulator.set_faults(
                args.fault_rate,
                kinds,
                seed=args.seed,
                retry_after=args.retry_after,
                latency=args.latency,
            )
        except ValueError as error:
            print(f"meti-emulator: {error}", file=sys.stderr)
            return 2
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        emulator.start()
    except OSError as error:
        print(f"meti-emulator: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    print(f"METI emulator serving on {emulator.base_url}", flush=True)
    print(f"OAuth2 token endpoint (API v2): {emulator.token_url}", flush=True)
    print(f"Sandbox (separate store, sandbox_ ids): {emulator.base_url}/sandbox", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
    print("METI emulator stopped", flush=True)
    return 0
