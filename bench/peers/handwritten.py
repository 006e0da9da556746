"""Peer (b) of the benchmark: the account overview by hand, Starlette + asyncpg, ONE SQL
statement per request that checks the token and builds the whole JSON answer in PostgreSQL
(json_build_object / json_agg), the same fields as Kabinet's overview query:

    me { displayName contracts { number status
         balance { amount daysLeft openPromisedPayment { amount dueAt } }
         tariff { name monthlyFee speedMbps } tvPackages { name monthlyFee }
         payments(first: 10) { edges { node { amount status createdAt } } } }
         bonusAccount { points } }

`daysLeft` follows resolvers/charges.py: the day's charge is Σ over today's items (tariff,
TV packages, Personal TV as one item, Multiroom receivers, options) of fee / days in the
month, half-up to kopecks; daysLeft = max(0, trunc(balance / that)), null when it is 0.

    BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1/kabinet_bench \
        uvicorn bench.peers.handwritten:app --port 8001
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

OVERVIEW_SQL = """
WITH me AS (
  SELECT s.id, s.display_name
  FROM auth_sessions a JOIN subscribers s ON s.id = a.subscriber_id
  WHERE a.access_token_hash = $1 AND a.revoked_at IS NULL
    AND a.access_expires_at > now() AND a.expires_at > now()
), today AS (
  SELECT d, extract(day FROM date_trunc('month', d) + interval '1 month - 1 day')::bigint AS days
  FROM (SELECT (now() AT TIME ZONE 'UTC')::date AS d) AS t
)
SELECT json_build_object('data', json_build_object('me', (
  SELECT json_build_object(
    'displayName', me.display_name,
    'contracts', coalesce((
      SELECT json_agg(json_build_object(
        'number', c.number,
        'status', c.status,
        'balance', json_build_object(
          'amount', c.balance::text,
          'daysLeft', (
            SELECT CASE WHEN sum(k) > 0
                        THEN greatest(0, trunc(c.balance * 100 / sum(k)))::int END
            FROM (
              SELECT (round(t.monthly_fee * 100)::bigint * 2 + today.days) / (2 * today.days)
              FROM tariffs t
              WHERE t.id = CASE WHEN c.scheduled_tariff_from <= today.d
                                THEN c.scheduled_tariff_id ELSE c.tariff_id END
              UNION ALL
              SELECT (round(p.monthly_fee * 100)::bigint * 2 + today.days) / (2 * today.days)
              FROM contract_tv_packages l JOIN tv_packages p ON p.id = l.package_id
              WHERE l.contract_id = c.id AND l.started_on <= today.d
                AND (l.ended_on IS NULL OR l.ended_on > today.d)
                AND (l.free_until IS NULL OR l.free_until <= today.d)
              UNION ALL
              SELECT (round(sum(pc.monthly_fee) * 100)::bigint * 2 + today.days)
                     / (2 * today.days)
              FROM contract_personal_channels pc JOIN channels ch ON ch.id = pc.channel_id
              WHERE pc.contract_id = c.id AND NOT ch.must_carry AND pc.started_on <= today.d
                AND (pc.ended_on IS NULL OR pc.ended_on > today.d)
              HAVING count(*) > 0
              UNION ALL
              SELECT (round(m.monthly_fee * 100)::bigint * 2 + today.days) / (2 * today.days)
              FROM multiroom_devices m
              WHERE m.contract_id = c.id AND m.started_on <= today.d
                AND (m.ended_on IS NULL OR m.ended_on > today.d)
              UNION ALL
              SELECT (round(o.monthly_fee * 100)::bigint * 2 + today.days) / (2 * today.days)
              FROM contract_options co JOIN service_options o ON o.id = co.option_id
              WHERE co.contract_id = c.id AND co.started_on <= today.d
                AND (co.ended_on IS NULL OR co.ended_on > today.d)
                AND (co.free_until IS NULL OR co.free_until <= today.d)
            ) AS items(k)
          ),
          'openPromisedPayment', (
            SELECT json_build_object('amount', pp.amount::text, 'dueAt', pp.due_at)
            FROM promised_payments pp WHERE pp.contract_id = c.id AND pp.status = 'OPEN'
          )
        ),
        'tariff', (
          SELECT json_build_object('name', t.name, 'monthlyFee', t.monthly_fee::text,
                                   'speedMbps', t.speed_mbps)
          FROM tariffs t WHERE t.id = c.tariff_id
        ),
        'tvPackages', coalesce((
          SELECT json_agg(json_build_object('name', p.name, 'monthlyFee', p.monthly_fee::text)
                          ORDER BY p.monthly_fee, p.id)
          FROM contract_tv_packages l JOIN tv_packages p ON p.id = l.package_id
          WHERE l.contract_id = c.id AND l.ended_on IS NULL
        ), '[]'),
        'payments', json_build_object('edges', coalesce((
          SELECT json_agg(json_build_object('node', json_build_object(
                   'amount', x.amount::text, 'status', x.status, 'createdAt', x.created_at))
                 ORDER BY x.id DESC)
          FROM (SELECT id, amount, status, created_at FROM payments
                WHERE contract_id = c.id ORDER BY id DESC LIMIT 10) AS x
        ), '[]'))
      ) ORDER BY c.id)
      FROM contracts c WHERE c.subscriber_id = me.id
    ), '[]'),
    'bonusAccount', json_build_object('points', coalesce(
      (SELECT b.points FROM bonus_accounts b WHERE b.subscriber_id = me.id), 0))
  )
)))::text
FROM me, today
"""

UNAUTHENTICATED = (
    b'{"data":{"me":null},"errors":[{"message":"Sign in first.",'
    b'"extensions":{"code":"UNAUTHENTICATED"}}]}'
)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1/kabinet_bench")
    app.state.pool = await asyncpg.create_pool(
        url.replace("postgresql+asyncpg://", "postgresql://"),
        min_size=2,
        max_size=int(os.environ.get("BENCH_POOL_SIZE", "10")),
        server_settings={"timezone": "UTC"},
    )
    try:
        yield
    finally:
        await app.state.pool.close()


async def graphql(request: Request) -> Response:
    await request.body()  # the fixed overview query: not parsed, as a hand-written endpoint
    auth = request.headers.get("authorization", "")
    token = auth[7:] if auth.startswith("Bearer ") else ""
    if not token:
        return Response(UNAUTHENTICATED, media_type="application/json")
    digest = hashlib.sha256(token.encode()).hexdigest()
    text = await request.app.state.pool.fetchval(OVERVIEW_SQL, digest)
    if text is None:
        return Response(UNAUTHENTICATED, media_type="application/json")
    return Response(text, media_type="application/json")


app = Starlette(routes=[Route("/graphql", graphql, methods=["POST"])], lifespan=lifespan)
