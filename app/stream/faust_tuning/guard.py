"""Which of faust_tuning's patches keep a guarantee, and refusing to run without one of those.

Every patch names the Faust, mode or aiokafka code it replaces or relies on (its
targets) and the sha256 of that code's source in the versions it was written
against (`WRITTEN_AGAINST`, pinned in pyproject.toml and constraints.txt). A patch
installs only when every target is still that code:

- a **correctness** patch keeps a guarantee (no record lost, no commit past a record
  not processed, no failed send unnoticed, the right persisted offset). When one
  cannot install, `require` raises `UnsafeDependencies` and the worker does not start:
  running without it, or with a copy written for other code, could lose records
  silently.
- a **speed** patch only makes Faust faster. When one cannot install it is left out
  with a warning and Faust's own path runs.

To re-validate the patches against a new Faust or aiokafka, `python -m
app.stream.faust_tuning` prints every target, its sha256 and whether it still matches
(docs/operations.md, "Upgrading Faust").
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import logging
import textwrap
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Literal

from app.instances import ConfigError

log = logging.getLogger(__name__)

# The versions the patches were written against and checked with (tests/unit/test_faust_guard.py).
WRITTEN_AGAINST = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0", "mode-streaming": "0.7.1"}

Kind = Literal["correctness", "speed"]


@dataclass(frozen=True)
class Target:
    """Code a patch replaces or relies on: `module:Qual.name` and its source's sha256.

    `calls`, when given, must appear in the source (a structural check: a patch of a
    method matters only while the code that should reach it still calls it). Code
    without Python source (Faust's compiled iterator) is pinned by the package version.
    """

    where: str
    sha256: str = ""
    calls: str = ""
    version_of: str = ""


@dataclass(frozen=True)
class Patch:
    point: int
    title: str
    kind: Kind
    targets: tuple[Target, ...]


_CONSUMER = "faust.transport.consumer:Consumer"
_ACCUMULATOR = "aiokafka.producer.message_accumulator:MessageAccumulator"

PATCHES: tuple[Patch, ...] = (
    Patch(
        1,
        "the consumer's per-message hand-off (forked drain loop)",
        "speed",
        (Target(f"{_CONSUMER}._drain_messages", "8f35dd7a11144daa6ec9a3739a497b03a9dd6b57cca18aa861bb4a549400fc68"),),
    ),
    Patch(
        2,
        "the lean Monitor sensor",
        "speed",
        (Target("faust.sensors.monitor:Monitor", "2d7630656a22139f66aaba2bb4d929b1ae903d5aa77a751c0f2652095aaaf810"),),
    ),
    Patch(
        3,
        "node batching in the worker's producer (Output learns each batch's outcome there)",
        "correctness",
        (
            Target(
                f"{_ACCUMULATOR}.drain_by_nodes", "cc2f3eafe1e19ba626a08842cc49ea92f1d6eda5e370501c261c3b9923f2aeca"
            ),
            Target(f"{_ACCUMULATOR}._append_batch", "edfa9c58877ae4d79c271edcba7276aa7409d4937358f722c5fcec9b6887b320"),
            Target(f"{_ACCUMULATOR}._pop_batch", "6dc3d1b621452ef16a0ed33522b440b01257ee7cb3439cedf1688642c15f44cd"),
            Target(f"{_ACCUMULATOR}.flush", "2236ca5ca9e4294c52abc7190a374c70797d069e8ec21a69e313726c8e2b70e3"),
            Target(
                "faust.transport.drivers.aiokafka:Producer._producer_type",
                "1125698750a34000202374c6ab9a252e72b9f4702f9ec67515177b47c4632780",
            ),
        ),
    ),
    Patch(
        4,
        "Output and TableWriter: failed sends crash the worker, acknowledged changelog batches set the persisted offset",
        "correctness",
        (
            Target(
                "aiokafka.producer.producer:AIOKafkaProducer.send",
                "ec0d5784d9f393835706874d2a00e6bd5af7e65b27fb94bc0a2cdf31f13187c9",
            ),
            Target(f"{_ACCUMULATOR}.add_message", "2f8ee718e1d7bb000ef5549756de8b9ab698c238a9cbd1eba36a0ea124c13368"),
            Target(
                "aiokafka.producer.message_accumulator:MessageBatch",
                "36a7b1dac89d2910c83a3668792154a180bd2e9ac09497c6ef7fda1328bf078d",
            ),
            Target(
                "faust.tables.base:Collection._on_changelog_sent",
                "146c7ea5c7530a94ff7c6a74d8c72a671f2ac325fdbd98cbceeee130125a36ae",
            ),
            Target(
                "faust.tables.base:Collection.partition_for_key",
                "1fcffc344730fe21a1d7d227e7d5fea5404391e821e64f1db4bdb63f23d1e7e7",
            ),
            Target(
                "faust.stores.rocksdb:Store._set", "40e273d6ef07db1e7a19f5546d8d0e4864834e3d5165c721f53c4f7a930b668d"
            ),
            Target(
                "faust.stores.rocksdb:Store._db_for_partition",
                "abc425297c7542f04b97f8bc78bc90367523d122327fa7530de55a70c597ba37",
            ),
            Target(
                "faust.stores.rocksdb:Store.set_persisted_offset",
                "6fd1e96c0809530bd87de18c3e36f2e10eeb1d08bd9c4e72573aa1518f603a82",
            ),
        ),
    ),
    Patch(
        5,
        "resuming an active flow keeps the stream buffers (records fetched during recovery are not lost)",
        "correctness",
        (
            Target(
                "mode.utils.queues:FlowControlEvent", "1da8f905ab655e3927cb96e28dfa38354bd18c849554fa86bf118439dbe6b1a6"
            ),
            Target(
                "mode.utils.queues:FlowControlQueue", "15f15a87fd6de428d627e266d2aeb0e44d86538b978f2f2ce42f454061214841"
            ),
        ),
    ),
    Patch(
        6,
        "no offset gap filled: no commit past a record not processed",
        "correctness",
        (
            Target(f"{_CONSUMER}._add_gap", "f1cc1db634f5ea0932f4ad9a91bccf0c9e5f490f6c1d7bff312fdeab50fde8e9"),
            Target(f"{_CONSUMER}._new_offset", "2b29afe4dd9a65a3b1a0acbaf09b9bc3a7f98a168a3dd2924db879fb4f9301b3"),
            Target(f"{_CONSUMER}._drain_messages", calls="self._add_gap("),
        ),
    ),
    Patch(
        7,
        "the consumer's fetch wait from the settings",
        "speed",
        (
            Target(
                "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread._create_worker_consumer",
                "c179c0bdb9755c3ace11c2b9f55d53576d55026dea7eb678f348c08292dfda9e",
            ),
            Target("aiokafka.consumer.consumer:AIOKafkaConsumer.start", calls="self._fetch_max_wait_ms"),
        ),
    ),
    Patch(
        8,
        "an agent's loop over its stream (events())",
        "speed",
        (
            Target("faust.streams:Stream._c_aiter", "e1c5071a8280fd46033bd3fe3322fb1746ed3900d8ba57060d25aa617f4caa74"),
            Target("faust.streams:Stream.events", "bed62827877656f659638062c1d5bb95ef59dbcbb247f2276c741254294d7d2d"),
            Target("faust.streams:_CStreamIterator", version_of="faust-streaming"),
        ),
    ),
    Patch(
        9,
        "decoding a raw-bytes topic's record (BytesTopic)",
        "speed",
        (
            Target(
                "faust.topics:Topic._compile_decode", "f30130922bceddf78a58729ea7fc485d3f95c54478caf55683e6568ac2e206bc"
            ),
            Target(
                "faust.serializers.schemas:Schema.compile",
                "bd271ec59690d13ea72e0b8591acd0a5d7d8ed5139fde8f299b4649e7fcc186e",
            ),
        ),
    ),
)


class UnsafeDependencies(ConfigError):
    """A correctness patch cannot install on the installed Faust/aiokafka: the worker must not start."""


def installed_versions() -> dict[str, str]:
    found = {}
    for name in WRITTEN_AGAINST:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


# Faust's and aiokafka's code as it was before hookstream replaced any of it: a patch module
# records what it replaces at import (`keep_original`), so that a check made after an install
# (a second worker in one process, as in the tests) compares Faust's code, not hookstream's.
_ORIGINALS: dict[str, Any] = {}


def keep_original(where: str) -> Any:
    """The object at `where` before any patch: recorded on the first call, returned ever after."""
    if where not in _ORIGINALS:
        _ORIGINALS[where] = _current(where)
    return _ORIGINALS[where]


def resolve(where: str) -> Any:
    """The code at `where` (`module:Qual.name`) as Faust or aiokafka ship it."""
    if where in _ORIGINALS:
        return _ORIGINALS[where]
    return _current(where)


def _current(where: str) -> Any:
    module_name, _, qualname = where.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = inspect.getattr_static(obj, part) if inspect.isclass(obj) else getattr(obj, part)
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    if isinstance(obj, property):
        obj = obj.fget
    return obj


@functools.cache
def source_of(where: str) -> str | None:
    """The dedented source of `where`; None when it is gone or has no Python source.

    Cached: the installed code does not change while a process runs, and the first check of
    every target costs 0.1 to 0.3 s (mostly `inspect` parsing the modules of the classes).
    """
    try:
        return textwrap.dedent(inspect.getsource(resolve(where)))
    except (ImportError, AttributeError, TypeError, OSError):
        return None


def digest(where: str) -> str | None:
    source = source_of(where)
    return None if source is None else hashlib.sha256(source.encode()).hexdigest()


def problems(patch: Patch, versions: dict[str, str] | None = None) -> list[str]:
    """Why `patch` cannot install here (empty: it can)."""
    versions = versions if versions is not None else installed_versions()
    found = []
    for target in patch.targets:
        if target.version_of:
            if versions.get(target.version_of) != WRITTEN_AGAINST[target.version_of]:
                found.append(
                    f"{target.where} has no source to compare and {target.version_of} is not "
                    f"{WRITTEN_AGAINST[target.version_of]}"
                )
            continue
        source = source_of(target.where)
        if source is None:
            found.append(f"{target.where} is gone")
            continue
        if target.sha256 and hashlib.sha256(source.encode()).hexdigest() != target.sha256:
            found.append(f"{target.where} changed")
        if target.calls and target.calls not in source:
            found.append(f"{target.where} no longer calls {target.calls.rstrip('(')}")
    return found


def _versions_text(versions: dict[str, str]) -> str:
    return ", ".join(f"{name} {version}" for name, version in versions.items())


def require() -> None:
    """Raise `UnsafeDependencies`, naming the versions, when any correctness patch cannot install."""
    versions = installed_versions()
    failing = [(patch, problems(patch, versions)) for patch in PATCHES if patch.kind == "correctness"]
    failing = [(patch, why) for patch, why in failing if why]
    if not failing:
        return
    lines = [
        f"the worker will not start: hookstream's correctness patches to Faust cannot install on "
        f"{_versions_text(versions)}; they are written against {_versions_text(WRITTEN_AGAINST)}.",
    ]
    for patch, why in failing:
        lines.append(f"  point {patch.point} ({patch.title}): {'; '.join(why)}")
    lines.append(
        "Install the pinned versions (pip install -c constraints.txt -e .), or re-validate the patches "
        'against the new code (docs/operations.md, "Upgrading Faust").'
    )
    raise UnsafeDependencies("\n".join(lines))


def speed_patch_applies(point: int) -> bool:
    """True when speed patch `point` can install; otherwise warns once that Faust's own path runs."""
    patch = next(p for p in PATCHES if p.point == point)
    assert patch.kind == "speed", f"point {point} is a correctness patch: use require()"
    why = problems(patch)
    if why:
        log.warning(
            "faust_tuning point %d (%s) left out, Faust's own path runs: %s (written against %s, installed %s)",
            point,
            patch.title,
            "; ".join(why),
            _versions_text(WRITTEN_AGAINST),
            _versions_text(installed_versions()),
        )
        return False
    return True


def report() -> list[str]:
    """One line per target: its current sha256 and whether it matches (for re-validation)."""
    lines = [f"installed: {_versions_text(installed_versions())}; written against: {_versions_text(WRITTEN_AGAINST)}"]
    for patch in PATCHES:
        why = problems(patch)
        lines.append(f"point {patch.point} [{patch.kind}] {patch.title}: {'ok' if not why else '; '.join(why)}")
        for target in patch.targets:
            if target.sha256:
                lines.append(f"    {target.where} {digest(target.where)}")
    return lines
