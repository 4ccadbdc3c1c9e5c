"""YAML read the way a config must be: safe, strict and bounded.

Why: ``yaml.safe_load`` runs no code but accepts an alias bomb (a few hundred bytes that expand
to gigabytes: 38 s and 2.7 GB before a MemoryError), 5,000-deep nesting (a RecursionError
traceback) and a key given twice (the last silently wins). Here the values the aliases expand to
are counted before anything is built (a cycle is refused), depth and size are capped, and a
duplicate key is refused with its line; every failure is a ValueError that names the source."""
from __future__ import annotations

import yaml

from ..errors import InputError

#: limits far above any real config (ours hold a few hundred values, depth 3, a few kB)
MAX_NODES, MAX_DEPTH, MAX_BYTES = 100_000, 50, 1 << 20


def _expanded_size(node, memo: dict) -> int:
    """Nodes ``node`` stands for once every alias is expanded (each shared node counted once per use)."""
    key = id(node)
    if key in memo and memo[key] is None:
        raise yaml.YAMLError(f"an alias at line {node.start_mark.line + 1} refers to a value that contains it")
    if key not in memo:
        memo[key] = None  # being counted: met again below itself, it is a cycle
        size = 1
        if isinstance(node, yaml.SequenceNode):
            size += sum(_expanded_size(n, memo) for n in node.value)
        elif isinstance(node, yaml.MappingNode):
            size += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
        memo[key] = size
    return memo[key]


class _StrictLoader(yaml.SafeLoader):
    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None:
            size = _expanded_size(node, {})
            if size > MAX_NODES:
                raise yaml.YAMLError(f"its aliases (*name) expand to {size:,} values, more than the {MAX_NODES:,} a "
                                     f"config may hold: an alias bomb")
        return node

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.YAMLError(f"nested more than {MAX_DEPTH} levels deep at line {mark.line + 1}")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue  # the base class reports unhashable keys
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {str(key)[:80]!r} is given twice (lines {seen[key] + 1} and "
                                f"{key_node.start_mark.line + 1}); keep one", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str | bytes, source: str):
    """The value ``text`` holds (see the module docstring); ``source`` names it in errors."""
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            raise InputError(f"{source}: {len(text):,} bytes; a config is read up to {MAX_BYTES:,} bytes")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise InputError(f"{source}: not UTF-8 text (byte {err.start}: {text[err.start:err.start + 1]!r}); save "
                             f"the config as UTF-8") from None
    if len(text) > MAX_BYTES:
        raise InputError(f"{source}: {len(text):,} characters; a config is read up to {MAX_BYTES:,}")
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        raise InputError(f"{source}: not valid YAML: {str(err)[:500]}") from None
    except RecursionError:
        raise InputError(f"{source}: nested too deeply to read") from None
