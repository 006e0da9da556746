"""Fill a PostgreSQL database with benchmark data, set-based, through the project's own
migrations: N subscribers with one contract each across the regions, 20 payments and 60 ledger
entries per contract, 3 TV packages, bonus history, a sign-in and a live session each.

    python -m bench.generate --url postgresql+asyncpg://postgres@127.0.0.1/kabinet_bench --n 100000

Every subscriber `i` signs in as login `bench{i}` with BENCH_PASSWORD and has the live access
token `bench-token-{i}` (stored, as always, only as its SHA-256).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable

import sqlalchemy as sa

from auth.passwords import passwords_for
from core import migrate
from core.db import create_engine
from core.settings import Settings
from kabinet.seed import seed_catalog_at

BENCH_PASSWORD = "bench password for every subscriber"
PAYMENTS_PER_CONTRACT = 20
CHARGES_PER_CONTRACT = 40
TOP_UP = 500
CHARGE = 200

# Each step: (label, SQL). :n is the number of subscribers, :hash the shared password hash.
STEPS: list[tuple[str, str]] = [
    (
        "subscribers",
        """INSERT INTO subscribers (legal_status, display_name, document_hash, document_last4,
                                    email, phone, created_at)
           SELECT 'INDIVIDUAL', 'Абонент ' || g, md5('doc' || g),
                  lpad((g % 10000)::text, 4, '0'), 'bench' || g || '@example.org',
                  '+7900' || lpad(g::text, 7, '0'), now()
           FROM generate_series(1, :n) AS g""",
    ),
    (
        "credentials",
        """INSERT INTO credentials (subscriber_id, login, password_hash, must_change_password,
                                    created_at)
           SELECT id, 'bench' || id, :hash, false, now() FROM subscribers""",
    ),
    (
        "contracts",
        """WITH tariffs_on_sale AS (
             SELECT id, region_code,
                    row_number() OVER (PARTITION BY region_code ORDER BY id) AS k,
                    count(*) OVER (PARTITION BY region_code) AS of
             FROM tariffs WHERE NOT archived),
           regions_numbered AS (
             SELECT code, row_number() OVER (ORDER BY code) - 1 AS r,
                    count(*) OVER () AS of FROM regions)
           INSERT INTO contracts (number, subscriber_id, region_code, address, status, balance,
                                  tariff_id, opened_on, created_at)
           SELECT '50' || lpad(s.id::text, 10, '0'), s.id, rg.code,
                  'ул. Тестовая, д. ' || s.id, 'ACTIVE',
                  CAST(:payments AS integer) * :top_up - CAST(:charges AS integer) * :charge,
                  t.id, current_date - 400, now()
           FROM subscribers s
           JOIN regions_numbered rg ON rg.r = s.id % rg.of
           JOIN tariffs_on_sale t ON t.region_code = rg.code AND t.k = 1 + s.id % t.of""",
    ),
    (
        "payments",
        """INSERT INTO payments (contract_id, amount, method, status, idempotency_scope,
                                 idempotency_key, request_fingerprint, provider,
                                 provider_reference, created_at, confirmed_at)
           SELECT c.id, CAST(:top_up AS numeric), 'BANK_CARD', 'SUCCEEDED', 'bench:' || c.id,
                  'key-' || i, 'bench', 'sandbox', 'bench-' || c.id || '-' || i,
                  now() - (i * interval '15 days'), now() - (i * interval '15 days')
           FROM contracts c
           -- oldest first, so that ids grow with created_at as in real life (Kabinet lists
           -- a contract's payments newest first by id)
           CROSS JOIN generate_series(CAST(:payments AS integer), 1, -1) AS i""",
    ),
    (
        "ledger entries",
        """INSERT INTO ledger_entries (contract_id, kind, amount, balance_after, description,
                                       reference, actor, created_at)
           SELECT contract_id, kind, amount,
                  sum(amount) OVER (PARTITION BY contract_id ORDER BY at, n), description,
                  reference, actor, at
           FROM (
             SELECT p.contract_id, 'TOP_UP' AS kind, p.amount, 'Пополнение' AS description,
                    'payment:' || p.id AS reference, 'provider:sandbox' AS actor,
                    p.confirmed_at AS at, p.id AS n
             FROM payments p
             UNION ALL
             SELECT c.id, 'CHARGE', -CAST(:charge AS numeric), 'Абонентская плата', NULL,
                    'system:billing', now() - (i * interval '7 days') + interval '1 hour', i
             FROM contracts c CROSS JOIN generate_series(1, :charges) AS i
           ) AS moves""",
    ),
    (
        "TV packages",
        """WITH packages AS (
             SELECT id, row_number() OVER (ORDER BY id) - 1 AS k, count(*) OVER () AS of
             FROM tv_packages WHERE NOT archived)
           INSERT INTO contract_tv_packages (contract_id, package_id, started_on, connected_at)
           SELECT c.id, p.id, c.opened_on, now()
           FROM contracts c CROSS JOIN generate_series(0, 2) AS j
           JOIN packages p ON p.k = (c.id + j) % p.of""",
    ),
    (
        "bonus history",
        """INSERT INTO bonus_entries (subscriber_id, kind, points, remaining, expires_at,
                                      payment_id, description, created_at)
           SELECT c.subscriber_id, 'ACCRUAL', (p.amount / 5)::int, (p.amount / 5)::int,
                  p.confirmed_at + interval '12 months', p.id, 'Баллы за пополнение',
                  p.confirmed_at
           FROM payments p JOIN contracts c ON c.id = p.contract_id""",
    ),
    (
        "bonus accounts",
        """INSERT INTO bonus_accounts (subscriber_id, points)
           SELECT subscriber_id, sum(remaining) FROM bonus_entries GROUP BY subscriber_id""",
    ),
    (
        "sessions",
        """INSERT INTO auth_sessions (principal_kind, subscriber_id, access_token_hash,
                                      created_at, last_used_at, access_issued_at,
                                      access_expires_at, expires_at)
           SELECT 'SUBSCRIBER', s.id,
                  encode(sha256(convert_to('bench-token-' || s.id, 'UTF8')), 'hex'),
                  now(), now(), now(), now() + interval '30 days', now() + interval '30 days'
           FROM subscribers s""",
    ),
    ("analyze", "ANALYZE"),
]

# The billing day's shape (`--shape billing`): what `kabinet billing run` reads and writes
# (subscribers, contracts and their charge items, the ledger), without the payment and bonus
# history, which it never reads: a 300k database in about a minute instead of many. Each
# contract gets one opening ledger entry equal to its balance, so balance == Σ ledger holds.
OPENING_BALANCES = (
    "opening balances",
    """INSERT INTO ledger_entries (contract_id, kind, amount, balance_after, description,
                                   reference, actor, created_at)
       SELECT id, 'ADJUSTMENT', balance, balance, 'Входящий остаток', NULL, 'system:bench',
              now() - interval '1 day'
       FROM contracts WHERE balance <> 0""",
)
BILLING_ONLY_SKIPS = {"payments", "ledger entries", "bonus history", "bonus accounts"}
SHAPES = ("full", "billing")


def steps_of(shape: str) -> list[tuple[str, str]]:
    if shape == "full":
        return STEPS
    if shape != "billing":
        raise ValueError(f"unknown shape {shape!r}: one of {', '.join(SHAPES)}")
    kept = [step for step in STEPS if step[0] not in BILLING_ONLY_SKIPS]
    return [*kept[:-1], OPENING_BALANCES, kept[-1]]  # analyze last


async def generate(
    url: str, n: int, progress: Callable[[str], None] = print, *, shape: str = "full"
) -> float:
    if not url.startswith("postgresql"):
        raise SystemExit("the benchmark data generator needs PostgreSQL")
    started = time.perf_counter()
    await asyncio.to_thread(migrate.upgrade, url)
    settings = Settings(database_url=url)
    await seed_catalog_at(url)
    engine = create_engine(url)
    try:
        password_hash = passwords_for(settings).hash_sync(BENCH_PASSWORD)
        params = {
            "n": n,
            "hash": password_hash,
            "payments": PAYMENTS_PER_CONTRACT,
            "charges": CHARGES_PER_CONTRACT,
            "top_up": TOP_UP,
            "charge": CHARGE,
        }
        for label, sql in steps_of(shape):
            step_started = time.perf_counter()
            wanted = {name for name in params if f":{name}" in sql}
            async with engine.connect() as conn:
                if label == "analyze":
                    conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                result = await conn.execute(sa.text(sql), {k: params[k] for k in wanted})
                await conn.commit()
            rows = max(result.rowcount or 0, 0)
            progress(f"  {label:<15} {rows:>10,} rows  {time.perf_counter() - step_started:6.1f} s")
    finally:
        await engine.dispose()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="postgresql+asyncpg://… (an empty database)")
    parser.add_argument("--n", type=int, default=100_000, help="subscribers (one contract each)")
    parser.add_argument(
        "--shape", choices=SHAPES, default="full", help="billing: only what the billing day reads"
    )
    args = parser.parse_args()
    print(f"generating {args.n:,} subscribers into {args.url.rsplit('@', 1)[-1]}")
    seconds = asyncio.run(generate(args.url, args.n, shape=args.shape))
    print(f"done in {seconds:.1f} s")


if __name__ == "__main__":
    main()
