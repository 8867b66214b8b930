"""MODEL_CARD.md: what the bundle is for, what was measured, how to feed it, how to check it after flashing."""

from __future__ import annotations

from typing import Any

from edgekd.package.manifest import SIGNATURE_ENTRY


def _axes(layout: str, shape: list[int]) -> str:
    if layout == "NHWC":
        return "height, width, channels"
    return "channels, length" if len(shape) == 2 else "channels first"


def model_card(manifest: dict[str, Any], sample_shape: list[int]) -> str:
    """MODEL_CARD.md from the manifest (part of the checked content: nothing measured by a clock)."""
    s, v = manifest["student"], manifest["measured"]
    lines = [f"# {manifest['name']}", "",
             f"A {s['family']} student ({', '.join(f'{k}={x}' for k, x in s['config'].items() if x is not None)}) "
             f"for **{manifest['target']}** on the task **{manifest['task']}**, built by edgekd "
             f"{manifest['versions'].get('edgekd', '?')}.", "",
             "## Intended use",
             f"Classifying inputs like the `{manifest['task']}` test set on {manifest['target']}. The accuracies below "
             "are on that test set; inputs from another sensor or distribution need their own evaluation "
             "(and usually their own calibration set).", "",
             "## Measured on the host runtimes", "",
             "| artifact | runtime | accuracy | agreement with float |",
             "|---|---|---|---|",
             f"| float student | PyTorch | {100 * v['float_accuracy']:.2f}% | |"]
    for r in v["runs"]:
        lines.append(f"| {r['artifact']} | {r['runtime']} | {100 * r['accuracy']:.2f}% | "
                     f"{100 * r['agreement_with_float']:.2f}% |")
    lines += ["", "Latency on the device is the latency gate below (counted on the emulated core, or estimated by "
              "the cost model). Host timings are left out: they differ on every run, and this card is part of "
              "the bundle's checked content.", ""]
    lines += ["## Budgets and gates", "", "| gate | passed | detail |", "|---|---|---|"]
    for name, g in v["gates"].items():
        if g:
            lines.append(f"| {name} | {g['passed']} | {g['detail']} ({g['kind']}) |")
    p = manifest["preprocessing"]
    lines += ["", "## Input and output", "",
              f"- Input layout: {p['layout']}, one sample {sample_shape} ({_axes(p['layout'], sample_shape)}; "
              f"`vectors/input_f32.bin` is channels-first, {p['input_shape']}); normalise each channel as "
              f"`{p['normalization'].get('formula', '')}` with mean {p['normalization'].get('mean')} and std "
              f"{p['normalization'].get('std')}.",
              "- int8 models: `q = round(x / scale) + zero_point`, outputs `y = scale * (q - zero_point)`; the "
              "parameters per artifact are in `manifest.json` (`artifacts[].quantization`).",
              "- Output: one logit per class, classes in this order: " + ", ".join(manifest["classes"]) + ".", ""]
    if "generated_c" in manifest:
        lines += ["## Generated C (no interpreter)", "",
                  "`c/` holds edgekd's generated C99 inference code (`model.h`: `edgekd_invoke(input, output)`, "
                  "same int8 tensors as the .tflite) and the firmware built and run on each emulated board:", "",
                  "| ELF | emulator | bit-exact vs host | flash | RAM (data+bss+stack) | arena (ours / TFLite Micro) "
                  "| latency (counted) |", "|---|---|---|---|---|---|---|"]
        for b in manifest["generated_c"]["boards"]:
            ms = f"{b['counted_ms']:.1f} ms" if b["counted_ms"] is not None else "not counted"
            lines.append(f"| {b['elf']} | {b['emulator']} | {b['bit_exact_vs_host']} | {b['flash_bytes']:,} B | "
                         f"{b['ram_bytes']:,} B | {b['arena_bytes']:,} / {b['tflm_arena_bytes']:,} B | {ms} |")
        lines.append("")
    lines += _layout_lines(manifest)
    lines += ["## Self-test after flashing",
              "`vectors/` holds test inputs and the outputs each artifact gave on the host (see `manifest.json` "
              "`vectors`). int8 `.tflite` outputs are from LiteRT's reference kernels, bit-exact with TFLite Micro: "
              "a device running TFLite Micro (or the generated C) must reproduce them byte for byte.", ""]
    if "signature" in manifest:
        lines += ["## Signature",
                  f"`{SIGNATURE_ENTRY}` is the Ed25519 signature of the exact bytes of `manifest.json` (public key "
                  f"sha256 `{manifest['signature']['public_key_sha256']}`), which lists every other file with its "
                  "sha256. Check it with `edgekd package verify BUNDLE --key KEY.pub`, or by hand: "
                  f"`openssl pkeyutl -verify -pubin -inkey KEY.pub -rawin -in manifest.json -sigfile "
                  f"{SIGNATURE_ENTRY}`.", ""]
    return "\n".join(lines)


def _layout_lines(manifest: dict[str, Any]) -> list[str]:
    """How to use the bundle's library / device files (the layouts in manifest.json)."""
    lay = manifest.get("layouts") or {}
    lines: list[str] = []
    if "library" in lay:
        lib = lay["library"]
        machine = manifest["generated_c"]["boards"][0]["machine"]
        lines += ["## In your own firmware", "",
                  "- CMake: `add_subdirectory(library)` or `find_package(edgekd CONFIG)` with `edgekd_DIR` set to "
                  "`library/`; link `edgekd::model` and include `edgekd_model.h`: `edgekd_invoke` plus the input and "
                  "output sizes, int8 quantization with the model's scale and zero point, the normalisation above and "
                  f"the class names. Core flags (`edgekd::cpu`): `{' '.join(lib['cpu_flags'])}`.",
                  f"- Arduino: copy `{lib['arduino']}` into your libraries folder; example sketch `edgekd_selftest`.",
                  f"- On the emulated board (QEMU {machine}): `cmake -S example -B build "
                  "-DCMAKE_TOOLCHAIN_FILE=$PWD/board/toolchain.cmake`, `cmake --build build`, then run "
                  "`build/selftest.elf` on QEMU (command in `example/CMakeLists.txt`): it checks the vectors below.",
                  ""]
    if "device" in lay:
        dev = lay["device"]
        runner = dev.get("executorch_runner")
        lines += ["## On the device (Raspberry Pi, phone)", "",
                  "- `python3 device/run_vectors.py`: every file's sha256, then the vectors on LiteRT (int8 byte for "
                  "byte) and ExecuTorch; `device/example.py`: a minimal ai-edge-litert program "
                  "(`pip install -r device/requirements.txt`).",
                  f"- ExecuTorch runner: `{runner}`." if runner else
                  f"- ExecuTorch runner: {dev.get('executorch_runner_source')}.", ""]
    return lines
