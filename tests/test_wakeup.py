import anyio


from streamer.wakeup import Wakeup



async def test_wakeup_when_notified_wakes_every_waiter_and_later_waiters_wait_again():
    wakeup, woken = Wakeup(), []

    async def waiter(name: str) -> None:
        await wakeup.wait()
        woken.append(name)

    async with anyio.create_task_group() as group:
        group.start_soon(waiter, "a")
        group.start_soon(waiter, "b")
        await anyio.wait_all_tasks_blocked()
        wakeup.notify()
    assert sorted(woken) == ["a", "b"]

    with anyio.move_on_after(0.05) as timeout:
        await wakeup.wait()  # the earlier notify is spent
    assert timeout.cancelled_caught
