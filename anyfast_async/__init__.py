"""anyfast-async: an asyncio client for AnyFast video generation tasks.

>>> import anyfast_async
>>> anyfast_async.TaskStatus.SUCCESS.is_terminal
True
"""

from __future__ import annotations

from ._client import AnyFast
from ._config import (
    CHINA_BASE_URL,
    DEFAULT_BASE_URL,
    UNSET,
    InsecureBaseURLWarning,
    Limits,
    PollPolicy,
    RetryPolicy,
    Throttle,
    Timeout,
    UnsetType,
)
from ._exceptions import (
    AnyFastError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    PermissionDeniedError,
    RateLimitError,
    ResponseDecodeError,
    ResultExpiredError,
    ServerError,
    TaskFailedError,
    TaskNotFoundError,
    TaskStalledError,
    WaitTimeoutError,
)
from ._failures import FailureKind, UpstreamError
from ._models import (
    CreatedTask,
    DashScopeOutput,
    DashScopePayload,
    DashScopeUsage,
    SeedanceContent,
    SeedancePayload,
    SeedanceUsage,
    Task,
    TaskStatus,
)
from ._redis import Claim, RedisStore
from ._requests import (
    CreateRequest,
    ImageToVideo,
    Ratio,
    RawCreate,
    ReferenceToVideo,
    Resolution,
    TextToVideo,
    VideoEdit,
)
from ._store import SQLiteStore, StoreError, TaskRecord, TaskStore
from ._updates import Outcomes, TaskUpdate, WatcherStatistics
from ._version import __version__
from ._watch import CreateAndWatchStream, TaskHandle, UpdateStream, Watcher

__all__ = [
    "CHINA_BASE_URL",
    "DEFAULT_BASE_URL",
    "UNSET",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AnyFast",
    "AnyFastError",
    "AuthenticationError",
    "BadRequestError",
    "Claim",
    "CreateAndWatchStream",
    "CreateRequest",
    "CreatedTask",
    "DashScopeOutput",
    "DashScopePayload",
    "DashScopeUsage",
    "FailureKind",
    "ImageToVideo",
    "InsecureBaseURLWarning",
    "Limits",
    "Outcomes",
    "PermissionDeniedError",
    "PollPolicy",
    "RateLimitError",
    "Ratio",
    "RawCreate",
    "RedisStore",
    "ReferenceToVideo",
    "Resolution",
    "ResponseDecodeError",
    "ResultExpiredError",
    "RetryPolicy",
    "SQLiteStore",
    "SeedanceContent",
    "SeedancePayload",
    "SeedanceUsage",
    "ServerError",
    "StoreError",
    "Task",
    "TaskFailedError",
    "TaskHandle",
    "TaskNotFoundError",
    "TaskRecord",
    "TaskStalledError",
    "TaskStatus",
    "TaskStore",
    "TaskUpdate",
    "TextToVideo",
    "Throttle",
    "Timeout",
    "UnsetType",
    "UpdateStream",
    "UpstreamError",
    "VideoEdit",
    "WaitTimeoutError",
    "Watcher",
    "WatcherStatistics",
    "__version__",
]
