"""``rtcode listen``: a DICOM storage node that codes plans as their parts arrive."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

import click

from rtcode.cli.options import checked_database, echo, inputs_of, load_policy, safe
from rtcode.sources.listen import Listener, ListenSettings
from rtcode.sources.results_db import ResultsDatabaseError


@click.command()
@click.option(
    "--ae-title",
    default="RTCODE",
    show_default=True,
    help="Our AE title: the planning system's DICOM export names it as the called AE.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on: 127.0.0.1 serves this computer only; give the address of"
    " a network interface (or 0.0.0.0) to accept the planning system's connections.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=11112,
    show_default=True,
    help="TCP port (0: any free port; the port is printed at start).",
)
@click.option(
    "--store",
    "store_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder where received instances are kept (created when missing; each file"
    " private to this user, mode 0600, whatever the umask).",
)
@click.option(
    "--db",
    "db_path",
    required=True,
    metavar="FILE",
    help="SQLite results database (created when missing, private to this user: mode"
    " 0600); read it with rtcode results.",
)
@click.option(
    "--allow-calling-aet",
    "allowed",
    multiple=True,
    help="Accept associations only from this calling AE title (repeat for more; default: any).",
)
@click.option(
    "--accept-ct",
    is_flag=True,
    help="Also accept and keep CT images, to keep complete exports (they never change a code).",
)
@click.option(
    "--max-pdu",
    "max_pdu_bytes",
    type=click.IntRange(4096, 16 * 2**20),
    default=65536,
    show_default=True,
    help="Largest PDU accepted, in bytes; a peer sending a longer one is disconnected.",
)
@click.option(
    "--max-instance-mb",
    type=click.FloatRange(min=0.001),
    help="Largest instance accepted, in MB; a larger one is refused while it arrives,"
    " a deflated one as it inflates (default: the policy's limits.max_file_size_mb).",
)
@click.option(
    "--max-associations",
    type=click.IntRange(1, 100),
    default=8,
    show_default=True,
    help="Associations served at once; more are rejected (local limit exceeded).",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(1, 3600),
    default=60,
    show_default=True,
    help="Seconds an association may stay silent before it is aborted.",
)
@click.option(
    "--association-timeout",
    "association_timeout_s",
    type=click.FloatRange(0.5, 600),
    default=5,
    show_default=True,
    help="Seconds a new connection has to ask for an association (A-ASSOCIATE-RQ); a"
    " connection that does not is closed. Until it asks it holds no association slot.",
)
@click.option(
    "--policy",
    "policy_name",
    default="default",
    show_default=True,
    help="A shipped policy name or a policy TOML file.",
)
@click.option("--verbose", "-v", is_flag=True, help="Log every association, instance and coding.")
def listen(
    ae_title: str,
    host: str,
    port: int,
    store_dir: Path,
    db_path: str,
    allowed: tuple[str, ...],
    accept_ct: bool,
    max_pdu_bytes: int,
    max_instance_mb: float | None,
    max_associations: int,
    timeout_s: float,
    association_timeout_s: float,
    policy_name: str,
    verbose: bool,
) -> None:
    """Receive plans from the planning system as a DICOM node (storage SCP) and code
    them as their parts arrive: a plan is re-coded when its dose or structure set
    arrives later. Results, with evidence, go to the --db database (rtcode results).

    Accepts RT Plan, RT Ion Plan, RT Dose and RT Structure Set (and CT with
    --accept-ct) and answers C-ECHO. Ctrl-C stops: the instance in flight is
    finished, nothing stored is lost. Needs the rtcode[net] extra (pynetdicom).
    """
    try:  # here: pynetdicom is the optional rtcode[net] extra; say how to get it
        import pynetdicom  # noqa: F401
    except ImportError:
        raise click.ClickException(
            "rtcode listen needs pynetdicom: pip install 'rtcode[net]'"
        ) from None
    policy = load_policy(policy_name)
    # everything in the store is an input of the coding: the database is not kept there
    inputs = inputs_of((), policy, folders=[store_dir])
    db_file = checked_database(db_path, "--db", inputs)
    max_mb = max_instance_mb if max_instance_mb is not None else policy["limits.max_file_size_mb"]
    settings = ListenSettings(
        store_dir=store_dir,
        db_path=db_file,
        ae_title=ae_title,
        host=host,
        port=port,
        allowed_calling_aets=tuple(allowed),
        accept_ct=accept_ct,
        max_pdu_bytes=max_pdu_bytes,
        max_instance_bytes=int(max_mb * 2**20),
        max_associations=max_associations,
        network_timeout_s=timeout_s,
        acse_timeout_s=association_timeout_s,
    )
    _log_to_stderr(verbose)
    try:
        listener = Listener(settings, policy)
    except ValueError as exc:
        raise click.UsageError(safe(str(exc))) from None
    try:
        bound_host, bound_port = listener.start()
    except ResultsDatabaseError as exc:
        raise click.BadParameter(safe(str(exc)), param_hint="--db") from None
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    echo(
        f"rtcode listen: {ae_title} on {bound_host}:{bound_port}, storing in {store_dir},"
        f" results in {db_file}; Ctrl-C stops",
        err=True,
    )
    _serve_until_stopped(listener)


def _log_to_stderr(verbose: bool) -> None:
    """rtcode's and pynetdicom's log on standard error (--verbose: every event)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name, level in (
        ("rtcode", logging.INFO if verbose else logging.WARNING),
        ("pynetdicom", logging.INFO if verbose else logging.CRITICAL),
    ):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.addHandler(handler)


def _serve_until_stopped(listener: Listener) -> None:
    """Wait for Ctrl-C or SIGTERM, then stop the listener (the instance in flight is
    finished; a second Ctrl-C does not cut that short)."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    echo("rtcode listen: stopping (finishing the instance in flight)", err=True)
    interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)  # stopping is bounded
    try:
        listener.stop()
    finally:
        signal.signal(signal.SIGINT, interrupt)
    echo("rtcode listen: stopped", err=True)
