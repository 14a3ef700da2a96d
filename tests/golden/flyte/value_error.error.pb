
È
USER:RuntimeError¢Trace:

    Traceback (most recent call last):
      File "/work/wt/flyte/.venv-flyte/lib/python3.11/site-packages/flytekit/core/base_task.py", line 767, in dispatch_execute
        native_outputs = self.execute(**native_inputs)
                         ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
      File "/work/wt/flyte/.venv-flyte/lib/python3.11/site-packages/flytekit/core/python_function_task.py", line 214, in execute
        return self._task_function(**kwargs)
               ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
      File "/work/wt/flyte/examples/flyte/flyte_examples/kinds.py", line 99, in fail
        raise ValueError(message)
    ValueError: boom

Message:

    ValueError: boom *‡ê¶Ø‘ö…¢