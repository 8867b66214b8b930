"""Emulated runs as verify.json stores them, one per built-in emulator: shared by the emulator and report tests."""

from __future__ import annotations

CORTEX_M_RUN = {  # a verify.json emulated run as edgekd wrote it before the details were typed (issue 13)
    "emulator": "qemu-system-arm/mps2-an386", "format": "c", "precision": "int8", "runtime": "edgekd-c",
    "kernels": "edgekd-c", "path": "c/nrf52840-dk.elf", "samples": 8, "ok": True, "accuracy": 1.0,
    "host_accuracy": 1.0, "agreement": 1.0, "bit_exact_vs_host": True, "max_diff_vs_host": 0.0,
    "instructions": 120000, "cpi": 1.5, "counted_ms": 2.8125, "threads": 1, "error": None, "log_tail": None,
    "details": {"source_dir": "c", "elf": "c/nrf52840-dk.elf", "arena_bytes": 4096, "tflm_arena_bytes": 9000,
                "ops": ["CONV_2D", "MEAN"], "macs": 50000, "model_const_bytes": 20000, "core": "cortex-m4",
                "test_vectors": "semihosting into .testio (outside the budgeted FLASH and RAM)",
                "diff_unit": "int8 steps", "flash_bytes": 60000, "ram_bytes": 7000, "stack_reserved_bytes": 2048,
                "flash_budget_bytes": 262144, "ram_budget_bytes": 65536, "sections": {".text": 50000},
                "stack_bytes": 800, "bit_exact_vs_tflm": True, "bit_exact_vs_host_gcc": True,
                "mismatched_outputs": 0, "ram_used_bytes": 4896, "ram_vs_tflm": 0.544, "qemu_wall_s": 0.4,
                "counter": "unicorn (budgeted flash and RAM mapped only)", "cpi_source": "edgekd.emulate.timing_m",
                "instructions_per_mac": 2.4, "cycles": 180000, "cycles_per_mac": 3.6}}

AARCH64_RUN = {
    "emulator": "qemu-aarch64/cortex-a72", "format": "tflite", "precision": "int8", "runtime": "litert",
    "kernels": "xnnpack", "path": "model_int8.tflite", "samples": 8, "ok": True, "accuracy": 1.0,
    "host_accuracy": 1.0, "agreement": 1.0, "bit_exact_vs_host": False, "max_diff_vs_host": 1.0,
    "instructions": 300000, "cpi": 0.7, "counted_ms": 0.14, "threads": 1, "error": None, "log_tail": None,
    "details": {"diff_unit": "int8 steps", "mismatched_outputs": 2, "mismatched_samples": 1,
                "marker_overhead_instructions": 40, "counted_invokes": 8, "cpi_source": "edgekd.emulate.timing_a",
                "instruction_classes": {"total": 300000, "imull": 1000}, "busiest_pipe_group": "F0/F1",
                "counted_ms_4_threads": 0.1, "xnnpack_delegate": True}}
