"""gRPC adapters over the engine: registry, executions, workers."""
