"""A one-task workflow: what `plait run` costs beyond the task (imports, engine start, exit)."""

from plait import task, workflow


@task
def greet(who: str) -> str:
    """Say hello."""
    return f"hello {who}"


@workflow
def hello(who: str) -> str:
    return greet(who=who)
