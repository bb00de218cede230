"""``rtcode policy show|check|diff``: read, validate and compare coding policies."""

from __future__ import annotations

import click

from rtcode.cli.options import echo, load_policy
from rtcode.coding import policy as policy_mod
from rtcode.model.errors import PolicyError


@click.group()
def policy() -> None:
    """Read, check and compare coding policies (TOML files; shipped: see `policy show`)."""


@policy.command("show")
@click.argument("name", default="default")
def policy_show(name: str) -> None:
    """Print the effective policy NAME (a shipped name or a TOML file), with `extends`
    resolved, as TOML. Shipped policies are listed on standard error."""
    p = load_policy(name, "'NAME'")
    echo(p.to_toml(), nl=False)
    echo("shipped policies: " + ", ".join(policy_mod.builtin_names()), err=True)


@policy.command("check")
@click.argument("file")
def policy_check(file: str) -> None:
    """Validate a policy file: exit 0 and print its name, version and hash when it is
    valid; exit 2 with a message naming the key, the value and what is allowed."""
    try:
        p = policy_mod.load(file)
    except PolicyError as exc:
        echo(f"invalid: {exc}", err=True)
        raise SystemExit(2) from None
    echo(f"valid: {p.name} {p.version} sha256 {p.sha256}")


@policy.command("diff")
@click.argument("a")
@click.argument("b")
def policy_diff(a: str, b: str) -> None:
    """Show the settings that differ between two policies (names or files). Exit 0 when
    they are the same, 1 when they differ."""
    pa, pb = load_policy(a, "'A'"), load_policy(b, "'B'")
    rows = []
    for key in sorted(set(pa.values) | set(pb.values)):
        va, vb = pa.values.get(key), pb.values.get(key)
        if va != vb:
            rows.append((key, va, vb))
    for code in sorted(set(pa.validity) | set(pb.validity)):
        va, vb = pa.validity.get(code), pb.validity.get(code)
        if va != vb:
            rows.append((f"validity.{code}", va, vb))
    echo(f"--- {pa.name} {pa.version} ({pa.source})")
    echo(f"+++ {pb.name} {pb.version} ({pb.source})")
    for key, va, vb in rows:
        echo(f"{key}: {va!r} -> {vb!r}")
    if not rows:
        echo("no differences")
    raise SystemExit(1 if rows else 0)
