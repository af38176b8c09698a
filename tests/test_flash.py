# SPDX-License-Identifier: MIT
"""`make flash`: the esptool commands that put a bulb together, checked without hardware.

The printed commands are parsed back by esptool's own command-line parser (its click
commands, which open the files and check that the images do not overlap) without connecting
to a chip. A stand-in MicroPython image is built here with the stock ESP32_GENERIC layout:
bootloader at 0x1000, stock partition table at 0x8000, app at 0x10000.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import click
import pytest

from tools import flash, image
from tools import partition_table as pt

REPO = Path(__file__).resolve().parent.parent
CSV = REPO / "tools" / "partitions.csv"
STOCK_CSV = """\
nvs,      data, nvs,     0x9000,  0x6000,
phy_init, data, phy,     0xf000,  0x1000,
factory,  app,  factory, 0x10000, 0x1F0000,
vfs,      data, fat,     0x200000, 0x200000,
"""


def fake_micropython(path: Path, app_size: int = 0x180000, factory_at: int = 0x10000) -> Path:
    """The shape of ESP32_GENERIC-*.bin: an image meant for offset 0x1000."""
    stock = pt.parse_csv(STOCK_CSV.replace("0x10000, 0x1F0000", f"{factory_at:#x}, 0x1F0000"))
    data = bytearray(b"\xff" * (factory_at - 0x1000 + app_size))
    data[0:4] = b"\xe9\x03\x02\x20"  # ESP image header: magic, segments, mode, size/freq
    data[0x7000 : 0x7000 + 0xC00] = pt.to_binary(stock)
    app = factory_at - 0x1000
    data[app : app + 4] = b"\xe9\x06\x02\x20"
    data[app + 4 : app + app_size] = bytes((i * 7) & 0xFE for i in range(app_size - 4))
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("build")
    image.build(out=out)
    return out


def run_flash(build_dir: Path, *args: str, fetch=None, run=None, fw_dir: Path | None = None):
    argv = ["--build", str(build_dir), *args]
    if fw_dir is not None:
        argv += ["--firmware-dir", str(fw_dir)]
    return flash.main(argv, run=run, fetch=fetch)


def printed_commands(out: str) -> list[list[str]]:
    lines = [shlex.split(line) for line in out.splitlines() if line and not line.startswith("#")]
    return [c for c in lines if Path(c[0]).name == "esptool"]


def esptool_accepts(cmd: list[str]) -> dict:
    """Parse a command line with esptool's own CLI, resolving files, without a chip."""
    import esptool

    args = cmd[1:]
    group = esptool.cli
    group._esp = None  # set by EsptoolGroup.__call__ when esptool runs for real
    ctx = group.make_context("esptool", list(args), resilient_parsing=False)
    rest = list(getattr(ctx, "_protected_args", [])) + list(ctx.args)
    name, sub, sub_args = group.resolve_command(ctx, rest)
    assert sub is not None, f"esptool has no command {name!r}"
    sub_ctx = sub.make_context(name, list(sub_args), parent=ctx)
    try:
        return {"command": name, "global": dict(ctx.params), **sub_ctx.params}
    finally:
        for f in getattr(sub_ctx, "_open_files", []):
            f.close()


def test_dry_run_prints_erase_firmware_then_table_and_vfs_at_the_csv_offsets(
    build_dir, tmp_path, capsys
):
    fw = fake_micropython(tmp_path / "ESP32_GENERIC-test.bin")
    assert run_flash(build_dir, "--port", "/dev/ttyUSB0", "--firmware", str(fw), "--dry-run") == 0
    cmds = printed_commands(capsys.readouterr().out)
    parts = pt.load(CSV)
    journal, vfs = pt.find(parts, "journal"), pt.find(parts, "vfs")
    assert journal is not None and vfs is not None
    assert len(cmds) == 3
    for c in cmds:
        assert Path(c[0]).name == "esptool"
        assert c[1:7] == ["--chip", "esp32", "--port", "/dev/ttyUSB0", "--baud", "460800"]
    assert cmds[0][-3:] == ["erase-region", hex(journal.offset), hex(journal.size)]
    assert cmds[1][-3:] == ["write-flash", "0x1000", str(fw)]
    assert cmds[2][-5:-3] == ["write-flash", "0x8000"]
    assert cmds[2][-2] == hex(vfs.offset)
    table, vfs_bin = Path(cmds[2][-3]), Path(cmds[2][-1])
    for p in (table, vfs_bin):
        assert (p if p.is_absolute() else REPO / p).exists()
    assert "--after" in cmds[0] and "no-reset" in cmds[0]  # no boot between the steps
    assert "--after" in cmds[1] and "no-reset" in cmds[1]
    assert "--after" not in cmds[2]  # the last step resets the bulb into the new layout


def test_esptool_accepts_every_printed_command(build_dir, tmp_path, capsys):
    fw = fake_micropython(tmp_path / "ESP32_GENERIC-test.bin")
    run_flash(build_dir, "--port", "/dev/ttyUSB0", "--firmware", str(fw), "--dry-run")
    cmds = printed_commands(capsys.readouterr().out)
    parsed = [esptool_accepts(c) for c in cmds]
    assert parsed[0]["command"] == "erase-region"
    parts = pt.load(CSV)
    journal = pt.find(parts, "journal")
    assert journal is not None
    assert (parsed[0]["address"], parsed[0]["size"]) == (journal.offset, journal.size)
    assert parsed[0]["global"]["chip"] == "esp32"
    assert [a for a, _ in parsed[1]["addr_filename"]] == [0x1000]
    assert [a for a, _ in parsed[2]["addr_filename"]] == [0x8000, pt.find(parts, "vfs").offset]


def test_one_write_flash_with_everything_would_be_refused_by_esptool(build_dir, tmp_path):
    # why make flash writes the stock image first and the table in a second run
    fw = fake_micropython(tmp_path / "ESP32_GENERIC-test.bin")
    one = [
        "esptool", "--chip", "esp32", "--port", "/dev/ttyUSB0", "write-flash",
        "0x1000", str(fw), "0x8000", str(build_dir / "partitions.bin"),
        "0x200000", str(build_dir / "vfs.bin"),
    ]  # fmt: skip
    with pytest.raises(click.BadParameter, match="overlap"):
        esptool_accepts(one)


@pytest.mark.slow
def test_make_flash_dry_run_without_firmware_names_the_release_it_uses(build_dir, tmp_path):
    r = subprocess.run(
        # -o: take the venv as set up (the suite runs inside it), only image and flash run
        [
            "make",
            "-s",
            "-o",
            ".venv/.setup-done",
            "-o",
            ".venv/stubs/.done",
            "flash",
            "PORT=/dev/ttyUSB0",
            "DRY_RUN=1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert flash.RELEASE_URL in r.stdout
    cmds = printed_commands(r.stdout)
    assert cmds[0][-3] == "erase-region"
    assert cmds[1][-2:] == ["0x1000", f"var/firmware/{flash.RELEASE_FILE}"]
    vfs = pt.find(pt.load(CSV), "vfs")
    assert vfs is not None
    assert cmds[2][-4:] == ["0x8000", "build/partitions.bin", hex(vfs.offset), "build/vfs.bin"]


def test_offline_without_firmware_says_exactly_what_to_download(build_dir, tmp_path, capsys):
    def offline(url):
        raise OSError("Temporary failure in name resolution")

    rc = run_flash(build_dir, "--port", "/dev/ttyUSB0", fetch=offline, fw_dir=tmp_path)
    err = capsys.readouterr().err
    assert rc == 2
    assert flash.RELEASE_FILE in err and flash.RELEASE_URL in err
    assert "FIRMWARE=" in err


def test_online_without_firmware_downloads_checks_and_flashes_the_release(
    build_dir, tmp_path, capsys
):
    blob = fake_micropython(tmp_path / "blob.bin").read_bytes()
    urls, ran = [], []
    rc = run_flash(
        build_dir,
        "--port",
        "/dev/ttyUSB0",
        fetch=lambda url: urls.append(url) or blob,
        run=lambda c: ran.append(c) or 0,
        fw_dir=tmp_path / "fw",
    )
    assert rc == 0
    assert urls == [flash.RELEASE_URL]
    saved = tmp_path / "fw" / flash.RELEASE_FILE
    assert saved.read_bytes() == blob
    assert len(ran) == 3
    assert ran[1][-2] == "0x1000" and Path(ran[1][-1]).resolve() == saved.resolve()


def test_a_failing_step_stops_the_rest_and_says_so(build_dir, tmp_path, capsys):
    fw = fake_micropython(tmp_path / "mp.bin")
    ran = []
    rc = run_flash(
        build_dir,
        "--port",
        "/dev/ttyUSB0",
        "--firmware",
        str(fw),
        run=lambda c: ran.append(c) or (2 if len(ran) == 2 else 0),
    )
    assert rc == 2 and len(ran) == 2
    assert "step 2 of 3 failed" in capsys.readouterr().err


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: p.write_bytes(b"PK\x03\x04" + b"\x00" * 0x9000), "not an ESP32 firmware image"),
        (lambda p: fake_micropython(p, factory_at=0x20000), "factory app at 0x20000"),
        (lambda p: fake_micropython(p, app_size=0x1F1000), "the factory partition holds"),
        (
            lambda p: p.write_bytes(fake_micropython(p).read_bytes()[:0x7000] + b"\xff" * 0x2000),
            "no valid partition table",
        ),
    ],
    ids=["not-esp32", "other-layout", "app-too-big", "no-table"],
)
def test_a_wrong_firmware_file_is_refused_before_anything_is_written(
    build_dir, tmp_path, capsys, make, message
):
    fw = tmp_path / "fw.bin"
    make(fw)
    ran = []
    rc = run_flash(
        build_dir, "--port", "/dev/ttyUSB0", "--firmware", str(fw), run=lambda c: ran.append(c)
    )
    assert rc == 2 and ran == []
    assert message in capsys.readouterr().err


def test_without_port_or_images_it_says_what_to_do(tmp_path, capsys):
    assert run_flash(tmp_path, "--port", "/dev/ttyUSB0", "--dry-run") == 2
    assert "run `make image` first" in capsys.readouterr().err
    build = tmp_path / "b"
    image.build(out=build)
    fw = fake_micropython(tmp_path / "mp.bin")
    assert run_flash(build, "--firmware", str(fw), "--dry-run") == 2
    assert "PORT= is required" in capsys.readouterr().err


def test_a_stale_partition_table_is_not_flashed(tmp_path, capsys):
    build = tmp_path / "b"
    image.build(out=build)
    parts = pt.load(CSV)
    lines = []
    for p in parts:  # the journal shrunk by a sector since the image was built
        size = p.size - 0x1000 if p.name == "journal" else p.size
        lines.append(f"{p.name}, {p.type}, {p.subtype:#x}, {p.offset:#x}, {size:#x},")
    csv = tmp_path / "p.csv"
    csv.write_text("\n".join(lines) + "\n")
    fw = fake_micropython(tmp_path / "mp.bin")
    rc = run_flash(build, "--port", "/dev/ttyUSB0", "--firmware", str(fw), "--csv", str(csv))
    assert rc == 2
    assert "does not match" in capsys.readouterr().err
