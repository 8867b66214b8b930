"""Static activation memory plan: one arena, offsets chosen by liveness, outputs placed over dead inputs.

Buffers live from the step that writes them to the last step that reads them (the model input from the copy
in, the model output to the copy out). Steps run in order; each new output takes the position that keeps the
arena smallest among: over an input it reads for the last time (at ``input - distance``, the kernel's safe
in-place distance), or just above / below any live buffer. Offsets float while planning and are shifted to
start at 0 at the end. A kernel whose output overlaps its input gets a row buffer, planned the same way, and
a kernel that needs working memory (``Step.scratch_bytes``) gets it for its own step only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgekd.codegen.lower import Lowered


@dataclass
class Buffer:
    key: str
    size: int
    first: int
    last: int
    offset: int = 0

    def live_with(self, first: int, last: int) -> bool:
        return self.first <= last and first <= self.last


@dataclass
class Plan:
    arena_bytes: int
    buffers: dict[str, Buffer]
    in_place: list[int] = field(default_factory=list)  # steps whose output overlaps their input

    def offset(self, key: str) -> int:
        return self.buffers[key].offset

    def to_dict(self) -> dict[str, object]:
        return {"arena_bytes": self.arena_bytes, "in_place_steps": self.in_place,
                "buffers": {k: {"offset": b.offset, "bytes": b.size, "live": [b.first, b.last]}
                            for k, b in self.buffers.items()}}


def tensor_key(t: int) -> str:
    return f"t{t}"


def _place(buf: Buffer, placed: list[Buffer], partners: dict[str, int]) -> int:
    live = [b for b in placed if b.live_with(buf.first, buf.last)]
    candidates = {0} if not live else set()
    for b in live:
        candidates.update((b.offset + b.size, b.offset - buf.size))
        if b.key in partners:
            candidates.add(b.offset - partners[b.key])

    def fits(o: int) -> bool:
        for b in live:
            above = o >= b.offset + b.size
            if b.key in partners:
                if not (above or o <= b.offset - partners[b.key]):
                    return False
            elif not (above or o + buf.size <= b.offset):
                return False
        return True

    lo = min((b.offset for b in placed), default=0)
    hi = max((b.offset + b.size for b in placed), default=0)
    best = min((max(hi, o + buf.size) - min(lo, o), abs(o), o) for o in candidates if fits(o))
    return best[2]


def plan_memory(lowered: Lowered, sizes: dict[int, int]) -> Plan:
    """Offsets for every activation buffer of ``lowered`` (``sizes``: bytes per tensor index)."""
    def root(t: int) -> int:
        while t in lowered.alias:
            t = lowered.alias[t]
        return t

    n = len(lowered.steps)
    last: dict[int, int] = {root(lowered.input): -1}
    first: dict[int, int] = {root(lowered.input): -1}
    for k, step in enumerate(lowered.steps):
        first.setdefault(root(step.output), k)
        last.setdefault(root(step.output), k)
        for t in step.inputs:
            last[root(t)] = max(last.get(root(t), k), k)
    last[root(lowered.output)] = n
    buffers: dict[str, Buffer] = {}
    src = root(lowered.input)
    buffers[tensor_key(src)] = Buffer(tensor_key(src), sizes[src], -1, last[src])
    in_place: list[int] = []
    for k, step in enumerate(lowered.steps):
        out = root(step.output)
        buf = Buffer(tensor_key(out), sizes[out], k, last[out])
        partners = {tensor_key(root(t)): d for t, d in step.overlap.items() if last.get(root(t)) == k}
        buf.offset = _place(buf, list(buffers.values()), partners)
        buffers[buf.key] = buf
        overlapped = any(not (buf.offset >= buffers[p].offset + buffers[p].size
                              or buf.offset + buf.size <= buffers[p].offset) for p in partners)
        if overlapped:
            in_place.append(k)
            if step.tmp_bytes and step.takes_tmp:
                tmp = Buffer(f"tmp{k}", step.tmp_bytes, k, k)
                tmp.offset = _place(tmp, list(buffers.values()), {})
                buffers[tmp.key] = tmp
        if step.scratch_bytes:
            scratch = Buffer(f"scratch{k}", step.scratch_bytes, k, k)
            scratch.offset = _place(scratch, list(buffers.values()), {})
            buffers[scratch.key] = scratch
    base = min(b.offset for b in buffers.values())
    for b in buffers.values():
        b.offset -= base
    arena = -(-max(b.offset + b.size for b in buffers.values()) // 4) * 4  # whole words, as the linker places it
    return Plan(arena, buffers, in_place)
