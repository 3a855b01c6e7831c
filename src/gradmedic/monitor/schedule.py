"""When to record: every k steps, at given steps, or by any predicate."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gradmedic.errors import ConfigError

__all__ = ["Schedule", "ScheduleLike"]


@dataclass(frozen=True)
class Schedule:
    """Decides whether a (0-based) optimizer step is recorded.

    ``Schedule(every=10)`` records steps 0, 10, 20, ...; ``Schedule(steps=[0, 5])`` only those;
    ``Schedule(every=0)`` never records; with ``steps`` and no ``every`` only those steps. ``start``/``stop`` bound the range (``stop`` exclusive).

    Example::

        >>> [s for s in range(12) if Schedule(every=5)(s)]
        [0, 5, 10]
    """

    every: int | None = None
    steps: frozenset[int] = field(default_factory=frozenset)
    start: int = 0
    stop: int | None = None
    predicate: Callable[[int], bool] | None = None

    def __post_init__(self) -> None:
        if self.every is not None and self.every < 0:
            raise ConfigError(f"every must be >= 0 (0 = never), got {self.every}")

    def __call__(self, step: int) -> bool:
        if step < self.start or (self.stop is not None and step >= self.stop):
            return False
        if self.predicate is not None:
            return bool(self.predicate(step))
        if step in self.steps:
            return True
        every = self.every
        if every is None:  # default: every step, unless explicit steps were given
            every = 0 if self.steps else 1
        return every > 0 and (step - self.start) % every == 0

    @classmethod
    def coerce(cls, value: ScheduleLike, *, name: str = "schedule") -> Schedule:
        """Accept ``True`` (every step), ``False``/``None`` (never), an int k (every k steps),
        an iterable of step numbers, a callable ``step -> bool`` or a Schedule."""
        if isinstance(value, Schedule):
            return value
        if value is True:
            return cls(every=1)
        if value is False or value is None:
            return cls(every=0)
        if isinstance(value, int):
            return cls(every=value)
        if callable(value):
            return cls(every=0, predicate=value)
        if isinstance(value, Iterable):
            steps = frozenset(int(s) for s in value)
            return cls(every=0, steps=steps)
        raise ConfigError(
            f"{name} must be True/False, an int k (every k steps), a list of steps or a "
            f"callable step -> bool; got {value!r}"
        )


ScheduleLike = Schedule | bool | int | Iterable[int] | Callable[[int], bool] | None
