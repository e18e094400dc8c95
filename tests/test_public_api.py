"""The public surface: exactly the names in __all__, each importable and documented."""

from __future__ import annotations

import inspect

import anyfast_async
import anyfast_async.testing


def test_all_is_sorted_and_exact() -> None:
    """__all__ lists every public name of the package, and only those."""
    public = {
        name
        for name, value in vars(anyfast_async).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }
    assert set(anyfast_async.__all__) - {"__version__"} == public
    assert len(anyfast_async.__all__) == len(set(anyfast_async.__all__))


def test_every_public_name_has_a_docstring() -> None:
    """Every exported class and function says what it does."""
    for module in (anyfast_async, anyfast_async.testing):
        for name in module.__all__:
            value = getattr(module, name)
            if inspect.isclass(value) or inspect.isfunction(value):
                assert inspect.getdoc(value), f"{module.__name__}.{name} has no docstring"


def test_error_tree() -> None:
    """The error classes form the documented tree."""
    e = anyfast_async
    assert issubclass(e.APITimeoutError, e.APIConnectionError)
    assert issubclass(e.APITimeoutError, TimeoutError)
    assert issubclass(e.WaitTimeoutError, TimeoutError)
    for cls in (
        e.BadRequestError,
        e.AuthenticationError,
        e.PermissionDeniedError,
        e.TaskNotFoundError,
        e.RateLimitError,
        e.ServerError,
    ):
        assert issubclass(cls, e.APIStatusError)
    for base in (
        e.APIConnectionError,
        e.APIStatusError,
        e.ResponseDecodeError,
        e.TaskFailedError,
        e.WaitTimeoutError,
    ):
        assert issubclass(base, e.AnyFastError)


def test_version() -> None:
    """The version is a string, also in the User-Agent."""
    from anyfast_async._transport import default_user_agent

    assert isinstance(anyfast_async.__version__, str)
    assert f"anyfast-async/{anyfast_async.__version__}" in default_user_agent()
