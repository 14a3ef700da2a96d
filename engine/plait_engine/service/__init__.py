"""The engine's use cases. The gRPC servicers, the embedded runner and the CLI call these;
nothing above this layer touches the store."""

from plait_engine.service.executions import ExecutionsService, NodeData
from plait_engine.service.registry import RegisterResult, RegistryService

__all__ = ["ExecutionsService", "NodeData", "RegisterResult", "RegistryService"]
