"""Demo data and the reference catalogue: counts, invariants, idempotence, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from auth.passwords import passwords_for
from core.db import begin_write
from kabinet.seed import DEMO_BALANCE, DEMO_CONTRACT, seed_demo
from models import (
    AutopayRule,
    BonusAccount,
    Contract,
    Credential,
    LedgerEntry,
    PaymentMethod,
    StaffUser,
)

ROOT = Path(__file__).resolve().parent.parent


async def _seed(session_factory: Any, settings: Any) -> Any:
    async with session_factory() as session:
        await begin_write(session)
        signins = await seed_demo(session, settings)
        await session.commit()
    return signins


async def test_demo_data_is_consistent_and_idempotent(session_factory: Any, settings: Any) -> None:
    # when: seeded twice
    await _seed(session_factory, settings)
    signins = await _seed(session_factory, settings)
    # then
    async with session_factory() as session:
        contracts = (await session.execute(sa.select(Contract))).scalars().all()
        assert len(contracts) == 2
        demo = next(c for c in contracts if c.number == DEMO_CONTRACT)
        assert demo.balance == DEMO_BALANCE
        ledger_sum = await session.scalar(
            sa.select(sa.func.sum(LedgerEntry.amount)).where(LedgerEntry.contract_id == demo.id)
        )
        assert Decimal(ledger_sum) == demo.balance
        assert (demo.opened_on - demo.created_at.date()).days <= -120
        credential = await session.scalar(sa.select(Credential).where(Credential.login == "demo"))
        assert credential is not None and not credential.must_change_password
        assert await passwords_for(settings).verify(credential.password_hash, signins.demo_password)
        admin = await session.scalar(sa.select(StaffUser).where(StaffUser.username == "admin"))
        assert admin is not None and admin.role == "ADMIN"
        assert await passwords_for(settings).verify(admin.password_hash, signins.admin_password)
        points = await session.scalar(sa.select(BonusAccount.points))
        assert points == 400
        # saved sandbox methods (one that pays, one that declines) and autopay, once each
        methods = (await session.execute(sa.select(PaymentMethod))).scalars().all()
        assert sorted(m.title for m in methods) == ["Card *0002", "Card *4444"]
        assert {m.contract_id for m in methods} == {demo.id}
        (rule,) = (await session.execute(sa.select(AutopayRule))).scalars().all()
        assert rule.contract_id == demo.id and rule.enabled and rule.mode == "BELOW_THRESHOLD"
    assert signins.unregistered_security_code and len(signins.unregistered_security_code) == 8


async def test_seed_demo_is_refused_in_production(session_factory: Any, settings: Any) -> None:
    production = settings.model_copy(update={"env": "production"})
    async with session_factory() as session:
        with pytest.raises(RuntimeError, match="development only"):
            await seed_demo(session, production)


def _kabinet(*args: str, env: dict[str, str], stdin: str | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "kabinet.cli", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_migrate_seed_and_create_staff(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "KABINET_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
        "KABINET_ARGON2_MEMORY_KIB": "64",
        "KABINET_ARGON2_TIME_COST": "1",
        "KABINET_DEMO_PASSWORD": "a demo password that is long",
    }
    migrated = _kabinet("migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    catalog = _kabinet("seed-catalog", env=env)
    assert catalog.returncode == 0 and "200 channels" in catalog.stdout
    demo = _kabinet("seed-demo", env=env)
    assert demo.returncode == 0, demo.stderr
    assert "'a demo password that is long'" in demo.stdout
    assert "security code" in demo.stdout and "/explorer" in demo.stdout
    staff = _kabinet(
        "create-staff",
        "--username",
        "olga",
        "--role",
        "OPERATOR",
        "--password-stdin",
        env=env,
        stdin="correct horse battery staple\n",
    )
    assert staff.returncode == 0, staff.stderr
    again = _kabinet(
        "create-staff",
        "--username",
        "olga",
        "--role",
        "OPERATOR",
        "--password-stdin",
        env=env,
        stdin="correct horse battery staple\n",
    )
    assert again.returncode == 2 and "exists" in again.stderr and "Traceback" not in again.stderr
    short = _kabinet(
        "create-staff",
        "--username",
        "ivan",
        "--role",
        "ADMIN",
        "--password-stdin",
        env=env,
        stdin="short\n",
    )
    assert short.returncode == 2 and "Traceback" not in short.stderr
    production = _kabinet("seed-demo", env={**env, "KABINET_ENV": "production"})
    assert production.returncode == 2 and "Traceback" not in production.stderr
