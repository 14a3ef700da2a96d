"""The PostgreSQL store under real concurrency: several stores (as several engine processes
would hold) on one database of a private PostgreSQL server.

The conformance suite proves the contract on one store; these prove what only a shared database
can get wrong: racing claims, concurrent commits, a stale owner writing while the new one does,
migrations by processes starting at once, and the typed errors of a database that is not there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest
from plait_engine.store import (
    ExecutionPayload,
    ExecutionRecord,
    NodeRecord,
    OwnershipLost,
    Reservation,
    StoreError,
    WriteBatch,
)
from plait_engine.store.postgres import PostgresStore
from plait_engine.store.postgres_schema import MIGRATIONS
from plaitidl.core.v1 import events_pb2, execution_pb2

from tests.support.postgres import free_port

EP = execution_pb2


def _event() -> bytes:
    ev = events_pb2.ExecutionEvent(
        execution=events_pb2.ExecutionTransition(phase=EP.EXECUTION_PHASE_RUNNING)
    )
    return ev.SerializeToString()


async def _create(store: PostgresStore, name: str, owner: str = "", lease: float = 0.0) -> int:
    rec = ExecutionRecord(
        eid=0, project="p", domain="d", name=name, workflow_key="p/d/wf/v1",
        phase=EP.EXECUTION_PHASE_QUEUED, created_at=1.0, updated_at=1.0, owner=owner,
        epoch=1 if owner else 0, lease_expires_at=lease,
    )  # fmt: skip
    stored, _ = await store.create_execution(rec, ExecutionPayload(b"c", b"w", b"i"), _event())
    return stored.eid


def _pass(eid: int, epoch: int, i: int, events: int = 3) -> WriteBatch:
    batch = WriteBatch()
    w = batch.of(eid, epoch, f"pass-{eid}-{epoch}-{i}")
    w.updated_at = float(i)
    w.nodes.append(NodeRecord(eid, f"n{i}", EP.NODE_PHASE_RUNNING, inputs=b"x"))
    w.events += [_event()] * events
    return batch


def _with_stores(url: str, n: int, body: Callable[..., Awaitable[None]]) -> None:
    """Run `body(*stores)` with `n` stores (separate pools) on one database."""

    async def main() -> None:
        stores = [PostgresStore(url, min_connections=1, max_connections=4) for _ in range(n)]
        try:
            await asyncio.gather(*(s.open() for s in stores))
            await body(*stores)
        finally:
            for s in stores:
                await s.close()

    asyncio.run(main())


async def _contiguous(store: PostgresStore, eid: int) -> int:
    """The number of events of `eid`, asserting they are numbered 1..N in their bodies too."""
    events = await store.events(eid, 0, 100_000)
    assert [s for s, _ in events] == list(range(1, len(events) + 1))
    assert [events_pb2.ExecutionEvent.FromString(b).sequence for _, b in events] == [
        s for s, _ in events
    ]
    return len(events)


def test_replicas_racing_to_claim_get_one_owner_each(postgres_url: str) -> None:
    async def body(a: PostgresStore, b: PostgresStore, c: PostgresStore) -> None:
        eids = [await _create(a, f"e{i}") for i in range(30)]
        stores = {"a": a, "b": b, "c": c}

        async def claim_all(name: str) -> list[int]:
            got = await asyncio.gather(
                *(stores[name].claim(eid, name, now=1.0, until=100.0) for eid in eids)
            )
            return [g.eid for g in got if g is not None]

        won = await asyncio.gather(*(claim_all(n) for n in stores))
        assert sorted(e for w in won for e in w) == eids  # each exactly once
        for name, mine in zip(stores, won, strict=True):
            for eid in mine:
                rec = await a.get_execution_by_eid(eid)
                assert rec is not None and rec.owner == name and rec.epoch == 1
        assert await b.claimable(now=50.0, limit=100) == []

    _with_stores(postgres_url, 3, body)


def test_replicas_commit_different_executions_at_once(postgres_url: str) -> None:
    async def body(a: PostgresStore, b: PostgresStore) -> None:
        mine = {a: [await _create(a, f"a{i}", "ra", 1e9) for i in range(5)],
                b: [await _create(b, f"b{i}", "rb", 1e9) for i in range(5)]}  # fmt: skip

        async def commits(store: PostgresStore) -> None:
            for i in range(20):
                batch = WriteBatch()
                for eid in mine[store]:
                    batch.executions.update(_pass(eid, 1, i).executions)
                await store.apply(batch, now=float(i))

        await asyncio.gather(commits(a), commits(b))
        for eid in mine[a] + mine[b]:
            assert await _contiguous(a, eid) == 1 + 20 * 3
            assert len(await b.node_records(eid)) == 20

    _with_stores(postgres_url, 2, body)


def test_commits_of_one_execution_from_two_connections_are_serialized(postgres_url: str) -> None:
    """One owner committing on several connections at once (retries overlapping a new pass):
    the row lock orders them, and sequences never collide."""

    async def body(a: PostgresStore, b: PostgresStore) -> None:
        eid = await _create(a, "e", "r", 1e9)
        await asyncio.gather(
            *(
                s.apply(_pass(eid, 1, i), now=1.0)
                for i in range(30)
                for s in (a, b)
                if i % 2 == (s is b)
            )
        )
        assert await _contiguous(a, eid) == 1 + 30 * 3
        # The last batch retried (its token applied already) changes nothing, on any connection.
        first = await a.apply(_pass(eid, 1, 30), now=2.0)
        again = await b.apply(_pass(eid, 1, 30), now=2.0)
        assert first.last_seq == again.last_seq == {eid: 1 + 31 * 3}

    _with_stores(postgres_url, 2, body)


def test_a_stale_owner_is_refused_while_the_new_owner_writes(postgres_url: str) -> None:
    async def body(old: PostgresStore, new: PostgresStore) -> None:
        eid = await _create(old, "e", "r1", lease=10.0)
        await old.apply(_pass(eid, 1, 0), now=5.0)
        adopted = await new.claim(eid, "r2", now=11.0, until=1e9)
        assert adopted is not None and adopted.epoch == 2

        refused = 0

        async def stale() -> None:
            nonlocal refused
            for i in range(1, 30):
                with pytest.raises(OwnershipLost) as lost:
                    await old.apply(_pass(eid, 1, i), now=12.0)
                assert lost.value.eids == {eid}
                refused += 1
                await asyncio.sleep(0)

        async def owner() -> None:
            for i in range(100, 130):
                result = await new.apply(_pass(eid, 2, i), now=12.0)
                assert result.last_seq[eid] > 0
                await asyncio.sleep(0)

        await asyncio.gather(stale(), owner())
        assert refused == 29
        assert await _contiguous(new, eid) == 1 + 3 + 30 * 3  # creation, old's first, new's
        nodes = {n.node_id for n in await new.node_records(eid)}
        assert nodes == {"n0", *(f"n{i}" for i in range(100, 130))}
        assert await old.renew("r1", {eid: 1}, until=1e9) == {eid}

    _with_stores(postgres_url, 2, body)


def test_a_claim_waits_for_a_commit_in_flight_then_fences_it(postgres_url: str) -> None:
    """A claim never slips between a commit's fence and its writes: it waits for the commit's
    lock, and the next commit of the old epoch is refused."""

    async def body(a: PostgresStore, b: PostgresStore) -> None:
        eid = await _create(a, "e", "r1", lease=10.0)
        async with await psycopg.AsyncConnection.connect(postgres_url) as held:
            # A commit in flight: its transaction holds the execution's row lock.
            await held.execute("SELECT 1 FROM executions WHERE eid = %s FOR UPDATE", (eid,))
            claim = asyncio.ensure_future(b.claim(eid, "r2", now=11.0, until=1e9))
            await asyncio.sleep(0.3)
            assert not claim.done()
            await held.execute(
                "UPDATE executions SET last_seq = last_seq + 1 WHERE eid = %s", (eid,)
            )
            await held.commit()
        claimed = await asyncio.wait_for(claim, 10)
        assert claimed is not None and claimed.epoch == 2 and claimed.last_seq == 2
        with pytest.raises(OwnershipLost):
            await a.apply(_pass(eid, 1, 1), now=12.0)

    _with_stores(postgres_url, 2, body)


def test_replicas_reserving_one_cache_key_at_once_get_one_holder(postgres_url: str) -> None:
    async def body(*stores: PostgresStore) -> None:
        async def reserve(i: int, s: PostgresStore) -> str:
            batch = WriteBatch(reservations=[Reservation("key", f"h{i}", 100.0)])
            return (await s.apply(batch, now=1.0)).holders["key"]

        holders = await asyncio.gather(*(reserve(i, s) for i, s in enumerate(stores)))
        assert len(set(holders)) == 1 and holders[0].startswith("h")

    _with_stores(postgres_url, 4, body)


def test_processes_starting_at_once_migrate_once(postgres_url: str) -> None:
    async def body(*stores: PostgresStore) -> None:
        rows = await stores[0]._rows("SELECT version FROM schema_version ORDER BY version")
        assert [r[0] for r in rows] == list(range(1, len(MIGRATIONS) + 1))
        assert {await s.schema_version() for s in stores} == {len(MIGRATIONS)}

    _with_stores(postgres_url, 5, body)  # five stores open() at once on a fresh database


def test_a_database_of_a_newer_schema_is_refused(postgres_url: str) -> None:
    async def main() -> None:
        store = PostgresStore(postgres_url)
        await store.open()
        await store._rows("INSERT INTO schema_version (version) VALUES (999) RETURNING version")
        await store.close()
        again = PostgresStore(postgres_url)
        with pytest.raises(StoreError, match="newer than this engine"):
            await again.open()
        await again.close()

    asyncio.run(main())


def test_state_survives_a_new_store(postgres_url: str) -> None:
    async def main() -> None:
        store = PostgresStore(postgres_url)
        eid = await _create(store, "e", "r1", 50.0)
        await store.apply(_pass(eid, 1, 0), now=1.0)
        await store.close()
        again = PostgresStore(postgres_url)
        try:
            rec: Any = await again.get_execution_by_eid(eid)
            assert rec.owner == "r1" and rec.last_seq == 4
            assert await again.schema_version() == len(MIGRATIONS)
        finally:
            await again.close()

    asyncio.run(main())


def test_an_unreachable_database_is_a_store_error_naming_it() -> None:
    port = free_port()  # nothing listens there

    async def main() -> None:
        store = PostgresStore(f"postgresql://plait:secret@127.0.0.1:{port}/db", connect_timeout=2)
        with pytest.raises(StoreError) as err:
            await store.get_execution_by_eid(1)
        assert f"127.0.0.1:{port}/db" in str(err.value) and "secret" not in str(err.value)
        await store.close()

    asyncio.run(main())


def test_the_store_recovers_when_the_database_restarts() -> None:
    """Connections cut by a database restart fail the calls that hold them (the scheduler
    retries its commits); the pool replaces them, and the store works again."""
    from tests.support.postgres import private_postgres

    with private_postgres() as server:
        url = server.create_database()

        async def main() -> None:
            store = PostgresStore(url, min_connections=2, max_connections=4)
            try:
                eid = await _create(store, "e", "r", 1e9)
                await store.apply(_pass(eid, 1, 0), now=1.0)
                server.restart()
                failures = 0
                for i in range(1, 10):
                    try:
                        await store.apply(_pass(eid, 1, i), now=2.0)
                        break
                    except psycopg.OperationalError:
                        failures += 1
                assert 1 <= failures <= 4  # the cut connections, at most the pool's
                rec = await store.get_execution_by_eid(eid)
                assert rec is not None and rec.last_seq == 1 + 3 + 3
            finally:
                await store.close()

        asyncio.run(main())
