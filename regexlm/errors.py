"""The errors regexlm raises, in one place.

Every error a user can cause derives from :class:`RegexlmError`, so callers (the HTTP server
above all) can turn it into a clear message without a stack trace. Errors about the pattern
derive from :class:`RegexError`, which is also a :class:`ValueError`: a bad pattern is a bad
argument value.
"""

from __future__ import annotations


class RegexlmError(Exception):
    """Base class of every error regexlm raises on purpose."""


class RegexError(RegexlmError, ValueError):
    """The pattern cannot be used for constrained generation."""


class RegexSyntaxError(RegexError):
    """The pattern is not valid Python `re` syntax; carries Python's message and position."""

    def __init__(self, message: str, pattern: str | None = None, position: int | None = None):
        self.msg = message
        self.pattern = pattern
        self.position = position
        where = f" at position {position}" if position is not None else ""
        super().__init__(f"invalid regular expression{where}: {message}")


class UnsupportedRegexError(RegexError):
    """The pattern is valid Python but uses a construct a finite automaton cannot express."""

    def __init__(self, construct: str, position: int | None = None, pattern: str | None = None):
        self.construct = construct
        self.position = position
        self.pattern = pattern
        where = f" at position {position}" if position is not None else ""
        super().__init__(
            f"unsupported construct{where}: {construct} cannot be compiled to a finite automaton; "
            "rewrite the pattern without it"
        )


class PatternTooComplexError(RegexError):
    """Compiling the pattern hit a size or time limit."""

    def __init__(self, message: str, *, limit: str | None = None):
        self.limit = limit
        super().__init__(message)


class EmptyLanguageError(RegexError):
    """No string (made of tokens the model can produce) matches the pattern."""


class ModelLoadError(RegexlmError):
    """A model or tokenizer could not be loaded; the message names the path."""


class PromptTooLongError(RegexlmError, ValueError):
    """The prompt plus ``max_new_tokens`` does not fit the model's context."""
