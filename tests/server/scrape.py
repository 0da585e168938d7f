"""Read a ``/metrics`` answer with prometheus_client's own text parser.

``samples(text)`` maps ``(sample name, frozenset of label pairs)`` to the value, so tests look a
sample up by its labels whatever order or number formatting the exposition uses.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of the exposition; a malformed one makes the parser raise."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def sample(text: str, name: str, default: float | None = None, **labels: str) -> float:
    """The value of one sample; ``default`` when absent (or an assertion error when None)."""
    found = samples(text).get((name, frozenset(labels.items())))
    if found is None:
        assert default is not None, f"no sample {name}{labels} in the exposition"
        return default
    return found


def families(text: str) -> dict[str, str]:
    """Metric family name -> type (counter, gauge, histogram, ...)."""
    return {family.name: family.type for family in text_string_to_metric_families(text)}
