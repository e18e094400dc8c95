"""The public surface: exactly the names in __all__, each importable and documented."""

from __future__ import annotations

import builtins
import inspect
import re

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


# Classes whose constructor is internal: users get instances from the library.
_MADE_BY_THE_LIBRARY = {"TaskHandle", "Watcher", "UpdateStream", "CreateAndWatchStream", "FakeTask"}


def _public_callables() -> list[tuple[str, object, str]]:
    """(name, function, the docstring that documents its parameters) of the public API."""
    found: list[tuple[str, object, str]] = []
    for module in (anyfast_async, anyfast_async.testing):
        for name in module.__all__:
            value = getattr(module, name)
            if inspect.isfunction(value):
                found.append((name, value, inspect.getdoc(value) or ""))
            if not inspect.isclass(value) or issubclass(value, BaseException):
                continue
            # Methods a public class inherits from the package's own classes count too.
            members = {
                attr: member
                for cls in reversed(value.__mro__)
                if cls.__module__.startswith("anyfast_async")
                for attr, member in vars(cls).items()
            }
            for attr, member in members.items():
                if attr.startswith("_") and attr != "__init__":
                    continue
                if attr == "__init__" and name in _MADE_BY_THE_LIBRARY:
                    continue
                if attr == "__init__" and getattr(value, "_is_protocol", False):
                    continue  # a protocol is not made, only implemented
                function = getattr(member, "__func__", member)
                if inspect.isfunction(function):
                    # A constructor's arguments are documented on its class.
                    doc = inspect.getdoc(value if attr == "__init__" else function) or ""
                    found.append((f"{name}.{attr}", function, doc))
    return found


def test_every_public_parameter_is_documented() -> None:
    """Each parameter of each public function, method and constructor is named in its
    docstring (its Args section, or the class's for a constructor)."""
    callables = _public_callables()
    assert len(callables) > 70
    undocumented = [
        f"{name}({parameter})"
        for name, function, doc in callables
        for parameter in inspect.signature(function).parameters  # type: ignore[arg-type]
        if parameter not in ("self", "cls", "args") and parameter not in doc
    ]
    assert undocumented == []


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


def test_no_private_type_in_a_public_signature() -> None:
    """The annotations of the public API name only types a user can import: the package's
    public names, builtins, typing and collections.abc, and qualified outside names
    (``os.PathLike``, ``aiohttp.ClientSession``). No ``_Unset``, no alias of a private module."""
    known = {"Any", "Literal", "Callable", "Awaitable", "Iterable", "Mapping", "Sequence", "Path"}
    leaks = []
    for name, function, _ in _public_callables():
        module = anyfast_async.testing if name.split(".")[0] in TESTING_NAMES else anyfast_async
        signature = inspect.signature(function)  # type: ignore[arg-type]
        annotations = [p.annotation for p in signature.parameters.values()]
        annotations.append(signature.return_annotation)
        for annotation in annotations:
            if not isinstance(annotation, str):
                continue
            code = re.sub(r"'[^']*'|\"[^\"]*\"", "", annotation)  # Literal values are not types
            for word in re.findall(r"[A-Za-z_][\w.]*", code):
                public = hasattr(module, word) and not word.startswith("_")
                if not (public or "." in word or word in known or hasattr(builtins, word)):
                    leaks.append(f"{name}: {word} in {annotation}")
    assert leaks == []


TESTING_NAMES = set(anyfast_async.testing.__all__)
