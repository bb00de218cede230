"""The command line: one module per command (``scan``, ``report``, ``inspect``,
``audit``, ``listen``, ``results``, ``policy``), shared options in ``options``.
Library errors become messages and exit codes here.

Exit status: 0 the command finished (problems with single files are listed), 1 no
plan could be read from the inputs (or none passed --patient, --since and --until),
2 usage errors (bad option, bad policy, an input path that does not exist: said in
one line before anything is read). Output files follow the umask; ``-`` is standard
output for every ``--output`` and ``--html``.
"""

from __future__ import annotations

import importlib

import click

from rtcode import __version__

COMMANDS = ("audit", "inspect", "listen", "policy", "report", "results", "scan")


class _Commands(click.Group):
    """The commands, each imported from its module only when it runs (or help lists
    it): a rescan answered from the cache starts in a fraction of a second only if it
    does not load the audit, report, listener and their numpy first."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        command = getattr(importlib.import_module(f"rtcode.cli.{cmd_name}"), cmd_name)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="rtcode")
def main() -> None:
    """Suggest radiation-oncology planning codes (77306, 77307, 77295, 77301 and
    brachytherapy 77316-77318) from DICOM-RT exports, with the evidence from the files.

    rtcode is advisory: it never approves a plan or submits a claim.
    """
