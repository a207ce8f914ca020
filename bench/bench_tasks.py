"""A bare Celery task for bench/tool_bench.py: the floor under the tool path.

It does what the tool path's transport does and nothing else: a task on the Redis broker,
run by the same worker, answering over the channel layer. No database, no validation.
"""

from __future__ import annotations

from celery import shared_task

from voice_platform.channel_send import channel_send_blocking


@shared_task(name="bench.bench_tasks.bench_echo", ignore_result=True)
def bench_echo(channel: str) -> None:
    channel_send_blocking(channel, {"type": "bench.echo"})
