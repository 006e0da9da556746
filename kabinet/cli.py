"""The `kabinet` command: serve, migrate, seed, staff, schema export."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from core.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

ROOT = Path(__file__).resolve().parent.parent

T = TypeVar("T")


def _settings() -> Settings:
    try:
        return Settings()
    except Exception as error:  # pydantic's message names the bad variable
        raise SystemExit(f"kabinet: bad settings: {error}") from None


def _run(coro_factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(coro_factory())


async def _with_session(
    settings: Settings, work: Callable[[AsyncSession], Coroutine[Any, Any, T]]
) -> T:
    from core.db import in_own_transaction

    return await in_own_transaction(settings, work)


def cmd_migrate(args: argparse.Namespace) -> int:
    from core import migrate

    settings = _settings()
    if args.revision.startswith("-") or args.downgrade:
        migrate.downgrade(settings.database_url, args.revision)
    else:
        migrate.upgrade(settings.database_url, args.revision)
    print(f"database migrated to {args.revision} ({_safe_url(settings.database_url)})")
    return 0


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def cmd_seed_catalog(_args: argparse.Namespace) -> int:
    from kabinet.seed import seed_catalog

    settings = _settings()
    counts = _run(lambda: _with_session(settings, seed_catalog))
    print(
        "catalogue loaded: "
        f"{counts.regions} regions, {counts.tariffs} tariffs, {counts.channels} channels, "
        f"{counts.tv_packages} TV packages, {counts.service_options} service options, "
        f"{counts.bonus_rewards} bonus rewards"
    )
    return 0


def cmd_seed_demo(_args: argparse.Namespace) -> int:
    from kabinet.seed import seed_demo

    settings = _settings()
    if settings.is_production:
        print("kabinet: seed-demo is refused in production (use seed-catalog)", file=sys.stderr)
        return 2
    signins = _run(lambda: _with_session(settings, lambda s: seed_demo(s, settings)))
    print("demo data loaded")
    print(
        f"  subscriber : login {signins.demo_login!r}  password {signins.demo_password!r}"
        f"  (contract {signins.contract_number})"
    )
    print(f"  staff      : login {signins.admin_login!r}  password {signins.admin_password!r}")
    if signins.unregistered_security_code:
        print(
            f"  to register: contract {signins.unregistered_contract}"
            f"  security code {signins.unregistered_security_code}"
            f"  legal status INDIVIDUAL  passport {signins.unregistered_document!r}"
        )
    else:
        print(f"  contract {signins.unregistered_contract} is registered already")
    print(f"  explorer   : {settings.public_url}/explorer")
    return 0


def cmd_create_staff(args: argparse.Namespace) -> int:
    from core.errors import DomainError
    from resolvers.staff import create_staff_user

    settings = _settings()
    if not args.password_stdin:
        print("kabinet: give the password on standard input with --password-stdin", file=sys.stderr)
        return 2
    password = sys.stdin.readline().rstrip("\r\n")
    try:
        _run(
            lambda: _with_session(
                settings,
                lambda s: create_staff_user(
                    s, settings=settings, username=args.username, role=args.role, password=password
                ),
            )
        )
    except DomainError as error:
        for problem in error.problems:
            print(f"kabinet: {problem.message}", file=sys.stderr)
        return 2
    print(f"staff user {args.username!r} ({args.role}) created")
    return 0


def cmd_outbox_deliver(_args: argparse.Namespace) -> int:
    from core.logs import configure_logging
    from core.outbox import deliver_all_now

    settings = _settings()
    configure_logging(settings.log_level)
    report = asyncio.run(deliver_all_now(settings))
    print(f"outbox: {report.sent} sent, {report.failed} failed, {report.remaining} waiting")
    return 0 if report.failed == 0 else 1


def cmd_events_deliver(_args: argparse.Namespace) -> int:
    from core.logs import configure_logging
    from core.webhooks_out import deliver_all_now

    settings = _settings()
    configure_logging(settings.log_level)
    report = asyncio.run(deliver_all_now(settings))
    print(
        f"events: {report.delivered} delivered, {report.failed} failed"
        f" ({report.given_up} given up), {report.remaining} waiting"
    )
    return 0 if report.failed == 0 else 1


def cmd_events_prune(args: argparse.Namespace) -> int:
    from core.logs import configure_logging
    from core.webhooks_out import prune_now

    settings = _settings()
    configure_logging(settings.log_level)
    days = settings.events_keep_days if args.older_than_days is None else args.older_than_days
    if days < 1:
        print(f"kabinet: bad --older-than-days {days}: give 1 or more", file=sys.stderr)
        return 2
    print(f"events prune: deleting the history older than {days} days", flush=True)
    report = asyncio.run(
        prune_now(settings, older_than_days=days, progress=lambda p: print(p, flush=True))
    )
    print(report.line())
    return 0


def cmd_export_schema(args: argparse.Namespace) -> int:
    from schema import printed_schema

    text = printed_schema()
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"schema written to {args.output}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from core import migrate
    from core.logs import configure_logging

    settings = _settings()
    settings.check_production()
    configure_logging(settings.log_level)
    if settings.is_sqlite:
        # The embedded database is created and migrated on first start.
        migrate.upgrade(settings.database_url)
    host = args.host or settings.host
    port = args.port or settings.port
    workers = args.workers or settings.workers
    uvicorn.run(
        "kabinet.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
    )
    return 0


def cmd_billing_run(args: argparse.Namespace) -> int:
    from datetime import UTC, date, datetime

    from core.db import create_engine
    from resolvers.billing import run_billing_day

    if args.date is None:
        day = datetime.now(UTC).date()
    else:
        try:
            day = date.fromisoformat(args.date)
        except ValueError:
            print(f"kabinet: bad --date {args.date!r}: give a day as YYYY-MM-DD", file=sys.stderr)
            return 2
    settings = _settings()

    async def run() -> Any:
        engine = create_engine(settings)
        try:
            return await run_billing_day(
                engine, settings=settings, day=day, progress=lambda p: print(p, flush=True)
            )
        finally:
            await engine.dispose()

    summary = asyncio.run(run())
    print("\n".join(summary.lines()))
    return 0


def cmd_payments_expire(_args: argparse.Namespace) -> int:
    from models.base import utcnow
    from resolvers.payments import expire_abandoned_top_ups

    settings = _settings()
    report = _run(
        lambda: _with_session(
            settings,
            lambda session: expire_abandoned_top_ups(session, settings=settings, now=utcnow()),
        )
    )
    print(report.line())
    return 0


def cmd_ledger_verify(_args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from core.db import create_engine, create_session_factory
    from models import Contract
    from resolvers import ledger

    settings = _settings()

    async def run() -> tuple[int, list[Any]]:
        engine = create_engine(settings)
        try:
            async with create_session_factory(engine)() as session:
                mismatches = await ledger.verify(session)
                count = await session.scalar(sa.select(sa.func.count()).select_from(Contract))
            return int(count or 0), mismatches
        finally:
            await engine.dispose()

    count, mismatches = asyncio.run(run())
    if not mismatches:
        print(f"ledger OK: {count} contracts")
        return 0
    for m in mismatches:
        print(
            f"mismatch: contract {m.number} (id {m.contract_id}): balance {m.balance:.2f},"
            f" ledger sum {m.ledger_sum:.2f}, difference {m.balance - m.ledger_sum:.2f}"
        )
    print(f"ledger MISMATCH: {len(mismatches)} of {count} contracts")
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kabinet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.set_defaults(func=cmd_serve)

    migrate = commands.add_parser("migrate", help="upgrade the database schema (Alembic)")
    migrate.add_argument("revision", nargs="?", default="head")
    migrate.add_argument("--downgrade", action="store_true", help="downgrade to REVISION")
    migrate.set_defaults(func=cmd_migrate)

    commands.add_parser("seed-catalog", help="load the reference catalogue").set_defaults(
        func=cmd_seed_catalog
    )
    commands.add_parser("seed-demo", help="load demo data (development only)").set_defaults(
        func=cmd_seed_demo
    )

    staff = commands.add_parser("create-staff", help="create a staff account")
    staff.add_argument("--username", required=True)
    staff.add_argument("--role", required=True, choices=["ADMIN", "OPERATOR"])
    staff.add_argument("--password-stdin", action="store_true")
    staff.set_defaults(func=cmd_create_staff)

    outbox = commands.add_parser("outbox", help="the outgoing mail queue")
    outbox_commands = outbox.add_subparsers(dest="outbox_command", required=True, metavar="ACTION")
    outbox_commands.add_parser("deliver", help="send every letter that is due, once").set_defaults(
        func=cmd_outbox_deliver
    )

    events = commands.add_parser("events", help="events for the operator's systems")
    events_commands = events.add_subparsers(dest="events_command", required=True, metavar="ACTION")
    events_commands.add_parser(
        "deliver", help="post every event delivery that is due, once"
    ).set_defaults(func=cmd_events_deliver)
    events_prune = events_commands.add_parser(
        "prune",
        help="delete delivered/failed deliveries and their events older than N days",
    )
    events_prune.add_argument(
        "--older-than-days",
        type=int,
        metavar="N",
        help="keep the last N days, N >= 1 (default: KABINET_EVENTS_KEEP_DAYS, 30)",
    )
    events_prune.set_defaults(func=cmd_events_prune)

    billing = commands.add_parser("billing", help="the billing day")
    billing_commands = billing.add_subparsers(
        dest="billing_command", required=True, metavar="ACTION"
    )
    billing_run = billing_commands.add_parser(
        "run", help="charge the day's share of the monthly fees, settle due promises, suspend"
    )
    billing_run.add_argument("--date", help="the day to bill, YYYY-MM-DD (default: today, UTC)")
    billing_run.set_defaults(func=cmd_billing_run)

    payments = commands.add_parser("payments", help="top-ups")
    payments_commands = payments.add_subparsers(
        dest="payments_command", required=True, metavar="ACTION"
    )
    payments_commands.add_parser(
        "expire", help="cancel top-ups still PENDING after KABINET_TOP_UP_EXPIRY_HOURS"
    ).set_defaults(func=cmd_payments_expire)

    ledger = commands.add_parser("ledger", help="the money ledger")
    ledger_commands = ledger.add_subparsers(dest="ledger_command", required=True, metavar="ACTION")
    ledger_commands.add_parser(
        "verify", help="check balance == sum of the ledger for every contract"
    ).set_defaults(func=cmd_ledger_verify)

    export = commands.add_parser("export-schema", help="print or write schema.graphql")
    export.add_argument("--output", default="-", help="file to write (default: stdout)")
    export.set_defaults(func=cmd_export_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
