"""The bench's Python peer: a worker that does per job what the seed task
framework's worker does (the Python job queue beanbox replaces), so that the
drain section compares runner with it.

Per job, as the seed: `reserve` with a 20 s timeout on one connection that
watches the tube and `default`, `json.loads` of the body, the function looked
up by tube and `func_name` in a registry filled by a decorator, called with
the kwargs, three INFO log lines (the message, the call, the cost), then
`delete`; a task that raises is logged and its job deleted too, a body that
is not JSON is buried. greenstalk stands in for beanstalkc (Python 2 only).

    BEANSTALKD_PORT=11300 SEED_TUBE=t LOG_LEVEL=INFO python seed_worker.py

Environment: BEANSTALKD_HOST/BEANSTALKD_PORT (127.0.0.1:11300), SEED_TUBE
(the tube task_one is registered on), LOG_LEVEL (INFO).
"""

import json
import logging
import os
import time

import greenstalk

logger = logging.getLogger("job_queue")
TASKS = {}


def task(tube):
    """Registers a function under (tube, its name), as the seed's decorator."""

    def register(func):
        TASKS[(tube, func.__name__)] = func
        return func

    return register


@task(os.environ.get("SEED_TUBE", "task_tube_one"))
def task_one(arg1, arg2, arg3):
    return arg1 + arg2 + arg3


def run_job(body):
    start = time.time()
    msg = json.loads(body)
    logger.info(msg)
    func_name = msg.get("func_name")
    try:
        func = TASKS[(msg.get("tube"), func_name)]
        kwargs = msg.get("kwargs")
        func(**kwargs)
        logger.info("{}-{}".format(func, kwargs))
    except Exception as e:
        logger.error(str(e), exc_info=True)
    logger.info("{} cost {}s".format(func_name, time.time() - start))


def main():
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"),
        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s",
    )
    address = (os.environ.get("BEANSTALKD_HOST", "127.0.0.1"), int(os.environ.get("BEANSTALKD_PORT", "11300")))
    client = greenstalk.Client(address)
    for tube in {tube for tube, _ in TASKS}:
        client.watch(tube)
    while True:
        try:
            job = client.reserve(timeout=20)
        except greenstalk.TimedOutError:
            continue
        try:
            run_job(job.body)
        except ValueError as e:  # not JSON: set aside, as the seed does
            logger.error(e)
            client.bury(job)
            continue
        client.delete(job)


if __name__ == "__main__":
    main()
