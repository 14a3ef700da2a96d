"""plait's benchmarks: `python -m benchmarks` runs plait and flytekit side by side.

Never part of CI; see README.md.
"""
