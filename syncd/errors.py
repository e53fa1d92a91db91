"""One exception tree, classified by what the caller should do.

::

    SyncdError
     ├── TransientError        retry later (network down, 5xx, timeouts); never a deletion
     ├── FatalError            stop this pair and tell the admin (bad credentials, missing bucket)
     │    ├── ConfigError      the config file is wrong (names file, key, problem)
     │    ├── LockedError      another run of this pair holds the lock
     │    └── GuardError       a safety guard refused the plan; nothing was changed
     │         ├── SideLooksEmpty
     │         └── TooManyDeletes
     ├── ItemError             skip this path, record it, retry it with backoff
     │    ├── NotFound
     │    ├── PreconditionFailed   the target changed under us (If-Match): re-scan the path
     │    ├── ChangedWhileReading  the source changed while it was copied
     │    │    └── ContentMismatch     its bytes do not have the SHA-256 they were said to have
     │    └── UnsafePath           a name that cannot be stored safely on the other side
     └── ControlError          a command and the daemon could not agree; ``exit_code`` ends the command
          ├── ProtocolError        the daemon refused the request, or broke the protocol: say why
          └── DaemonUnavailable    nobody answers on the socket: try the next one, or run in-process

Foreign errors (OSError, boto3, ctypes, HTTP) are mapped at the remote boundary and chained
with ``raise ... from exc`` so the original stays visible in debug logs.
"""

from __future__ import annotations

from syncd.outcomes import ExitCode


class SyncdError(Exception):
    """Base of every error syncd raises on purpose."""


class TransientError(SyncdError):
    """Worth retrying later: the world may be different then."""


class FatalError(SyncdError):
    """The pair cannot run until an admin fixes something."""


class ConfigError(FatalError):
    """The configuration is invalid; the message names the file, the key and the problem."""


class LockedError(FatalError):
    """Another run of the same pair is in progress."""


class GuardError(FatalError):
    """A safety guard refused the plan before anything changed."""


class SideLooksEmpty(GuardError):
    """One side lists empty (or its root is missing) while the index knows files there."""


class TooManyDeletes(GuardError):
    """The plan deletes more of the pair's files than the configured ratio allows."""


class ItemError(SyncdError):
    """This one path failed; the others go on."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


class NotFound(ItemError):
    def __init__(self, path: str, message: str = "not found") -> None:
        super().__init__(path, message)


class PreconditionFailed(ItemError):
    def __init__(self, path: str, message: str = "changed since it was listed") -> None:
        super().__init__(path, message)


class ChangedWhileReading(ItemError):
    def __init__(self, path: str, message: str = "changed while it was being read") -> None:
        super().__init__(path, message)


class ContentMismatch(ChangedWhileReading):
    """The bytes read do not have the SHA-256 given for them (the listing's, or metadata's)."""

    def __init__(self, path: str, message: str = "content does not match its hash") -> None:
        super().__init__(path, message)


class UnsafePath(ItemError):
    pass


class ControlError(SyncdError):
    """Talking with the daemon over its control socket failed; ``exit_code`` is the one the
    command should end with (:class:`syncd.outcomes.ExitCode`)."""

    def __init__(self, message: str, exit_code: int = ExitCode.USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ProtocolError(ControlError):
    """A request the daemon cannot serve, or a reply that breaks the protocol; the message is
    sent to the peer (or shown to the user) as is."""


class DaemonUnavailable(ControlError):
    """Nobody answers on the socket (no daemon runs, or it listens elsewhere)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ExitCode.FATAL)
