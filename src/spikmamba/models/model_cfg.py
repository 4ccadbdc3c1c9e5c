"""One typed description per model (``model.model_cfg``): the input it takes, the classes it
gives, and, when its weights came from a folder or the zoo, where from and what they were
trained on. It replaces two untyped dicts (a registered ``default_cfg`` that ignored the
arguments a model was built with, and a weights folder's ``pretrained_cfg``)."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class InputCfg:
    """What one sample must look like: ``channels`` x ``size`` pixels (an int when square), over
    ``frames`` time steps, made by ``representation`` and scaled as ``normalisation`` says."""

    channels: int
    frames: int
    size: int | tuple[int, int]
    representation: str
    normalisation: str = ""


@dataclass(frozen=True)
class ModelCfg:
    name: str
    input: InputCfg
    num_classes: int
    #: the class names the weights were trained on (None: random weights)
    classes: tuple[str, ...] | None = None
    #: the weights folder or zoo entry the weights came from (None: random weights)
    weights: str | None = None
    #: that folder's config.json as read: kwargs, representation, transforms, geometry, ...
    record: Mapping = field(default_factory=dict)

    @classmethod
    def registered(cls, name: str, defaults: Mapping) -> ModelCfg:
        """The defaults a model is registered with (``register_model(default_cfg={...})``)."""
        inp = dict(defaults.get("input", {}))
        return cls(name, InputCfg(int(inp.get("channels", 0)), int(inp.get("frames", 0)), inp.get("size", 0),
                                  str(inp.get("representation", "")), str(inp.get("normalisation", ""))),
                   int(defaults.get("num_classes", 0)))

    def built(self, model) -> ModelCfg:
        """These defaults with the arguments ``model`` was built with (its ``in_chans``,
        ``num_frames``, ``img_size``, ``num_classes`` where it has them)."""
        size = getattr(model, "img_size", self.input.size)
        if isinstance(size, (tuple, list)):
            size = int(size[0]) if len(set(size)) == 1 else (int(size[0]), int(size[1]))
        inp = dataclasses.replace(self.input, channels=int(getattr(model, "in_chans", self.input.channels)),
                                  frames=int(getattr(model, "num_frames", self.input.frames)), size=size)
        return dataclasses.replace(self, input=inp, num_classes=int(getattr(model, "num_classes", self.num_classes)))

    def with_weights(self, source: str, record: Mapping) -> ModelCfg:
        """This description once weights from ``source`` (a folder) are loaded, ``record`` its config."""
        classes = record.get("classes")
        return dataclasses.replace(self, weights=str(source), record=dict(record),
                                   classes=tuple(str(c) for c in classes) if classes is not None else None)

    def to_dict(self) -> dict:
        """As plain data (JSON-ready), in the shape of the old ``default_cfg`` plus the weights' fields."""
        d = dataclasses.asdict(self)
        d["input"]["size"] = list(d["input"]["size"]) if isinstance(d["input"]["size"], tuple) else d["input"]["size"]
        d["classes"] = list(self.classes) if self.classes is not None else None
        d["record"] = dict(self.record)
        return d
