# SPDX-License-Identifier: MIT
# A Python stand-in for the C `_asyncio` module (TaskQueue, Task), installed by _boot.py when
# the bulb clock is not the real one. The C TaskQueue stamps tasks with the host's own tick
# counter, which disagrees with the shimmed time.ticks_ms; this one asks asyncio.core.ticks(),
# so every timer follows the bulb clock. It must behave exactly like the C module otherwise.
# The queue is a list kept in key order (first in, first out for equal keys): bulbs run a
# handful of tasks, so a list beats a heap in RAM and code size.
_core = None


def _c():
    global _core
    if _core is None:
        import asyncio.core as _core
    return _core


class TaskQueue:
    def __init__(self):
        self._q = []

    def peek(self):
        return self._q[0] if self._q else None

    def push(self, v, key=None):
        c = _c()
        v.data = None
        v.ph_key = c.ticks() if key is None else key
        q = self._q
        i = len(q)
        while i and c.ticks_diff(v.ph_key, q[i - 1].ph_key) < 0:
            i -= 1
        q.insert(i, v)

    def pop(self):
        if not self._q:
            raise IndexError("empty heap")
        return self._q.pop(0)

    def remove(self, v):
        try:
            self._q.remove(v)
        except ValueError:
            pass


class Task:
    def __init__(self, coro, globals=None):
        self.coro = coro
        self.data = None
        self.state = True  # True: running, not awaited; None/False: done; TaskQueue: waiters
        self.ph_key = 0

    def __iter__(self):
        if not self.state:
            self.state = False  # done, and now awaited
        elif self.state is True:
            self.state = TaskQueue()
        elif type(self.state) is not TaskQueue:
            raise RuntimeError("can't wait")
        return self

    def __next__(self):
        if not self.state:
            raise self.data
        c = _c()
        self.state.push(c.cur_task)
        c.cur_task.data = self

    def done(self):
        return not self.state

    def cancel(self):
        if not self.state:
            return False
        c = _c()
        if self is c.cur_task:
            raise RuntimeError("can't cancel self")
        while isinstance(self.data, Task):
            self = self.data  # noqa: PLW0642 - as MicroPython's asyncio/task.py does
        if hasattr(self.data, "remove"):
            self.data.remove(self)
            c._task_queue.push(self)
        elif c.ticks_diff(self.ph_key, c.ticks()) > 0:
            c._task_queue.remove(self)
            c._task_queue.push(self)
        self.data = c.CancelledError
        return True
