"""Scheduled reads: the tick that queues due tasks, the queue worker that runs one, the poison handler."""

import logging

import azure.functions as func

from functions.runtime import services
from shared import telemetry
from shared.extract.poison import record_poisoned
from shared.extract.runner import run_task
from shared.scheduling import tick
from shared.storage.queues import RunRequest

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("scheduler_tick")
@bp.timer_trigger(arg_name="timer", schedule="%TICK_SCHEDULE%", run_on_startup=False, use_monitor=True)
async def scheduler_tick(timer: func.TimerRequest) -> None:
    queued = await tick(services())
    log.info("scheduler tick queued %d run(s)%s", len(queued), " (past due)" if timer.past_due else "")


@bp.function_name("run_task")
@bp.queue_trigger(arg_name="message", queue_name="%RUNS_QUEUE%", connection="AzureWebJobsStorage")
async def run_task_from_queue(message: func.QueueMessage) -> None:
    request = RunRequest.model_validate_json(message.get_body())
    outcome = await run_task(services(), request)
    if not outcome.retriable:  # final: a retried run is reported when it ends for good (or is poisoned)
        telemetry.record_run(outcome.record)
    if outcome.retriable:
        # Raising makes the host deliver the message again (up to maxDequeueCount, then the poison queue).
        raise RuntimeError(
            f"run {request.run_id} of {request.task} failed transiently: {outcome.record.error}"
        )


@bp.function_name("record_poisoned_run")
@bp.queue_trigger(arg_name="message", queue_name="%RUNS_QUEUE%-poison", connection="AzureWebJobsStorage")
async def record_poisoned_run(message: func.QueueMessage) -> None:
    # Not message.dequeue_count: that counts deliveries from the poison queue, not the attempts to run.
    telemetry.record_run(await record_poisoned(services(), message.get_body(), None))
