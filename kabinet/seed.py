"""`seed-catalog` (allowed in production) and `seed-demo` (development only); both idempotent."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel, col

from auth.passwords import passwords_for
from auth.secrets import document_hash, new_security_code, security_code_hash
from core.db import in_own_transaction
from core.payment_providers import (
    SANDBOX_DECLINING_PREFIX,
    SANDBOX_DECLINING_TITLE,
    SANDBOX_METHOD_TITLE,
)
from core.settings import Settings
from kabinet import catalog_data as data
from models import (
    AutopayRule,
    BonusReward,
    Channel,
    Contract,
    ContractTvPackage,
    Credential,
    Payment,
    PaymentMethod,
    Region,
    ServiceOption,
    StaffUser,
    Subscriber,
    Tariff,
    TvPackage,
    TvPackageChannel,
)
from resolvers import bonus, ledger, receipts
from resolvers.payments import TOP_UP_DESCRIPTION

DEMO_LOGIN = "demo"
DEMO_CONTRACT = "770000000101"
DEMO_UNREGISTERED_CONTRACT = "770000000202"
DEMO_UNREGISTERED_DOCUMENT = "4510 654321"
DEMO_ADMIN = "admin"
DEMO_BALANCE = Decimal("150.00")
DEMO_CONTRACT_AGE_DAYS = 120
# The demo contract's saved sandbox methods (reference, title): the card pays, the second
# always declines (autopay's failure path); autopay pays 500.00 from the card when a billing
# day leaves less than 200.00 (so the next `kabinet billing run` shows it).
DEMO_METHODS = (
    ("sandbox-card-demo", SANDBOX_METHOD_TITLE),
    (f"{SANDBOX_DECLINING_PREFIX}demo", SANDBOX_DECLINING_TITLE),
)
DEMO_AUTOPAY_AMOUNT = Decimal("500.00")
DEMO_AUTOPAY_THRESHOLD = Decimal("200.00")

M = TypeVar("M", bound=SQLModel)


@dataclass
class CatalogCounts:
    regions: int
    tariffs: int
    channels: int
    tv_packages: int
    service_options: int
    bonus_rewards: int


@dataclass
class DemoSignIns:
    demo_login: str
    demo_password: str | None  # None: the password was set before and is left as it is
    admin_login: str
    admin_password: str | None
    contract_number: str
    unregistered_contract: str
    unregistered_security_code: str | None
    unregistered_document: str


async def _by_code(session: AsyncSession, model: type[M], **keys: object) -> M | None:
    result = await session.execute(sa.select(model).filter_by(**keys))
    return result.scalar_one_or_none()


async def seed_catalog(session: AsyncSession) -> CatalogCounts:
    """Insert what is missing and update what changed, keyed by codes; never deletes."""
    for region in data.REGIONS:
        row = await session.get(Region, region.code)
        if row is None:
            session.add(Region(code=region.code, name=region.name))
        else:
            row.name = region.name
    await session.flush()

    for tariff in data.TARIFFS:
        tariff_row = await _by_code(
            session, Tariff, region_code=tariff.region_code, code=tariff.code
        )
        values: dict[str, Any] = {
            "name": tariff.name,
            "monthly_fee": tariff.monthly_fee,
            "speed_mbps": tariff.speed_mbps,
            "traffic_gb": tariff.traffic_gb,
            "archived": tariff.archived,
            "description": tariff.description,
        }
        if tariff_row is None:
            session.add(Tariff(code=tariff.code, region_code=tariff.region_code, **values))
        else:
            for key, value in values.items():
                setattr(tariff_row, key, value)

    channel_ids: dict[int, int] = {}
    for channel in data.CHANNELS:
        channel_row = await _by_code(session, Channel, number=channel.number)
        if channel_row is None:
            channel_row = Channel(
                number=channel.number,
                name=channel.name,
                genre=channel.genre,
                hd=channel.hd,
                must_carry=channel.must_carry,
            )
            session.add(channel_row)
        else:
            channel_row.name, channel_row.genre = channel.name, channel.genre
            channel_row.hd, channel_row.must_carry = channel.hd, channel.must_carry
        await session.flush()
        assert channel_row.id is not None
        channel_ids[channel.number] = channel_row.id

    for package in data.TV_PACKAGES:
        package_row = await _by_code(session, TvPackage, code=package.code)
        if package_row is None:
            package_row = TvPackage(
                code=package.code,
                name=package.name,
                monthly_fee=package.monthly_fee,
                description=package.description,
            )
            session.add(package_row)
        else:
            package_row.name, package_row.monthly_fee = package.name, package.monthly_fee
            package_row.description = package.description
        await session.flush()
        assert package_row.id is not None
        wanted = {channel_ids[number] for number in package.channel_numbers}
        existing = set(
            (
                await session.execute(
                    sa.select(col(TvPackageChannel.channel_id)).where(
                        col(TvPackageChannel.package_id) == package_row.id
                    )
                )
            ).scalars()
        )
        for channel_id in sorted(wanted - existing):
            session.add(TvPackageChannel(package_id=package_row.id, channel_id=channel_id))
        if existing - wanted:
            await session.execute(
                sa.delete(TvPackageChannel).where(
                    col(TvPackageChannel.package_id) == package_row.id,
                    col(TvPackageChannel.channel_id).in_(existing - wanted),
                )
            )

    for option in data.SERVICE_OPTIONS:
        option_row = await _by_code(session, ServiceOption, code=option.code)
        if option_row is None:
            session.add(
                ServiceOption(
                    code=option.code,
                    name=option.name,
                    monthly_fee=option.monthly_fee,
                    description=option.description,
                )
            )
        else:
            option_row.name, option_row.monthly_fee = option.name, option.monthly_fee
            option_row.description = option.description
    await session.flush()

    for reward in data.BONUS_REWARDS:
        package_id: int | None = None
        option_id: int | None = None
        if reward.tv_package_code:
            rewarded_package = await _by_code(session, TvPackage, code=reward.tv_package_code)
            assert rewarded_package is not None  # seeded above
            package_id = rewarded_package.id
        if reward.option_code:
            rewarded_option = await _by_code(session, ServiceOption, code=reward.option_code)
            assert rewarded_option is not None  # seeded above
            option_id = rewarded_option.id
        reward_values: dict[str, Any] = {
            "name": reward.name,
            "kind": reward.kind,
            "points_price": reward.points_price,
            "credit_amount": reward.credit_amount,
            "tv_package_id": package_id,
            "option_id": option_id,
            "duration_days": reward.duration_days,
        }
        reward_row = await _by_code(session, BonusReward, code=reward.code)
        if reward_row is None:
            session.add(BonusReward(code=reward.code, **reward_values))
        else:
            for key, value in reward_values.items():
                setattr(reward_row, key, value)
    await session.flush()

    async def count(model: type) -> int:
        return int(
            (await session.execute(sa.select(sa.func.count()).select_from(model))).scalar_one()
        )

    return CatalogCounts(
        regions=await count(Region),
        tariffs=await count(Tariff),
        channels=await count(Channel),
        tv_packages=await count(TvPackage),
        service_options=await count(ServiceOption),
        bonus_rewards=await count(BonusReward),
    )


async def seed_catalog_at(url: str) -> CatalogCounts:
    """`seed_catalog` in a database of its own: its own engine, one transaction, disposed."""
    return await in_own_transaction(url, seed_catalog)


def _generated_password() -> str:
    # 4 groups of 5 letters and digits: 20 characters, ~100 bits, easy to type.
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return "-".join("".join(secrets.choice(alphabet) for _ in range(5)) for _ in range(4))


async def seed_demo(session: AsyncSession, settings: Settings) -> DemoSignIns:
    """The catalogue plus a registered demo subscriber, an unregistered contract and staff
    `admin`. Generated passwords are new at every run (printed); set KABINET_DEMO_PASSWORD
    and KABINET_DEMO_ADMIN_PASSWORD to keep them fixed."""
    if settings.is_production:
        raise RuntimeError("seed-demo is for development only; use seed-catalog in production")
    await seed_catalog(session)
    passwords = passwords_for(settings)
    today = datetime.now(UTC).date()

    tariff = await _by_code(session, Tariff, region_code="MOW", code="home-100")
    assert isinstance(tariff, Tariff) and tariff.id is not None

    demo_password = settings.demo_password or _generated_password()
    admin_password = settings.demo_admin_password or _generated_password()

    contract = await _by_code(session, Contract, number=DEMO_CONTRACT)
    if contract is None:
        await _create_demo_subscriber(session, settings, tariff, today)
    await _demo_autopay(session)
    credential = await _by_code(session, Credential, login=DEMO_LOGIN)
    assert isinstance(credential, Credential)
    credential.password_hash = await passwords.hash(demo_password)
    credential.must_change_password = False

    security_code = None
    unregistered = await _by_code(session, Contract, number=DEMO_UNREGISTERED_CONTRACT)
    if unregistered is None:
        owner = Subscriber(
            legal_status="INDIVIDUAL",
            display_name="Петров Пётр Петрович",
            document_hash=document_hash(settings, DEMO_UNREGISTERED_DOCUMENT),
            document_last4=DEMO_UNREGISTERED_DOCUMENT[-4:],
            email="petrov@example.org",
            phone="+79160000202",
        )
        session.add(owner)
        await session.flush()
        assert owner.id is not None
        unregistered = Contract(
            number=DEMO_UNREGISTERED_CONTRACT,
            subscriber_id=owner.id,
            region_code="MOW",
            address="Москва, ул. Тверская, д. 2, кв. 20",
            tariff_id=tariff.id,
            opened_on=today,
        )
        session.add(unregistered)
    assert isinstance(unregistered, Contract)
    if unregistered.security_code_used_at is None:
        # The code is stored hashed, so a rerun issues a new one in order to print it.
        security_code = new_security_code()
        unregistered.security_code_hash = security_code_hash(settings, security_code)

    admin = await _by_code(session, StaffUser, username=DEMO_ADMIN)
    admin_hash = await passwords.hash(admin_password)
    if admin is None:
        session.add(StaffUser(username=DEMO_ADMIN, role="ADMIN", password_hash=admin_hash))
    else:
        assert isinstance(admin, StaffUser)
        admin.password_hash = admin_hash
    await session.flush()
    return DemoSignIns(
        demo_login=DEMO_LOGIN,
        demo_password=demo_password,
        admin_login=DEMO_ADMIN,
        admin_password=admin_password,
        contract_number=DEMO_CONTRACT,
        unregistered_contract=DEMO_UNREGISTERED_CONTRACT,
        unregistered_security_code=security_code,
        unregistered_document=DEMO_UNREGISTERED_DOCUMENT,
    )


async def _demo_autopay(session: AsyncSession) -> None:
    """The demo contract's saved sandbox methods and its autopay rule, when missing."""
    contract = await _by_code(session, Contract, number=DEMO_CONTRACT)
    assert isinstance(contract, Contract) and contract.id is not None
    card_id = None
    for reference, title in DEMO_METHODS:
        method = await _by_code(session, PaymentMethod, provider="sandbox", reference=reference)
        if method is None:
            method = PaymentMethod(
                contract_id=contract.id, provider="sandbox", reference=reference, title=title
            )
            session.add(method)
            await session.flush()
        assert isinstance(method, PaymentMethod)
        card_id = card_id or method.id
    assert card_id is not None
    if await _by_code(session, AutopayRule, contract_id=contract.id) is None:
        session.add(
            AutopayRule(
                contract_id=contract.id,
                payment_method_id=card_id,
                mode="BELOW_THRESHOLD",
                amount=DEMO_AUTOPAY_AMOUNT,
                threshold=DEMO_AUTOPAY_THRESHOLD,
            )
        )
        await session.flush()


async def _create_demo_subscriber(
    session: AsyncSession, settings: Settings, tariff: Tariff, today: date
) -> None:
    subscriber = Subscriber(
        legal_status="INDIVIDUAL",
        display_name="Иванов Иван Иванович",
        document_hash=document_hash(settings, "4510 123456"),
        document_last4="3456",
        email="demo@example.org",
        phone="+79160000101",
    )
    session.add(subscriber)
    await session.flush()
    assert subscriber.id is not None and tariff.id is not None
    opened_on = today - timedelta(days=DEMO_CONTRACT_AGE_DAYS)
    contract = Contract(
        number=DEMO_CONTRACT,
        subscriber_id=subscriber.id,
        region_code=tariff.region_code,
        address="Москва, ул. Тверская, д. 1, кв. 10",
        tariff_id=tariff.id,
        opened_on=opened_on,
        security_code_used_at=datetime.combine(opened_on, time(12), UTC),
    )
    session.add(contract)
    session.add(
        Credential(
            subscriber_id=subscriber.id,
            login=DEMO_LOGIN,
            password_hash="!",  # noqa: S106 - replaced below
            must_change_password=False,
        )
    )
    await session.flush()
    await bonus.open_account(session, subscriber.id)
    assert contract.id is not None

    base = await _by_code(session, TvPackage, code="base")
    assert isinstance(base, TvPackage) and base.id is not None
    session.add(
        ContractTvPackage(contract_id=contract.id, package_id=base.id, started_on=opened_on)
    )

    # A history that adds up: four monthly top-ups of 500.00 and four monthly charges,
    # leaving 150.00 on the balance; every change is a ledger row, as always, and each
    # top-up has its receipt and its points, written by the modules that own them.
    monthly_charge = (Decimal("2000.00") - DEMO_BALANCE) / 4
    for month in range(4):
        paid_at = datetime.combine(opened_on + timedelta(days=30 * month), time(10), UTC)
        payment = Payment(
            contract_id=contract.id,
            amount=Decimal("500.00"),
            method="BANK_CARD",
            status="SUCCEEDED",
            idempotency_scope=f"seed:{contract.id}",
            idempotency_key=f"demo-top-up-{month}",
            request_fingerprint="seed",
            provider="sandbox",
            provider_reference=f"demo-{month}",
            created_at=paid_at,
            confirmed_at=paid_at,
        )
        session.add(payment)
        await session.flush()
        assert payment.id is not None
        await ledger.post(
            session,
            contract_id=contract.id,
            kind="TOP_UP",
            amount=payment.amount,
            actor="provider:sandbox",
            description=TOP_UP_DESCRIPTION,
            reference=f"payment:{payment.id}",
            at=paid_at,
        )
        await session.execute(
            receipts.NEW_RECEIPT,
            receipts.receipt_row(
                payment_id=payment.id,
                contract_number=contract.number,
                payer_email=subscriber.email,
                total=payment.amount,
                method=payment.method,
                provider_reference=payment.provider_reference,
                at=paid_at,
            ),
        )
        await bonus.accrue_for_top_up(
            session,
            settings=settings,
            subscriber_id=subscriber.id,
            payment_id=payment.id,
            amount=payment.amount,
            at=paid_at,
        )
        await ledger.post(
            session,
            contract_id=contract.id,
            kind="CHARGE",
            amount=-monthly_charge,
            actor="system:billing",
            description="Абонентская плата за месяц",
            at=paid_at + timedelta(days=1),
        )
