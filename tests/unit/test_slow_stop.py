"""What a slow stop logs of each task still running: where it waits, innermost first."""

import asyncio

from deltakeeper.stopping import awaiting


async def test_a_waiting_task_is_described_by_its_innermost_awaits() -> None:
    async def settle() -> None:
        await asyncio.Event().wait()

    async def drain() -> None:
        await settle()

    task = asyncio.create_task(drain())
    await asyncio.sleep(0)
    try:
        where = awaiting(task.get_coro())
        assert where.startswith("wait (locks.py:")
        assert where.split(" < ")[1:] == ["settle (test_slow_stop.py:10)", "drain (test_slow_stop.py:13)"]
    finally:
        task.cancel()
