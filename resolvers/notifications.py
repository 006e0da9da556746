"""Notification preferences (SPEC §8): per kind of reminder, EMAIL, SMS, BOTH or NONE.

A subscriber has a row only for the kinds they changed; the others are EMAIL. Letters that
carry credentials, codes and receipts are no kind: they are always sent. The reminders
themselves are queued by resolvers/reminders.py, which reads the same table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import DomainError, ErrorCode, InputProblems
from core.views import Filter
from models import NotificationPreference, Subscriber
from models.base import table_of
from models.notifications import NOTIFICATION_CHANNELS, NOTIFICATION_KINDS
from resolvers.reminders import DEFAULT_CHANNEL

_preferences = table_of(NotificationPreference)
_subscribers = table_of(Subscriber)

NEEDS_PHONE = ("SMS", "BOTH")


def _text(sql: str) -> Any:
    return sa.literal_column(sql)


def setting_rows(keep: Filter) -> sa.Select[Any]:
    """Every kind for each subscriber `keep(subscriber id)` admits, with the channel in
    force: (subscriber_id, position, kind, channel), `position` the order of the kinds."""
    kinds = sa.union_all(
        *(
            sa.select(
                _text(str(n)).label("position"),
                _text(f"'{kind}'").label("kind"),
            )
            for n, kind in enumerate(NOTIFICATION_KINDS)
        )
    ).subquery("notification_kind")
    return (
        sa.select(
            _subscribers.c.id.label("subscriber_id"),
            kinds.c.position,
            kinds.c.kind,
            sa.func.coalesce(_preferences.c.channel, _text(f"'{DEFAULT_CHANNEL}'")).label(
                "channel"
            ),
        )
        .select_from(
            _subscribers.join(kinds, sa.true()).outerjoin(
                _preferences,
                sa.and_(
                    _preferences.c.subscriber_id == _subscribers.c.id,
                    _preferences.c.kind == kinds.c.kind,
                ),
            )
        )
        .where(keep(_subscribers.c.id))
    )


async def update_notification_settings(
    session: AsyncSession, *, subscriber_id: int, settings: Sequence[tuple[str, str]]
) -> None:
    """Set the channel of each (kind, channel) given; kinds not given keep theirs. SMS and
    BOTH need a phone on file. Every problem of the input at once (INVALID, field
    "settings")."""
    problems = InputProblems()
    seen: set[str] = set()
    for kind, channel in settings:
        with problems:
            if kind not in NOTIFICATION_KINDS:
                raise DomainError(ErrorCode.INVALID, f"Unknown kind {kind}.", field="settings")
            if channel not in NOTIFICATION_CHANNELS:
                raise DomainError(
                    ErrorCode.INVALID, f"Unknown channel {channel}.", field="settings"
                )
            if kind in seen:
                raise DomainError(
                    ErrorCode.INVALID, f"{kind} is given more than once.", field="settings"
                )
        seen.add(kind)
    problems.raise_found()
    if not settings:
        return
    phone = await session.scalar(
        sa.select(_subscribers.c.phone).where(_subscribers.c.id == subscriber_id)
    )
    if not phone:
        for kind, channel in settings:
            with problems:
                if channel in NEEDS_PHONE:
                    raise DomainError(
                        ErrorCode.INVALID,
                        f"{kind}: SMS needs a phone number on file; there is none. Ask "
                        "support to add one, or choose EMAIL.",
                        field="settings",
                    )
        problems.raise_found()
    rows = [{"subscriber_id": subscriber_id, "kind": k, "channel": c} for k, c in settings]
    insert = (
        pg_insert(_preferences)
        if session.get_bind().dialect.name == "postgresql"
        else sqlite_insert(_preferences)
    )
    await session.execute(
        insert.on_conflict_do_update(
            index_elements=["subscriber_id", "kind"],
            set_={"channel": insert.excluded.channel},
        ),
        rows,
    )
