"""Run the zevvy sandbox: python -m zevvy_sandbox --port 8765."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from pathlib import Path
import signal
import sys

from .models import CONFLICT_MODES, SandboxConfig
from .server import SandboxError, ZevvySandbox


def _parser() -> argparse.ArgumentParser:
    defaults = SandboxConfig()
    parser = argparse.ArgumentParser(
        prog="python -m zevvy_sandbox",
        description="Local stand-in for zevvy's identity server and measurement API.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=8765, help="port to listen on (0: a free port)"
    )
    parser.add_argument("--client-id", default=defaults.client_id)
    parser.add_argument("--client-secret", default=defaults.client_secret)
    parser.add_argument(
        "--interval",
        type=float,
        default=defaults.interval,
        help="device-code polling interval in seconds",
    )
    parser.add_argument(
        "--code-lifetime",
        type=float,
        default=defaults.code_lifetime,
        help="seconds a device code stays valid",
    )
    parser.add_argument(
        "--access-token-lifetime",
        type=float,
        default=defaults.access_token_lifetime,
        help="seconds an access token stays valid",
    )
    parser.add_argument(
        "--slow-down-increment",
        type=float,
        default=defaults.slow_down_increment,
        help="seconds added to a device code's interval on slow_down (RFC 8628: 5)",
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        default=None,
        help="most readings per bulk-create request (default: no limit)",
    )
    parser.add_argument(
        "--max-batch-status",
        type=int,
        default=defaults.max_batch_status,
        help="status for a batch above --max-batch (default: %(default)s)",
    )
    parser.add_argument(
        "--conflict-mode",
        choices=sorted(CONFLICT_MODES),
        default=defaults.conflict_mode,
        help="a batch with already stored readings answers 409 and stores nothing "
        "(all_or_nothing, the default) or its new readings (partial)",
    )
    parser.add_argument(
        "--conflict-details",
        action="store_true",
        help='409 bodies name the conflicting times: {"message", "conflicts": '
        "[readAt, ...]}",
    )
    parser.add_argument(
        "--max-value",
        type=float,
        default=None,
        help="refuse a batch holding a value above this (default: no limit)",
    )
    parser.add_argument(
        "--validation-status",
        type=int,
        default=defaults.validation_status,
        help="status for a batch with an invalid reading, 400 or 422 "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=defaults.latency,
        help="seconds every answer is delayed, e.g. 0.05 (default: 0)",
    )
    parser.add_argument(
        "--opaque-access-tokens",
        action="store_true",
        help="issue random opaque access tokens instead of JWTs",
    )
    parser.add_argument(
        "--no-id-tokens",
        action="store_true",
        help="no ID token in token responses, even with the openid scope",
    )
    parser.add_argument(
        "--no-userinfo",
        action="store_true",
        help="no userinfo endpoint (not in discovery, answers 404)",
    )
    parser.add_argument("--username", default=defaults.username)
    parser.add_argument("--email", default=defaults.email)
    parser.add_argument("--sub", default=defaults.sub, help="account id (JWT sub)")
    parser.add_argument(
        "--data-file",
        type=Path,
        default=None,
        help="JSON file keeping devices, readings and logins across restarts",
    )
    parser.add_argument(
        "--public-url",
        default=None,
        help="root URL to announce in discovery and device codes "
        "(default: the one each request came in on)",
    )
    parser.add_argument("--quiet", action="store_true", help="do not log every request")
    return parser


def _config(args: argparse.Namespace) -> SandboxConfig:
    """Return the settings from the command line; ValueError if impossible."""
    return SandboxConfig(
        client_id=args.client_id,
        client_secret=args.client_secret,
        interval=args.interval,
        code_lifetime=args.code_lifetime,
        access_token_lifetime=args.access_token_lifetime,
        slow_down_increment=args.slow_down_increment,
        max_batch=args.max_batch,
        max_batch_status=args.max_batch_status,
        conflict_mode=args.conflict_mode,
        conflict_details=args.conflict_details,
        max_value=args.max_value,
        validation_status=args.validation_status,
        latency=args.latency,
        opaque_access_tokens=args.opaque_access_tokens,
        id_tokens=not args.no_id_tokens,
        userinfo=not args.no_userinfo,
        username=args.username or None,
        email=args.email or None,
        sub=args.sub,
        public_url=args.public_url,
    )


async def _run(args: argparse.Namespace, config: SandboxConfig) -> None:
    sandbox = ZevvySandbox(config, data_file=args.data_file)
    await sandbox.start(host=args.host, port=args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows
            loop.add_signal_handler(sig, stop.set)
    lines = [
        "zevvy sandbox running",
        f"  pages:         {sandbox.url}/  (device login: {sandbox.verification_uri})",
        f"  issuer:        {sandbox.issuer}",
        f"  API URL:       {sandbox.api_url}",
        f"  client id:     {config.client_id}",
        f"  client secret: {config.client_secret}",
    ]
    if args.data_file is not None:
        lines.append(f"  data file:     {args.data_file}")
    lines.append("Press Ctrl-C to stop.")
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await sandbox.stop()
        sys.stdout.write("zevvy sandbox stopped\n")
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    """Run until Ctrl-C or SIGTERM; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        config = _config(args)
    except ValueError as err:
        parser.error(str(err))
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    try:
        asyncio.run(_run(args, config))
    except KeyboardInterrupt:
        pass
    except (OSError, SandboxError) as err:
        sys.stderr.write(f"zevvy sandbox: {err}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
