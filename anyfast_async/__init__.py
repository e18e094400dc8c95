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
)
from ._create import (
    CreatedTask,
    CreateRequest,
    ImageToVideo,
    RawCreate,
    ReferenceToVideo,
    TextToVideo,
    VideoEdit,
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
    WaitTimeoutError,
)
from ._models import (
    DashScopeOutput,
    DashScopePayload,
    DashScopeUsage,
    SeedanceContent,
    SeedancePayload,
    SeedanceUsage,
    Task,
    TaskStatus,
    TaskUpdate,
    WatcherStatistics,
)
from ._scheduler import TaskHandle, UpdateStream, Watcher
from ._version import __version__

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
    "CreateRequest",
    "CreatedTask",
    "DashScopeOutput",
    "DashScopePayload",
    "DashScopeUsage",
    "ImageToVideo",
    "InsecureBaseURLWarning",
    "Limits",
    "PermissionDeniedError",
    "PollPolicy",
    "RateLimitError",
    "RawCreate",
    "ReferenceToVideo",
    "ResponseDecodeError",
    "ResultExpiredError",
    "RetryPolicy",
    "SeedanceContent",
    "SeedancePayload",
    "SeedanceUsage",
    "ServerError",
    "Task",
    "TaskFailedError",
    "TaskHandle",
    "TaskNotFoundError",
    "TaskStatus",
    "TaskUpdate",
    "TextToVideo",
    "Throttle",
    "Timeout",
    "UpdateStream",
    "VideoEdit",
    "WaitTimeoutError",
    "Watcher",
    "WatcherStatistics",
    "__version__",
]
