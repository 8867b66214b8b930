"""Target profiles: the bundled set, the schema's one-line errors, lookup, budget overrides and units."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import yaml

import edgekd.targets as targets
from edgekd.errors import EdgekdError
from edgekd.targets import (
    available,
    load_all,
    load_target,
    load_target_file,
    parse_target,
    search_dirs,
)
from edgekd.units import format_bytes, parse_bytes, parse_ms

BUNDLED = Path(targets.__file__).resolve().parent.parent / "targets"
KIB, MIB, GIB = 1024, 1024**2, 1024**3

PHONES = {"google-pixel-8", "samsung-galaxy-a54", "samsung-galaxy-a03s"}
SBCS = {"raspberry-pi-5", "raspberry-pi-4b", "raspberry-pi-zero-2-w", "raspberry-pi-3b-plus"}
MCUS = {"nrf52840-dk", "nucleo-h743zi2", "stm32f746g-disco", "raspberry-pi-pico", "alif-ensemble-e3",
        "esp32-s3-devkitc-1"}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """Run every test from an empty directory with no user target directories configured."""
    monkeypatch.delenv("EDGEKD_TARGETS", raising=False)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


def good_profile(name: str = "nrf52840-dk") -> dict:
    return yaml.safe_load((BUNDLED / f"{name}.yaml").read_text())


def write_profile(directory: Path, data: object, stem: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stem = stem or data["name"]
    path = directory / f"{stem}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def load_error(path: Path) -> str:
    with pytest.raises(EdgekdError) as info:
        load_target_file(path)
    message = str(info.value)
    assert "\n" not in message, f"error is more than one line: {message!r}"
    assert message.startswith(f"{path}: "), message
    return message


# ---------------------------------------------------------------- the bundled profiles

def test_every_bundled_profile_loads_and_is_consistent():
    loaded = [load_target_file(p) for p in sorted(BUNDLED.glob("*.yaml"))]
    assert len(loaded) >= 12
    for t in loaded:
        assert t.path.stem == t.name
        assert t.memory.model_budget_bytes <= t.memory.flash_bytes
        assert t.memory.ram_budget_bytes <= t.memory.ram_bytes
        assert 1 <= t.throughput.threads <= t.cpu.count
        assert t.throughput.int8_macs_per_cycle <= t.throughput.peak_int8_macs_per_cycle
        assert t.throughput.fp32_macs_per_cycle <= t.throughput.peak_fp32_macs_per_cycle
        assert t.source["cpu"] and t.source["memory"]
        assert t.emulator.cpu != "max"
        assert t.budgets.latency_ms == t.latency_budget_ms > 0


def test_load_all_finds_the_bundled_set_from_any_directory():
    names = {t.name for t in load_all()}
    assert PHONES | SBCS | MCUS <= names
    assert available()["nrf52840-dk"] == BUNDLED / "nrf52840-dk.yaml"


def test_class_counts_and_named_devices():
    by_class: dict[str, set[str]] = {}
    for t in load_all():
        by_class.setdefault(t.klass, set()).add(t.name)
    assert len(by_class["phone"]) >= 3 and PHONES <= by_class["phone"]
    assert len(by_class["sbc"]) >= 4 and SBCS <= by_class["sbc"]
    assert len(by_class["mcu"]) >= 5 and MCUS <= by_class["mcu"]


def test_every_mcu_is_full_int8_with_tflm_and_a_cortex_m_or_no_emulator():
    mcus = [t for t in load_all() if t.is_mcu]
    assert mcus
    for t in mcus:
        assert t.quantization == "int8-full", t.name
        assert "tflm" in t.runtimes, t.name
        assert t.emulator.kind in ("qemu-system-arm", "none"), t.name


def test_linux_devices_use_linux_runtimes_and_a_real_qemu_core():
    for t in load_all():
        if t.is_mcu:
            continue
        assert t.quantization == "int8", t.name
        assert {"litert", "executorch-xnnpack"} <= set(t.runtimes), t.name
        assert t.emulator.kind == "qemu-aarch64", t.name
        assert t.emulator.cpu in ("cortex-a53", "cortex-a72", "cortex-a76", "neoverse-n1"), t.name


def test_some_mcu_has_the_256k_flash_64k_ram_budget():
    assert any(t.budgets.flash_bytes == 256 * KIB and t.budgets.ram_bytes == 64 * KIB
               for t in load_all() if t.is_mcu)


@pytest.mark.parametrize(("name", "core", "count", "clock", "flash", "ram"), [
    ("nrf52840-dk", "cortex-m4", 1, 64, 1 * MIB, 256 * KIB),
    ("nucleo-h743zi2", "cortex-m7", 1, 480, 2 * MIB, 1 * MIB),
    ("stm32f746g-disco", "cortex-m7", 1, 216, 1 * MIB, 320 * KIB),
    ("raspberry-pi-pico", "cortex-m0plus", 2, 133, 2 * MIB, 264 * KIB),
    ("raspberry-pi-5", "cortex-a76", 4, 2400, 32 * 10**9, 4 * GIB),
    ("raspberry-pi-4b", "cortex-a72", 4, 1500, 32 * 10**9, 4 * GIB),
    ("raspberry-pi-zero-2-w", "cortex-a53", 4, 1000, 32 * 10**9, 512 * MIB),
])
def test_datasheet_numbers(name, core, count, clock, flash, ram):
    t = load_target(name)
    assert (t.cpu.core, t.cpu.count, t.cpu.clock_mhz) == (core, count, clock)
    assert (t.memory.flash_bytes, t.memory.ram_bytes) == (flash, ram)


def test_nrf52840_profile_reads_exactly():
    t = load_target("nrf52840-dk")
    assert t.klass == "mcu"
    assert t.budgets.to_dict() == {"flash_bytes": 262144, "ram_bytes": 65536, "latency_ms": 200.0}
    assert (t.runtime_flash_bytes, t.runtime_ram_bytes) == (48 * KIB, 4 * KIB)
    assert t.throughput.int8_macs_per_cycle == pytest.approx(0.23)
    emulator = (t.emulator.kind, t.emulator.machine, t.emulator.cpu)
    assert emulator == ("qemu-system-arm", "mps2-an386", "cortex-m4")
    summary = t.summary()
    assert summary["core"] == "cortex-m4" and summary["class"] == "mcu"
    assert t.to_dict()["class"] == "mcu" and t.to_dict()["path"].endswith("nrf52840-dk.yaml")


def test_rp2040_stands_in_on_a_cortex_m3_with_a_note():
    t = load_target("raspberry-pi-pico")
    assert (t.emulator.machine, t.emulator.cpu) == ("mps2-an385", "cortex-m3")
    assert "approximation" in t.emulator.note


def test_esp32_s3_has_no_emulator_and_says_why():
    t = load_target("esp32-s3-devkitc-1")
    assert t.cpu.core == "xtensa-lx7"
    assert t.emulator.kind == "none" and "ESP32-S3" in t.emulator.note


# ---------------------------------------------------------------- one-line errors naming file and field

def test_missing_field(tmp_path):
    data = good_profile()
    del data["latency_budget"]
    path = write_profile(tmp_path, data)
    assert load_error(path) == f"{path}: latency_budget: missing required field"


def test_missing_nested_field(tmp_path):
    data = good_profile()
    del data["memory"]["ram_budget"]
    path = write_profile(tmp_path, data)
    assert load_error(path) == f"{path}: memory.ram_budget: missing required field"


def test_unknown_top_level_key(tmp_path):
    data = good_profile()
    data["colour"] = "red"
    path = write_profile(tmp_path, data)
    message = load_error(path)
    assert message.startswith(f"{path}: colour: unknown key; allowed: ")
    assert "latency_budget" in message and "notes" in message


def test_unknown_nested_key(tmp_path):
    data = good_profile()
    data["cpu"]["cache"] = "32 KiB"
    path = write_profile(tmp_path, data)
    assert load_error(path).startswith(f"{path}: cpu.cache: unknown key; allowed: clock_mhz, clusters, core")


def test_wrong_type_count(tmp_path):
    data = good_profile()
    data["cpu"]["count"] = "four"
    path = write_profile(tmp_path, data)
    assert load_error(path) == f"{path}: cpu.count: expected a whole number, got 'four'"


@pytest.mark.parametrize(("value", "shown"), [(1.5, "1.5"), (True, "True")])
def test_count_must_be_a_whole_number_not_float_or_bool(tmp_path, value, shown):
    data = good_profile()
    data["cpu"]["count"] = value
    path = write_profile(tmp_path, data)
    assert load_error(path) == f"{path}: cpu.count: expected a whole number, got {shown}"


def test_section_of_wrong_type(tmp_path):
    data = good_profile()
    data["memory"] = ["1 MiB", "256 KiB"]
    path = write_profile(tmp_path, data)
    assert load_error(path) == f"{path}: memory: expected a mapping, got list"


def test_wrong_unit(tmp_path):
    data = good_profile()
    data["memory"]["flash"] = "1 MFoo"
    path = write_profile(tmp_path, data)
    message = load_error(path)
    assert message.startswith(f"{path}: memory.flash: cannot read size '1 MFoo'")
    assert "KiB" in message


def test_wrong_time_unit(tmp_path):
    data = good_profile()
    data["latency_budget"] = "200 fortnights"
    path = write_profile(tmp_path, data)
    assert load_error(path) == (f"{path}: latency_budget: unknown time unit in '200 fortnights'; "
                                "use us, ms or s")


def test_ram_budget_larger_than_ram(tmp_path):
    data = good_profile()
    data["memory"]["ram_budget"] = "512 KiB"
    path = write_profile(tmp_path, data)
    assert load_error(path) == (f"{path}: memory.ram_budget: 512.0 KiB is larger than memory.ram "
                                "(256.0 KiB)")


def test_model_budget_larger_than_flash(tmp_path):
    data = good_profile()
    data["memory"]["model_budget"] = "2 MiB"
    path = write_profile(tmp_path, data)
    assert load_error(path) == (f"{path}: memory.model_budget: 2.0 MiB is larger than memory.flash "
                                "(1.0 MiB)")


@pytest.mark.parametrize("clock", [0, -64])
def test_clock_must_be_positive(tmp_path, clock):
    data = good_profile()
    data["cpu"]["clock_mhz"] = clock
    path = write_profile(tmp_path, data)
    assert load_error(path) == f"{path}: cpu.clock_mhz: must be > 0.0, got {clock}"


def test_clock_must_be_finite(tmp_path):
    # A NaN compares false with everything, so before the fix it slipped through every range check.
    data = good_profile()
    data["cpu"]["clock_mhz"] = float("nan")
    path = write_profile(tmp_path, data)
    assert load_error(path) == f"{path}: cpu.clock_mhz: must be a finite number, got nan"


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_latency_budget_must_be_finite(tmp_path, value):
    data = good_profile()
    data["latency_budget"] = value
    path = write_profile(tmp_path, data)
    assert load_error(path) == f"{path}: latency_budget: expected a finite duration, got {value!r}"


def test_zero_size_is_rejected(tmp_path):
    data = good_profile()
    data["runtime_overhead"]["ram"] = 0
    path = write_profile(tmp_path, data)
    assert load_error(path) == f"{path}: runtime_overhead.ram: must be larger than 0"


def test_op_overhead_may_be_zero_but_not_negative(tmp_path):
    data = good_profile()
    data["throughput"]["op_overhead_us"] = 0
    assert parse_target(data, "x").throughput.op_overhead_us == 0.0
    data["throughput"]["op_overhead_us"] = -1
    path = write_profile(tmp_path, data)
    assert load_error(path) == f"{path}: throughput.op_overhead_us: must be >= 0.0, got -1"


def test_sustained_above_peak(tmp_path):
    data = good_profile()
    data["throughput"]["int8_macs_per_cycle"] = 3.0
    path = write_profile(tmp_path, data)
    assert load_error(path) == (f"{path}: throughput.int8_macs_per_cycle: sustained rate is above "
                                "peak_int8_macs_per_cycle")


def test_more_threads_than_cores(tmp_path):
    data = good_profile()
    data["throughput"]["threads"] = 2
    path = write_profile(tmp_path, data)
    assert load_error(path) == f"{path}: throughput.threads: 2 threads but cpu.count is 1"


def test_name_must_match_file(tmp_path):
    data = good_profile()
    path = write_profile(tmp_path, data, stem="my-nrf")
    assert load_error(path) == f"{path}: name: 'nrf52840-dk' must match the file name 'my-nrf'"


def test_unknown_class_and_wrong_core_for_class(tmp_path):
    data = good_profile()
    data["class"] = "laptop"
    path = write_profile(tmp_path, data)
    assert load_error(path) == f"{path}: class: 'laptop' is not one of: phone, sbc, mcu"
    data = good_profile()
    data["class"] = "sbc"
    data["quantization"] = "int8"
    path = write_profile(tmp_path, data)
    assert load_error(path).startswith(f"{path}: cpu.core: 'cortex-m4' is not one of: cortex-a53, ")


def test_mcu_must_be_full_int8_and_list_tflm(tmp_path):
    data = good_profile()
    data["quantization"] = "int8"
    path = write_profile(tmp_path, data)
    assert load_error(path) == (f"{path}: quantization: microcontrollers need full-integer int8 "
                                "('int8-full')")
    data = good_profile()
    data["runtimes"] = ["edgekd-c"]
    path = write_profile(tmp_path, data)
    assert load_error(path) == f"{path}: runtimes: a microcontroller profile must list 'tflm'"


def test_operator_lists(tmp_path):
    data = good_profile()
    data["operators"] = ["CONV_2D", "LSTM"]
    path = write_profile(tmp_path, data)
    assert load_error(path).startswith(f"{path}: operators: unknown name 'LSTM'; known: ADD, ")
    data["operators"] = ["CONV_2D", "CONV_2D"]
    path = write_profile(tmp_path, data)
    assert load_error(path) == f"{path}: operators: lists a name twice"
    data["operators"] = []
    path = write_profile(tmp_path, data)
    assert load_error(path) == f"{path}: operators: expected a non-empty list of names"


@pytest.mark.parametrize("kind", ["qemu-system-arm", "qemu-aarch64", "none"])
def test_emulator_cpu_max_is_refused(tmp_path, kind):
    data = good_profile()
    data["emulator"] = {"kind": kind, "machine": "mps2-an386", "cpu": "max", "note": "x"}
    path = write_profile(tmp_path, data)
    assert load_error(path) == (f"{path}: emulator.cpu: 'max' gives wrong int8 results under QEMU; "
                                "name the real core")


def test_emulator_needs_machine_cpu_or_note(tmp_path):
    data = good_profile()
    del data["emulator"]["machine"]
    path = write_profile(tmp_path, data)
    assert load_error(path).startswith(f"{path}: emulator.machine: qemu-system-arm needs both 'machine'")
    data = good_profile()
    data["emulator"] = {"kind": "qemu-aarch64"}
    path = write_profile(tmp_path, data)
    assert load_error(path).startswith(f"{path}: emulator.cpu: qemu-aarch64 needs 'cpu'")
    data["emulator"] = {"kind": "none"}
    path = write_profile(tmp_path, data)
    assert load_error(path) == f"{path}: emulator.note: say why no emulator stands in for this device"


def test_source_must_cite_cpu_and_memory(tmp_path):
    data = good_profile()
    del data["source"]["memory"]
    path = write_profile(tmp_path, data)
    assert load_error(path) == f"{path}: source.memory: cite the datasheet or product page this comes from"
    data["source"] = "the internet"
    path = write_profile(tmp_path, data)
    assert load_error(path) == f"{path}: source: expected a mapping of field -> datasheet or product page"


@pytest.mark.parametrize(("text", "expected"), [
    ("name: [unclosed\n", "not valid YAML (line 2): expected ',' or ']', but got '<stream end>'"),
    ("a: b: c\n", "not valid YAML (line 1): mapping values are not allowed here"),
    ("", "empty file; a target profile is a YAML mapping, start from targets/nrf52840-dk.yaml"),
    ("# only a comment\n", "expected a YAML mapping at the top level"),
    ("- just\n- a list\n", "expected a YAML mapping at the top level"),
])
def test_invalid_yaml(tmp_path, text, expected):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    assert load_error(path) == f"{path}: {expected}"


def test_parse_target_without_a_file_uses_the_origin_label():
    data = good_profile()
    data["cpu"]["count"] = "four"
    with pytest.raises(EdgekdError, match=r"^<profile>: cpu\.count: expected a whole number, got 'four'$"):
        parse_target(data)
    # Without a path the name is not compared with a file name.
    data = good_profile()
    data["name"] = "anything"
    assert parse_target(data).name == "anything"


# ---------------------------------------------------------------- finding profiles

def test_load_by_relative_path(tmp_path):
    data = good_profile()
    data["name"] = "x"
    write_profile(Path.cwd() / "some" / "dir", data)
    t = load_target("some/dir/x.yaml")
    assert t.name == "x" and t.path == Path("some/dir/x.yaml")
    assert t.budgets.flash_bytes == 256 * KIB


def test_load_by_path_to_a_missing_file():
    with pytest.raises(EdgekdError) as info:
        load_target("some/dir/nothing.yaml")
    assert str(info.value) == "some/dir/nothing.yaml: no such target file"


def test_load_by_name_unknown():
    with pytest.raises(EdgekdError) as info:
        load_target("pdp-11")
    message = str(info.value)
    assert message.startswith("unknown target 'pdp-11'; `edgekd targets list` shows the ")
    assert f"the {len(available())} known ones" in message and "\n" not in message


def test_user_profile_found_through_edgekd_targets(tmp_path, monkeypatch):
    mine = tmp_path / "my-targets"
    data = good_profile()
    data["name"] = "my-board"
    data["title"] = "My own nRF52840 board"
    data["memory"]["ram_budget"] = "32 KiB"
    write_profile(mine, data)
    assert "my-board" not in available()

    monkeypatch.setenv("EDGEKD_TARGETS", str(mine))
    assert search_dirs()[0] == mine
    t = load_target("my-board")
    assert t.title == "My own nRF52840 board"
    assert t.budgets.ram_bytes == 32 * KIB
    assert "my-board" in {x.name for x in load_all()}
    assert "nrf52840-dk" in available()  # the bundled set is still there


def test_user_profile_shadows_a_bundled_one(tmp_path, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    data = good_profile()
    data["title"] = "shadowed"
    write_profile(first, data)
    other = copy.deepcopy(data)
    other["title"] = "second dir"
    write_profile(second, other)
    monkeypatch.setenv("EDGEKD_TARGETS", f"{first}:{second}:{tmp_path / 'does-not-exist'}")
    assert load_target("nrf52840-dk").title == "shadowed"
    assert search_dirs()[:2] == [first, second]


def test_targets_directory_in_the_working_directory_is_searched():
    data = good_profile()
    data["name"] = "bench-board"
    write_profile(Path.cwd() / "targets", data)
    assert load_target("bench-board").path == Path.cwd() / "targets" / "bench-board.yaml"


def test_broken_user_profile_names_its_own_file(tmp_path, monkeypatch):
    mine = tmp_path / "mine"
    data = good_profile()
    data["name"] = "flaky"
    data["cpu"]["count"] = "four"
    path = write_profile(mine, data)
    monkeypatch.setenv("EDGEKD_TARGETS", str(mine))
    with pytest.raises(EdgekdError) as info:
        load_target("flaky")
    assert str(info.value) == f"{path}: cpu.count: expected a whole number, got 'four'"


# ---------------------------------------------------------------- budget overrides

def test_with_budgets_units():
    t = load_target("nrf52840-dk")
    assert t.with_budgets(flash="64KB").budgets.flash_bytes == 64000
    assert t.with_budgets(flash="64KiB").budgets.flash_bytes == 65536
    assert t.with_budgets(ram="48 KiB").budgets.ram_bytes == 48 * KIB
    assert t.with_budgets(latency="20ms").budgets.latency_ms == 20.0
    assert t.with_budgets(latency="0.5 s").budgets.latency_ms == 500.0
    assert t.with_budgets(latency="750us").budgets.latency_ms == pytest.approx(0.75)
    assert t.with_budgets(latency=35).budgets.latency_ms == 35.0


def test_with_budgets_keeps_the_rest_and_does_not_mutate():
    t = load_target("nrf52840-dk")
    u = t.with_budgets(ram="32KiB")
    assert u.budgets.to_dict() == {"flash_bytes": 256 * KIB, "ram_bytes": 32 * KIB, "latency_ms": 200.0}
    assert u.memory.ram_bytes == 256 * KIB and u.cpu == t.cpu and u.name == t.name
    assert t.budgets.ram_bytes == 64 * KIB
    assert t.with_budgets() == t


def test_with_budgets_up_to_the_whole_device_is_allowed():
    t = load_target("nrf52840-dk")
    assert t.with_budgets(flash="1MiB", ram="256KiB").budgets.flash_bytes == MIB


def test_with_budgets_too_large():
    t = load_target("nrf52840-dk")
    with pytest.raises(EdgekdError) as info:
        t.with_budgets(ram="300KiB")
    assert str(info.value) == "--ram-budget: 300.0 KiB is more than nrf52840-dk's 256.0 KiB of RAM"
    with pytest.raises(EdgekdError) as info:
        t.with_budgets(flash="2MB")
    assert str(info.value) == ("--flash-budget: 1.9 MiB is more than nrf52840-dk's 1.0 MiB of "
                               "flash/storage")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"flash": "64 KBB"}, "--flash-budget: cannot read size '64 KBB'"),
    ({"ram": "lots"}, "--ram-budget: cannot read size 'lots'"),
    ({"latency": "20 min"}, "--latency-budget: unknown time unit in '20 min'; use us, ms or s"),
    ({"latency": "fast"}, "--latency-budget: expected a duration such as '50ms', got 'fast'"),
    ({"latency": float("nan")}, "--latency-budget: expected a finite duration, got nan"),
])
def test_with_budgets_bad_values(kwargs, message):
    with pytest.raises(EdgekdError) as info:
        load_target("nrf52840-dk").with_budgets(**kwargs)
    assert str(info.value).startswith(message)


# ---------------------------------------------------------------- units

@pytest.mark.parametrize(("value", "expected"), [
    (4096, 4096),
    (0, 0),
    (2.0, 2),
    ("4096", 4096),
    ("10 B", 10),
    ("  10b  ", 10),
    ("64KB", 64000),
    ("64kb", 64000),
    ("64 KiB", 65536),
    ("64kib", 65536),
    ("1.5 MiB", 1572864),
    ("1 MB", 10**6),
    ("2 GiB", 2 * GIB),
    ("1 GB", 10**9),
    ("0.5 KiB", 512),
    ("13.5 MiB", 14155776),
])
def test_parse_bytes(value, expected):
    assert parse_bytes(value) == expected


@pytest.mark.parametrize(("value", "message"), [
    (True, "size: expected a size such as '64KiB', got True"),
    (None, "size: expected a size such as '64KiB', got None"),
    (2.5, "size: expected a size such as '64KiB', got 2.5"),
    (float("nan"), "size: expected a size such as '64KiB', got nan"),
    (-1, "size: size must not be negative, got -1"),
    ("-5KB", "size: cannot read size '-5KB'"),
    ("1e3", "size: cannot read size '1e3'"),
    ("64 KBB", "size: cannot read size '64 KBB'"),
    ("", "size: cannot read size ''"),
    ("1 MFoo", "size: cannot read size '1 MFoo'; write a number with B, KB, KiB, MB, MiB, GB or GiB"),
])
def test_parse_bytes_rejects(value, message):
    with pytest.raises(EdgekdError) as info:
        parse_bytes(value)
    assert str(info.value).startswith(message)


def test_parse_bytes_names_what_it_reads():
    with pytest.raises(EdgekdError, match=r"^--flash-budget: cannot read size 'x'"):
        parse_bytes("x", "--flash-budget")


@pytest.mark.parametrize(("value", "expected"), [
    ("50ms", 50.0),
    ("50 MS", 50.0),
    ("0.2 s", 200.0),
    ("800us", 0.8),
    ("20", 20.0),
    (20, 20.0),
    (2.5, 2.5),
    (0, 0.0),
])
def test_parse_ms(value, expected):
    assert parse_ms(value) == pytest.approx(expected)


@pytest.mark.parametrize(("value", "message"), [
    (True, "latency: expected a duration such as '50ms', got True"),
    (None, "latency: expected a duration such as '50ms', got None"),
    ("", "latency: expected a duration such as '50ms', got ''"),
    ("-5ms", "latency: expected a duration such as '50ms', got '-5ms'"),
    (-5, "latency: duration must not be negative, got -5"),
    ("5 min", "latency: unknown time unit in '5 min'; use us, ms or s"),
    (float("inf"), "latency: expected a finite duration, got inf"),
    (float("nan"), "latency: expected a finite duration, got nan"),
])
def test_parse_ms_rejects(value, message):
    with pytest.raises(EdgekdError) as info:
        parse_ms(value)
    assert str(info.value) == message


def test_format_bytes():
    assert format_bytes(512) == "512 B"
    assert format_bytes(64 * KIB) == "64.0 KiB"
    assert format_bytes(1.5 * MIB) == "1.5 MiB"
    assert format_bytes(3 * GIB) == "3.0 GiB"
    assert format_bytes(5000 * GIB) == "5000.0 GiB"
    assert math.isclose(parse_bytes(format_bytes(64 * KIB)), 64 * KIB)


# ---------------------------------------------------------------- hostile profile files (issue 12)

def validate_cli(path: Path) -> str:
    """`edgekd targets validate PATH` must exit 2 with exactly one stderr line naming the file."""
    from click.testing import CliRunner

    from edgekd.cli import main

    result = CliRunner().invoke(main, ["targets", "validate", str(path)])
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, lines
    assert lines[0].startswith(f"edgekd: error: {path}: "), lines[0]
    return lines[0].removeprefix("edgekd: error: ")


def test_binary_garbage_profile_is_one_line(tmp_path):
    path = tmp_path / "garbage.yaml"
    path.write_bytes(bytes(range(256)) * 8)
    assert validate_cli(path) == (f"{path}: not UTF-8 text (byte 128 is 0x80); a target profile is a YAML text "
                                  "file")


def test_control_characters_are_invalid_yaml(tmp_path):
    path = tmp_path / "nul.yaml"
    path.write_bytes(b"name: a\x00b\n")
    assert validate_cli(path) == f"{path}: not valid YAML: special characters are not allowed"


@pytest.mark.parametrize("text", ["[" * 5000, "[" * 5000 + "]" * 5000, "{a: " * 3000,
                                  "".join("  " * i + "k:\n" for i in range(400)),
                                  "".join("  " * i + "-\n" for i in range(400))])
def test_deeply_nested_profile_is_refused_before_the_recursive_loader(tmp_path, text):
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    message = validate_cli(path)
    assert message.startswith(f"{path}: nested more than {targets.MAX_PROFILE_DEPTH} levels deep (line ")


def test_huge_profile_is_refused_by_size_before_parsing(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"notes: " + b"x" * (10 * 1000 * 1000) + b"\n")
    import time

    start = time.perf_counter()
    assert load_error(path) == (f"{path}: larger than 256 KiB, the most a target profile may be (real ones are a "
                                "few KiB); start from targets/nrf52840-dk.yaml")
    assert time.perf_counter() - start < 1.0  # was 57 s of YAML parsing


def test_profile_just_under_the_size_cap_is_parsed(tmp_path):
    data = good_profile()
    data["name"] = "big"
    data["notes"] = "x" * (targets.MAX_PROFILE_BYTES - 5000)
    path = write_profile(tmp_path, data)
    assert path.stat().st_size <= targets.MAX_PROFILE_BYTES
    assert load_target_file(path).name == "big"


def test_yaml_alias_bomb_is_refused(tmp_path):
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{cur}: &{cur} [{', '.join([f'*{prev}'] * 9)}]")
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert validate_cli(path) == (f"{path}: uses the YAML alias *a (line 2); target profiles may not use "
                                  "anchors/aliases, write the value out")


def test_yaml_merge_key_alias_is_refused(tmp_path):
    text = (BUNDLED / "nrf52840-dk.yaml").read_text().replace("memory:\n", "memory: &mem\n", 1)
    path = tmp_path / "nrf52840-dk.yaml"
    path.write_text(text + "extra:\n  <<: *mem\n")
    assert "uses the YAML alias *mem" in load_error(path)


def test_unreadable_yaml_value_is_one_line(tmp_path):
    path = tmp_path / "date.yaml"
    path.write_text("name: 2024-13-45\n")
    assert load_error(path) == f"{path}: not valid YAML: a value cannot be read (month must be in 1..12)"


def test_profile_path_that_is_a_folder(tmp_path):
    path = tmp_path / "board.yaml"
    path.mkdir()
    assert load_error(path) == f"{path}: is a folder, not a target profile; give a .yaml file"
    with pytest.raises(EdgekdError, match="is a folder"):
        load_target(str(path))


def test_empty_profile(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("\n  \n")
    assert validate_cli(path) == (f"{path}: empty file; a target profile is a YAML mapping, start from "
                                  "targets/nrf52840-dk.yaml")


@pytest.mark.skipif(not Path("/proc/self/mem").is_file(), reason="needs Linux /proc")
def test_profile_that_cannot_be_read():
    # A regular file whose read() fails (EIO) even for root, so the test does not depend on the user.
    path = Path("/proc/self/mem")
    assert load_error(path) == f"{path}: cannot be read (Input/output error); check its permissions"


def test_profile_without_read_permission(tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    path = write_profile(tmp_path, good_profile())
    path.chmod(0)
    assert load_error(path) == f"{path}: cannot be read (Permission denied); check its permissions"


# ---------------------------------------------------------------- emulator fields vs the emulators' tables

def test_unknown_qemu_system_arm_cpu_lists_the_boards(tmp_path):
    data = good_profile()
    data["emulator"]["cpu"] = "cortex-m99"
    path = write_profile(tmp_path, data)
    assert validate_cli(path) == (
        f"{path}: emulator.cpu: 'cortex-m99' does not run on QEMU's mps2-an386, which only takes 'cortex-m4'; "
        "known boards (cpu): mps2-an385 (cortex-m3), mps2-an386 (cortex-m4), mps2-an500 (cortex-m7), "
        "mps3-an547 (cortex-m55)")


def test_real_cpu_on_the_wrong_board_is_refused(tmp_path):
    data = good_profile()
    data["emulator"]["cpu"] = "cortex-m7"  # QEMU: "This board can only be used with CPU cortex-m4"
    path = write_profile(tmp_path, data)
    assert "'cortex-m7' does not run on QEMU's mps2-an386, which only takes 'cortex-m4'" in load_error(path)


def test_unknown_qemu_machine_lists_the_known_ones(tmp_path):
    data = good_profile()
    data["emulator"]["machine"] = "nrf52840dk"
    path = write_profile(tmp_path, data)
    assert validate_cli(path) == (f"{path}: emulator.machine: 'nrf52840dk' is not a QEMU board edgekd's "
                                  "qemu-system-arm emulator knows; known: mps2-an385, mps2-an386, mps2-an500, "
                                  "mps3-an547")


def test_mcu_core_without_a_build_recipe_cannot_use_qemu_system_arm(tmp_path):
    data = good_profile()
    data["cpu"]["core"] = "cortex-m33"
    path = write_profile(tmp_path, data)
    assert load_error(path) == (f"{path}: emulator.kind: cpu.core 'cortex-m33' has no Cortex-M build recipe for "
                                "qemu-system-arm (known: cortex-m0plus, cortex-m3, cortex-m4, cortex-m7, "
                                "cortex-m55); use kind 'none' with a note")


def test_unknown_qemu_aarch64_cpu_lists_the_known_cores(tmp_path):
    data = good_profile("raspberry-pi-4b")
    data["emulator"]["cpu"] = "cortex-a99"
    path = write_profile(tmp_path, data)
    assert validate_cli(path) == (f"{path}: emulator.cpu: 'cortex-a99' is not a core edgekd's qemu-aarch64 "
                                  "emulator knows; known: cortex-a53, cortex-a72, cortex-a76")


def test_qemu_aarch64_takes_no_machine_and_no_microcontroller(tmp_path):
    data = good_profile("raspberry-pi-4b")
    data["emulator"]["machine"] = "virt"
    path = write_profile(tmp_path, data)
    assert load_error(path) == (f"{path}: emulator.machine: qemu-aarch64 runs user-mode and takes no machine; "
                                "remove it")
    data = good_profile()
    data["emulator"] = {"kind": "qemu-aarch64", "cpu": "cortex-a72"}
    path = write_profile(tmp_path, data)
    assert load_error(path) == (f"{path}: emulator.kind: qemu-aarch64 runs Linux-class devices; a "
                                "microcontroller uses qemu-system-arm or none")
    data = good_profile("raspberry-pi-4b")
    data["emulator"] = {"kind": "qemu-system-arm", "machine": "mps2-an386", "cpu": "cortex-m4"}
    path = write_profile(tmp_path, data)
    assert load_error(path) == (f"{path}: emulator.kind: qemu-system-arm runs microcontroller firmware; a sbc "
                                "profile uses qemu-aarch64 or none")


def test_emulators_and_profiles_read_the_one_core_table():
    from edgekd import cores
    from edgekd.codegen import board
    from edgekd.emulate import aarch64

    assert set(board.TESTIO_ORIGIN) == set(cores.BOARDS)
    assert all(cores.CORES[b.cpu].qemu_cpu == b.cpu for b in cores.BOARDS.values())
    assert aarch64.CORES == cores.aarch64_cores()
    assert set(targets.MCU_CORES) | set(targets.LINUX_CORES) == set(cores.CORES)
    for t in load_all():
        core = cores.CORES[t.cpu.core]
        assert core.klass == (cores.MCU if t.is_mcu else cores.LINUX)
        if t.emulator.kind == "qemu-system-arm":
            assert cores.BOARDS[t.emulator.machine].cpu == t.emulator.cpu
            assert core.gcc_flags and core.cpi and cores.CORES[t.emulator.cpu].qemu_cpu == t.emulator.cpu
        elif t.emulator.kind == "qemu-aarch64":
            assert t.emulator.cpu in aarch64.CORES and t.emulator.machine is None
            assert cores.CORES[t.emulator.cpu].midr is not None


def test_isa_must_name_the_cores_architecture(tmp_path):
    data = good_profile()
    data["cpu"]["isa"] = ["thumb2", "dsp"]
    path = write_profile(tmp_path, data)
    assert load_error(path) == f"{path}: cpu.isa: cortex-m4 is an armv7e-m core (edgekd.cores); list armv7e-m in isa"


def test_every_mcu_profile_names_a_core_of_the_table_and_emulates_it_or_says_why():
    from edgekd import cores

    mcus = [t for t in load_all() if t.is_mcu]
    assert len([t for t in mcus if t.emulator.kind == "qemu-system-arm"]) >= 5
    for t in mcus:
        assert t.cpu.core in cores.CORES, t.name
        if t.emulator.kind == "qemu-system-arm":  # a build recipe (-mcpu), a CPI, a QEMU board
            core = cores.cortex_m_cores()[t.cpu.core]
            assert core.gcc_flags and 0.5 < core.cpi < 2.0 and core.cpi_source, t.name
        else:
            assert t.emulator.kind == "none" and t.emulator.note, t.name
    assert cores.CORES["cortex-m55"].unicorn_cpu is None  # unicorn has no M55: QEMU's plugin counts it
