"""The matchers, behind one interface (`base.Matcher`) and one registry: the CLI's choices,
the pipeline, the Ray batch and a result's lineage all read `MATCHERS`. Adding a matcher
is one module and one entry here (its settings become a section of the config file)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from sn9cloud.errors import ConfigError
from sn9cloud.matchers.base import DetectorRef, Matcher, Resources
from sn9cloud.matchers.baseline import BaselineMatcher
from sn9cloud.matchers.engine import EngineMatcher
from sn9cloud.matchers.keypoints import KeypointsMatcher

__all__ = ["MATCHERS", "DetectorRef", "Matcher", "MatcherRegistry", "Resources", "prepare"]


class MatcherRegistry:
    """Matchers by name, in the order they were registered (the first is the default)."""

    def __init__(self, matchers: Iterable[Matcher]) -> None:
        self._by_name: dict[str, Matcher] = {}
        for m in matchers:
            if m.name in self._by_name:
                raise ValueError(f"matcher {m.name!r} registered twice")
            self._by_name[m.name] = m

    def get(self, name: str) -> Matcher:
        try:
            return self._by_name[name]
        except KeyError:
            raise ConfigError(f"unknown matcher {name!r}: choose one of "
                              f"{', '.join(self.names())}") from None

    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def __iter__(self) -> Iterator[Matcher]:
        return iter(self._by_name.values())

    def register(self, matcher: Matcher) -> MatcherRegistry:
        """A new registry with ``matcher`` added (this one is left as it is)."""
        return MatcherRegistry([*self, matcher])


MATCHERS = MatcherRegistry([EngineMatcher(), KeypointsMatcher(), BaselineMatcher()])


def prepare(matcher: Matcher, models_dir: str) -> Resources:
    """What ``matcher`` needs, once per run: its detector located and its checksum read
    (the weights load on first use, once per process)."""
    if matcher.detector is None:
        return Resources()
    from pathlib import Path

    from sn9cloud.models.model_items import weights_checksum

    _, sha = weights_checksum(matcher.detector, Path(models_dir))
    return Resources(detector=DetectorRef(matcher.detector, str(models_dir), sha))
