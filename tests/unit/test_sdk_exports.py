"""The SDK's public surface is deliberate: this test pins it."""

import plait


def test_all_is_pinned() -> None:
    assert plait.__all__ == [
        "task",
        "workflow",
        "dynamic",
        "conditional",
        "map_task",
        "LaunchPlan",
        "ProcessTask",
        "File",
        "Directory",
        "PlaitError",
        "NonRetryableError",
        "Client",
        "ExecutionFailedError",
        "RpcError",
        "NotFoundError",
        "InvalidArgumentError",
    ]
    for name in plait.__all__:
        assert getattr(plait, name) is not None
