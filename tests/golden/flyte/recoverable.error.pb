
é
USER:RecoverableÂTrace:

    Traceback (most recent call last):
      File "/work/wt/flyte/.venv-flyte/lib/python3.11/site-packages/flytekit/core/base_task.py", line 767, in dispatch_execute
        native_outputs = self.execute(**native_inputs)
                         ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
      File "/work/wt/flyte/.venv-flyte/lib/python3.11/site-packages/flytekit/core/python_function_task.py", line 214, in execute
        return self._task_function(**kwargs)
               ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
      File "/work/wt/flyte/examples/flyte/flyte_examples/kinds.py", line 92, in flaky
        raise FlyteRecoverableException(f"attempt {attempt} fails")
    flytekit.exceptions.user.FlyteRecoverableException: USER:Recoverable: error=attempt 0 fails

Message:

    FlyteRecoverableException: USER:Recoverable: error=attempt 0 fails *Šê¶ØÀ–‡¡