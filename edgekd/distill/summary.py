"""What `edgekd teacher` and `edgekd distill` print: a few lines a person reads after training (``--json``
prints the records themselves)."""

from __future__ import annotations

from typing import Any

from edgekd.units import format_bytes


def teacher_text(record: dict[str, Any]) -> str:
    return (f"teacher for {record['task']}: {record['param_count']:,} params, test accuracy "
            f"{record['test_accuracy']:.4f}, trained in {record['train_seconds']:.0f} s -> {record['path']}")


def distill_text(result: dict[str, Any], out_dir: str) -> str:
    """Student accuracies (float, int8, no-teacher twin, teacher), then flash and RAM against the budgets."""
    s = result["student"]
    first = (f"student {s['family']} {s['config']}: float {s['accuracy_float']:.4f}"
             + (f", int8 {s['accuracy_int8']:.4f}" if s["accuracy_int8"] is not None else "")
             + (f", no teacher {s['accuracy_no_teacher']:.4f}" if s["accuracy_no_teacher"] is not None else "")
             + (f"; teacher {result['teacher']['test_accuracy']:.4f}" if result["teacher"].get("path") else ""))
    m = result["measured"] or result["predicted"]
    b = result["budgets"]
    sizes = (f"flash {format_bytes(m['flash_bytes'])} / {format_bytes(b['flash_bytes'])}, RAM "
             f"{format_bytes(m['ram_bytes'])} / {format_bytes(b['ram_bytes'])} "
             f"({'measured' if result['measured'] else 'predicted'}); fits: {result['fits']}")
    lines = [first, sizes]
    sel = (result.get("epoch_selection") or {}).get("student")
    if sel:
        lines.append(f"epoch shipped: {sel['epoch']} ({sel['rule']}: {sel['why']})")
    shipped = result.get("shipped") or {}
    if shipped.get("distilled"):
        lines.append(f"shipped the {shipped['shipped']} student: {shipped['reason']}")
    unl = result.get("unlabelled") or {}
    if unl.get("samples"):
        held = unl.get("held_out_for_ship_decision") or 0
        lines.append(f"unlabelled samples: {unl.get('used', 0):,} used of {unl['samples']:,}"
                     + (f" (+{held:,} held out for the ship decision)" if held else ""))
    warning = (result["teacher"].get("check") or {}).get("warning")
    if warning:
        lines.append(f"warning: {warning}")
    return "\n".join([*lines, f"wrote {out_dir}/student.pt and {out_dir}/distill.json"])
