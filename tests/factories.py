"""Factories: build just the rows a test needs, through the models (no fixture worlds)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from auth.passwords import passwords_for
from auth.secrets import document_hash, security_code_hash
from core.db import begin_write
from core.settings import Settings
from models import AuthSession, BonusAccount, Contract, Credential, StaffUser, Subscriber, Tariff
from models.base import utcnow
from resolvers import ledger

_numbers = itertools.count(1)
DEFAULT_PASSWORD = "correct horse battery staple 42"


@dataclass
class MadeSubscriber:
    id: int
    login: str | None
    password: str
    email: str | None
    phone: str | None
    contract_numbers: list[str]
    contract_ids: list[int]
    document: str


async def make_subscriber(
    session_factory: Any,
    settings: Settings,
    *,
    registered: bool = True,
    login: str | None = None,
    password: str = DEFAULT_PASSWORD,
    must_change_password: bool = False,
    email: str | None = "auto",
    phone: str | None = "auto",
    contracts: int = 1,
    balance: Decimal = Decimal("0.00"),
    security_code: str | None = None,
    legal_status: str = "INDIVIDUAL",
    opened_days_ago: int = 120,
) -> MadeSubscriber:
    n = next(_numbers)
    document = f"45{n:02d} {n:06d}"
    email = f"user{n}@example.org" if email == "auto" else email
    phone = f"+7916{n:07d}" if phone == "auto" else phone
    async with session_factory() as session:
        await begin_write(session)
        tariff = await session.scalar(
            sa.select(Tariff).where(Tariff.region_code == "MOW", Tariff.code == "home-100")
        )
        assert tariff is not None and tariff.id is not None
        subscriber = Subscriber(
            legal_status=legal_status,
            display_name=f"Абонент {n}",
            document_hash=document_hash(settings, document),
            document_last4=document[-4:],
            email=email,
            phone=phone,
        )
        session.add(subscriber)
        await session.flush()
        assert subscriber.id is not None
        numbers, ids = [], []
        for c in range(contracts):
            contract = Contract(
                number=f"77{n:06d}{c:04d}",
                subscriber_id=subscriber.id,
                region_code="MOW",
                address=f"Москва, ул. Тестовая, д. {n}, кв. {c}",
                tariff_id=tariff.id,
                opened_on=(datetime.now(UTC) - timedelta(days=opened_days_ago)).date(),
                security_code_hash=(
                    security_code_hash(settings, security_code) if security_code else None
                ),
            )
            session.add(contract)
            await session.flush()
            assert contract.id is not None
            numbers.append(contract.number)
            ids.append(contract.id)
            if balance:
                # Money arrives only through the ledger, in tests too: balance == Σ ledger.
                await ledger.post(
                    session,
                    contract_id=contract.id,
                    kind="ADJUSTMENT",
                    amount=balance,
                    actor="test:factory",
                    description="opening balance",
                )
        login_name = None
        if registered:
            login_name = login or numbers[0]
            session.add(
                Credential(
                    subscriber_id=subscriber.id,
                    login=login_name,
                    password_hash=passwords_for(settings).hash_sync(password),
                    must_change_password=must_change_password,
                )
            )
            session.add(BonusAccount(subscriber_id=subscriber.id, points=0))
        await session.commit()
    return MadeSubscriber(subscriber.id, login_name, password, email, phone, numbers, ids, document)


async def make_staff(
    session_factory: Any,
    settings: Settings,
    *,
    username: str | None = None,
    role: str = "OPERATOR",
    password: str = DEFAULT_PASSWORD,
) -> tuple[int, str, str]:
    username = username or f"staff{next(_numbers)}"
    async with session_factory() as session:
        await begin_write(session)
        staff = StaffUser(
            username=username, role=role, password_hash=passwords_for(settings).hash_sync(password)
        )
        session.add(staff)
        await session.commit()
        assert staff.id is not None
        return staff.id, username, password


LOGIN = """
mutation Login($input: LoginInput!) {
  login(input: $input) {
    accessToken refreshToken expiresAt mustChangePassword
    subscriber { id login displayName }
    errors { field code message retryAfterSeconds }
  }
}
"""


async def sign_in(client: Any, identifier: str, password: str = DEFAULT_PASSWORD) -> dict[str, str]:
    """Signs in through the API; returns the Authorization header."""
    response = await client.post(
        "/graphql",
        json={
            "query": LOGIN,
            "variables": {"input": {"identifier": identifier, "password": password}},
        },
    )
    payload = response.json()["data"]["login"]
    assert payload["errors"] == [], payload["errors"]
    return {"Authorization": f"Bearer {payload['accessToken']}"}


async def assert_session_ended(client: Any, headers: dict[str, str]) -> None:
    """The session these headers present has ended: `me` answers UNAUTHENTICATED, not the
    signed-out null (SPEC §4 "GraphQL over HTTP")."""
    response = await client.post("/graphql", json={"query": "{ me { id } }"}, headers=headers)
    body = response.json()
    assert body["data"] == {"me": None}, body
    assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAUTHENTICATED"], body


async def make_touch_due(session_factory: Any) -> None:
    """Every session last used five minutes ago: the next request touches it (SPEC §3)."""
    async with session_factory() as session:
        await begin_write(session)
        await session.execute(
            sa.update(AuthSession).values(last_used_at=utcnow() - timedelta(minutes=5))
        )
        await session.commit()
