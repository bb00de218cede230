"""Every path a command writes goes through one guard (rtcode/output/files.py): never an
input (itself, through a symbolic link, a hard link, or a link inside a scanned
folder), nothing under a scanned folder, no folder, pipe or device, no missing
folder, no empty name; each refusal is exit status 2 with one line that names the
path, before anything is read or written. Outputs are written atomically, and a
killed scan leaves no temporary file.

Everything happens in tmp_path; the tree is compared byte for byte before and after.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import rtcode.output.files
from rtcode.cli import main

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data"
CASE = "06_four_field_box_3d"


def tree(root: Path) -> dict[str, tuple]:
    """Every entry under root: its kind and bytes (files), target (links); pipes and
    devices are never opened."""
    found: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            st = path.lstat()
            key = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                found[key] = ("link", os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                found[key] = ("file", hashlib.sha256(path.read_bytes()).hexdigest(), st.st_ino)
            else:
                found[key] = (stat.S_IFMT(st.st_mode),)
    return found


@pytest.fixture
def world(tmp_path, monkeypatch):
    """export/ (a sample case), linked/ (symbolic links to export's files, as a
    department's "scan" folder of links), elsewhere/ (a folder that is no input),
    a charges file and a policy file."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(SAMPLE_DATA / CASE, "export")
    os.mkdir("linked")
    for f in sorted(os.listdir("export")):
        os.symlink(f"../export/{f}", f"linked/{f}")
    os.mkdir("elsewhere")
    shutil.copy(SAMPLE_DATA / "charges_clean.csv", "charges.csv")
    Path("local.toml").write_text('[policy]\nextends = "default"\nname = "local"\n')
    return tmp_path


# ----------------------------------------------------------- the commands that write


def _scan(fmt):
    return lambda paths, target: ["scan", *paths, "--format", fmt, "--no-cache", "-o", target]


WRITERS = {
    "scan table": (_scan("table"), "--output"),
    "scan json": (_scan("json"), "--output"),
    "scan csv": (_scan("csv"), "--output"),
    "scan jsonl": (_scan("jsonl"), "--output"),
    "scan jsonl --deidentify": (
        lambda paths, t: [
            "scan",
            *paths,
            "--format",
            "jsonl",
            "--no-cache",
            "--deidentify",
            "-o",
            t,
        ],
        "--output",
    ),
    "scan --cache": (
        lambda paths, t: ["scan", *paths, "--format", "json", "--cache", t],
        "--cache",
    ),
    "report --html": (lambda paths, t: ["report", *paths, "--html", t], "--html"),
    "report json -o": (
        lambda paths, t: ["report", *paths, "--format", "json", "-o", t],
        "--output",
    ),
    "audit json": (
        lambda paths, t: ["audit", *paths, "--charges", "charges.csv", "--format", "json", "-o", t],
        "--output",
    ),
    "audit html": (
        lambda paths, t: ["audit", *paths, "--charges", "charges.csv", "--format", "html", "-o", t],
        "--output",
    ),
}


# ------------------------------------------------------------------ hostile targets
# Each makes its target (in tmp_path) and says which PATHS the command is given, and
# how the refusal must read.


def _input_file(root):
    return ["export/RP.dcm"], "export/RP.dcm", "is one of the inputs"


def _symlink_to_input(root):
    os.symlink("../export/RP.dcm", "elsewhere/plan.dcm")
    return ["export/RP.dcm"], "elsewhere/plan.dcm", "is the input export/RP.dcm"


def _input_through_a_link_in_the_folder(root):
    # linked/RP.dcm -> ../export/RP.dcm: scanning linked/ reads export/RP.dcm
    return ["linked"], "export/RP.dcm", "is the input linked/RP.dcm"


def _hard_link_to_input(root):
    os.link("export/RP.dcm", "elsewhere/plan.dcm")
    return ["export/RP.dcm"], "elsewhere/plan.dcm", "is the input export/RP.dcm"


def _hard_link_into_the_folder(root):
    os.link("export/RS.dcm", "elsewhere/rs.dcm")
    return ["export"], "elsewhere/rs.dcm", "is the input export/RS.dcm"


def _file_in_the_folder(root):
    return ["export"], "export/RD.dcm", "is inside the scanned folder export"


def _new_file_in_the_folder(root):
    return ["export"], "export/new.out", "is inside the scanned folder export"


def _folder_through_a_symlink(root):
    os.symlink("../export", "elsewhere/to-export")
    return ["export"], "elsewhere/to-export/new.out", "is inside the scanned folder export"


def _policy_file(root):
    return ["export/RP.dcm", "--policy", "local.toml"], "local.toml", "is one of the inputs"


def _fifo(root):
    os.mkfifo("elsewhere/fifo")
    return ["export/RP.dcm"], "elsewhere/fifo", "is a named pipe"


def _device(root):
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    os.mknod("elsewhere/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))  # as /dev/null
    return ["export/RP.dcm"], "elsewhere/null", "is a device"


def _folder(root):
    os.mkdir("elsewhere/dir")
    return ["export/RP.dcm"], "elsewhere/dir", "is a folder"


def _missing_folder(root):
    return ["export/RP.dcm"], "elsewhere/missing/x.out", "does not exist"


def _folder_that_is_a_file(root):
    return ["export/RP.dcm"], "charges.csv/x.out", "is not a folder"


def _broken_link(root):
    os.symlink("nowhere/x", "elsewhere/broken")
    return ["export/RP.dcm"], "elsewhere/broken", "broken symbolic link"


def _empty(root):
    return ["export/RP.dcm"], "", "is empty"


def _stderr(root):
    return ["export/RP.dcm"], "/dev/stderr", "is a file descriptor"


HOSTILE = {
    f.__name__.lstrip("_"): f
    for f in (
        _input_file,
        _symlink_to_input,
        _input_through_a_link_in_the_folder,
        _hard_link_to_input,
        _hard_link_into_the_folder,
        _file_in_the_folder,
        _new_file_in_the_folder,
        _folder_through_a_symlink,
        _policy_file,
        _fifo,
        _device,
        _folder,
        _missing_folder,
        _folder_that_is_a_file,
        _broken_link,
        _empty,
        _stderr,
    )
}


def _refused(world, argv, option, target, says):
    before = tree(world)
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith(f"rtcode: {option} {target}"), line
    assert says in line, line
    assert result.stdout == ""
    assert tree(world) == before  # no input changed, nothing new anywhere


@pytest.mark.parametrize("hostile", HOSTILE)
@pytest.mark.parametrize("writer", WRITERS)
def test_every_writer_refuses_every_hostile_target(world, writer, hostile):
    build, option = WRITERS[writer]
    paths, target, says = HOSTILE[hostile](world)
    if writer == "scan --cache" and hostile == "missing_folder":
        pytest.skip("the scan cache makes its folder: test_the_cache_makes_its_folder")
    _refused(world, build(paths, target), option, target, says)


@pytest.fixture
def no_listening(monkeypatch):
    """A refused --db must stop listen before it listens (else the test would wait)."""
    import rtcode.sources.listen

    def start(self):
        raise AssertionError("listen started although --db should have been refused")

    monkeypatch.setattr(rtcode.sources.listen.Listener, "start", start)


# listen's input is its store: what it receives is coded from there
IN_THE_STORE = "is inside the scanned folder export"
LISTEN_SAYS = {
    "input_file": IN_THE_STORE,
    "symlink_to_input": IN_THE_STORE,
    "input_through_a_link_in_the_folder": IN_THE_STORE,
    "hard_link_to_input": "is the input export/RP.dcm",
}


@pytest.mark.parametrize("hostile", [h for h in HOSTILE if h != "policy_file"])
def test_listen_db_refuses_every_hostile_target(world, hostile, no_listening):
    _, target, says = HOSTILE[hostile](world)
    argv = ["listen", "--store", "export", "--db", target, "--port", "0"]
    _refused(world, argv, "--db", target, LISTEN_SAYS.get(hostile, says))


def test_listen_db_is_not_the_policy_file(world, no_listening):
    argv = ["listen", "--store", "export", "--policy", "local.toml", "--db", "local.toml"]
    _refused(world, argv, "--db", "local.toml", "is one of the inputs")


def test_the_output_is_not_the_cache_nor_beside_it(world):
    for target in ("elsewhere/c.sqlite", "elsewhere/c.sqlite-wal"):
        argv = ["scan", "export", "--cache", "elsewhere/c.sqlite", "-o", target]
        _refused(world, argv, "--output", target, "is the scan cache")
    os.link("export/RP.dcm", "elsewhere/c.sqlite-wal")  # SQLite would write into it
    argv = ["scan", "export", "--cache", "elsewhere/c.sqlite"]
    _refused(world, argv, "--cache", "elsewhere/c.sqlite", "is the input export/RP.dcm")


def test_the_charges_and_ptp_files_are_inputs_of_the_audit(world):
    shutil.copy(SAMPLE_DATA / "ptp_synthetic.txt", "ptp.txt")
    for target in ("charges.csv", "ptp.txt"):
        argv = ["audit", "export", "--charges", "charges.csv", "--ptp", "ptp.txt", "-o", target]
        _refused(world, argv, "--output", target, "is one of the inputs")


def test_a_bind_mounted_or_otherwise_aliased_folder_is_still_the_scanned_folder(world):
    """The folder above the target is compared by identity, not only by path."""
    inputs = rtcode.output.files.Inputs(["export"])
    real = os.path.realpath("elsewhere/x.out")
    assert inputs.clash(real, None) is None
    export_id = (os.stat("export").st_dev, os.stat("export").st_ino)
    assert rtcode.output.files._above(os.path.realpath("export/sub/x.out"), export_id)
    assert not rtcode.output.files._above(real, export_id)


# ------------------------------------------------------------------ what may be written


@pytest.fixture
def umask_027():
    """A umask that is neither the usual 022 nor 077, so that an output mode that
    follows it (0640) cannot be a constant by chance."""
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("writer", [w for w in WRITERS if w != "scan --cache"])
def test_a_new_file_elsewhere_and_an_earlier_output_are_written(world, writer, umask_027):
    build, _ = WRITERS[writer]
    target = Path("elsewhere/out")
    for attempt in (1, 2):  # the second replaces the first output
        if attempt == 2:
            target.write_text("an earlier output\n")
        result = CliRunner().invoke(main, build(["export"], str(target)))
        assert result.exit_code in (0, 4), result.output  # audit: 4 with findings
        assert target.read_text(encoding="utf-8") != "an earlier output\n"
        assert stat.S_IMODE(target.stat().st_mode) == 0o640  # 0666 less the umask
        assert sorted(os.listdir("elsewhere")) == ["out"]  # no temporary file left


@pytest.mark.parametrize("writer", [w for w in WRITERS if w != "scan --cache"])
@pytest.mark.parametrize("dash", ["-", "/dev/stdout"])
def test_dash_is_standard_output(world, writer, dash):
    build, _ = WRITERS[writer]
    before = tree(world)
    result = CliRunner().invoke(main, build(["export"], dash))
    assert result.exit_code in (0, 4), result.output
    assert result.stdout.strip()
    assert "wrote" not in result.stderr
    assert tree(world) == before  # no file named "-"


def test_the_cache_makes_its_folder_but_refuses_standard_output(world):
    argv = ["scan", "export", "--format", "json", "--cache", "elsewhere/new/c.sqlite"]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 0, result.output
    assert Path("elsewhere/new/c.sqlite").is_file()
    argv = ["scan", "export", "--cache", "-"]
    _refused(world, argv, "--cache", "-", "standard output cannot hold")


def test_html_to_standard_output_and_format_together_is_a_usage_error(world):
    result = CliRunner().invoke(main, ["report", "export", "--html", "-", "--format", "json"])
    assert result.exit_code == 2 and "both write to standard output" in result.output


def test_the_default_cache_is_not_kept_under_a_scanned_folder(world, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(world / "export" / ".cache"))
    before = tree(world)
    result = CliRunner().invoke(main, ["scan", "export", "--format", "csv"])
    assert result.exit_code == 0
    assert "scanning without it" in result.stderr
    assert tree(world) == before


# ------------------------------------------------------------ checked again at the end


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
@pytest.mark.parametrize("appears", ["link to the input", "fifo"])
def test_a_file_that_appears_during_the_scan_is_checked_before_the_rename(
    world, monkeypatch, fmt, appears
):
    target = Path("elsewhere/out")
    real_commit = rtcode.output.files.AtomicFile.commit

    def commit(self):
        if appears == "fifo":
            os.mkfifo(target)
        else:
            os.symlink("../export/RP.dcm", target)
        return real_commit(self)

    monkeypatch.setattr(rtcode.output.files.AtomicFile, "commit", commit)
    before = tree(world)
    argv = ["scan", "export/RP.dcm", "--format", fmt, "--no-cache", "-o", str(target)]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2, result.output
    assert f"rtcode: --output {target}" in result.stderr
    after = tree(world)
    del after[str(target.relative_to("."))]
    assert after == before  # the input as it was, no temporary file


def test_a_failed_write_is_a_message_not_a_traceback(world, monkeypatch):
    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    argv = ["scan", "export", "--format", "json", "--no-cache", "-o", "elsewhere/out"]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        "rtcode: cannot write elsewhere/out: No space left on device"
    )
    assert os.listdir("elsewhere") == []


# ------------------------------------------------------------------ killed mid-scan

# rtcode, stopped after the first plan is written to the jsonl output (a marker file
# says so), until it is killed
SLOW_RTCODE = textwrap.dedent(
    """
    import os, sys, time
    import rtcode.output.files as out
    if os.environ.get("NAMED_TEMPORARY"):
        out._HAVE_O_TMPFILE = False
    real_write = out.AtomicFile.write

    def write(self, text):
        real_write(self, text)
        self.flush()
        if not os.path.exists(os.environ["MARKER"]):
            open(os.environ["MARKER"], "w").close()
            time.sleep(600)

    out.AtomicFile.write = write
    from rtcode.cli import main
    sys.argv[0] = "rtcode"
    main()
    """
)


def _start_and_kill(world, sig, named):
    marker = world / "marker"
    os.mkdir(world / "tmp")  # the --no-cache scan's temporary cache goes there
    env = {**os.environ, "MARKER": str(marker), "TMPDIR": str(world / "tmp")}
    if named:
        env["NAMED_TEMPORARY"] = "1"
    argv = ["scan", "export", "--format", "jsonl", "--jobs", "1", "--no-cache"]
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_RTCODE, *argv, "-o", "elsewhere/night.jsonl"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the scan did not write its first plan"
            time.sleep(0.05)
        during = os.listdir("elsewhere")
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return during, proc.returncode


def _o_tmpfile_works(folder: Path) -> bool:
    if not hasattr(os, "O_TMPFILE"):
        return False
    try:
        os.close(os.open(folder, os.O_TMPFILE | os.O_WRONLY, 0o600))
    except OSError:
        return False
    return True


def test_a_killed_jsonl_scan_leaves_no_temporary_file(world):
    if not _o_tmpfile_works(world / "elsewhere"):
        pytest.skip("no O_TMPFILE here: a named temporary file cannot survive SIGKILL")
    during, status = _start_and_kill(world, signal.SIGKILL, named=False)
    assert during == []  # the plan written so far has no name at all
    assert status == -signal.SIGKILL
    assert os.listdir("elsewhere") == []  # no temporary file, no output


def test_a_terminated_scan_removes_its_named_temporary_file(world):
    during, status = _start_and_kill(world, signal.SIGTERM, named=True)
    assert len(during) == 1 and during[0].endswith(".tmp")  # the fallback was in use
    assert status == -signal.SIGTERM  # ended as SIGTERM ends it
    assert os.listdir("elsewhere") == []
    assert os.listdir("tmp") == []  # nor the temporary scan cache


def test_named_temporary_files_follow_the_umask_too(world, monkeypatch, umask_027):
    monkeypatch.setattr(rtcode.output.files, "_HAVE_O_TMPFILE", False)
    target = rtcode.output.files.check("elsewhere/out", "--output", rtcode.output.files.Inputs())
    target.write_text("shared\n")
    assert stat.S_IMODE(Path("elsewhere/out").stat().st_mode) == 0o640


def test_named_temporary_files_are_removed_on_exceptions(world, monkeypatch):
    monkeypatch.setattr(rtcode.output.files, "_HAVE_O_TMPFILE", False)
    target = rtcode.output.files.check("elsewhere/out", "--output", rtcode.output.files.Inputs())
    with pytest.raises(RuntimeError), target.open() as fh:
        fh.write("half")
        assert len(os.listdir("elsewhere")) == 1
        raise RuntimeError
    assert os.listdir("elsewhere") == []
    assert not list(rtcode.output.files._LIVE) and not rtcode.output.files._HANDLED
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_where_proc_cannot_link_the_bytes_are_copied(world, monkeypatch):
    real_link = os.link

    def no_link(src, dst, **kwargs):
        if str(src).startswith("/proc/"):
            raise OSError(18, "Invalid cross-device link")
        return real_link(src, dst, **kwargs)

    monkeypatch.setattr(os, "link", no_link)
    target = rtcode.output.files.check("elsewhere/out", "--output", rtcode.output.files.Inputs())
    target.write_text("all of it\n" * 100000)
    assert Path("elsewhere/out").read_text() == "all of it\n" * 100000
    assert os.listdir("elsewhere") == ["out"]


def test_a_default_cache_that_is_no_regular_file_is_not_used(world):
    """SQLite is not let near a pipe at the default cache path (it wrote a journal
    beside it, and could hang); the scan goes on without a cache."""
    os.makedirs("home/rtcode")
    os.mkfifo("home/rtcode/scan-cache.sqlite")
    env = {**os.environ, "XDG_CACHE_HOME": str(world / "home")}
    argv = [sys.executable, "-m", "rtcode", "scan", "export", "--format", "csv"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "not a regular file" in done.stderr and "scanning without it" in done.stderr
    assert stat.S_ISFIFO(os.lstat("home/rtcode/scan-cache.sqlite").st_mode)
    assert os.listdir("home/rtcode") == ["scan-cache.sqlite"]


# ------------------------------------------------------------------------ --jobs


@pytest.mark.parametrize("jobs", ["0", "-1"])
def test_jobs_below_one_is_a_usage_error(world, jobs):
    result = CliRunner().invoke(main, ["scan", "export", "--jobs", jobs])
    assert result.exit_code == 2 and "--jobs" in result.output


def test_jobs_are_capped_at_the_cores(world, monkeypatch):
    import rtcode.engine.execute
    import rtcode.engine.scan

    monkeypatch.setattr(rtcode.engine.execute, "default_jobs", lambda: 2)
    started = []
    real_runner = rtcode.engine.scan.Runner

    def runner(**kwargs):
        started.append(kwargs["jobs"])
        return real_runner(**kwargs)

    monkeypatch.setattr(rtcode.engine.scan, "Runner", runner)
    for given, used, said in ((["-j", "40"], 2, True), (["-j", "2"], 2, False), ([], 2, False)):
        result = CliRunner().invoke(main, ["scan", "export", "--format", "json", *given])
        assert result.exit_code == 0, result.output
        assert started.pop() == used
        note = "--jobs 40 is more than the 2 core(s) this process may use: starting 2"
        assert (note in result.stderr) is said
        json.loads(result.stdout)
