"""The seed framework's `task_one` as a beanbox task written in Python.

Built into a WebAssembly component by componentize-py (see build.sh); the
`wit_world` module is generated from wit/world.wit at build time.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import job, log, queue

# Calls this instance has served: module state lives as long as the instance.
calls = 0


class WitWorld(wit_world.WitWorld):
    def task_one(self, arg1: str, arg2: str, arg3: str) -> str:
        log.log(log.Level.INFO, "task_one joining 3 strings")
        return arg1 + arg2 + arg3

    def describe_job(self) -> str:
        info = job.info()
        log.log(log.Level.INFO, f"describing job {info.id}")
        return f"id={info.id} tube={info.tube} task={info.task} attempt={info.attempt}"

    def follow_up(self, tube: str, word: str) -> int:
        kwargs = json.dumps({"arg1": word, "arg2": word, "arg3": word})
        options = queue.PutOptions(priority=None, delay_secs=None, ttr_secs=None)
        try:
            return queue.put(tube, "task-one", kwargs, options)
        except Err as e:
            # e.value is a PutError_* case: report it as `denied: …` etc.
            kind = type(e.value).__name__.removeprefix("PutError_").lower()
            raise Err(f"{kind}: {e.value.value}")

    def boom(self, message: str) -> str:
        raise RuntimeError(message)

    def count_calls(self) -> int:
        global calls
        calls += 1
        return calls

    def spin(self) -> None:
        # Never returns: the host stops it when fuel or the deadline runs out.
        while True:
            pass

    def allocate_forever(self) -> None:
        # Never returns: the host refuses to grow memory past its limit.
        hoard = []
        while True:
            hoard.append(bytearray(1024 * 1024))
