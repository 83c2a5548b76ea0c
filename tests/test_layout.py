"""The code's layout: one module per workflow stage, cli.py only parses arguments, no file
grows past ~400 lines, and every rule file names stage modules that exist."""

import ast
import re
from pathlib import Path

import pytest

from empriors import cli

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "empriors"
MAX_LINES = 400


def test_no_source_file_is_over_the_limit():
    long = {
        str(p.relative_to(ROOT)): n
        for p in SRC.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"split these modules (over {MAX_LINES} lines): {long}"


def _subcommands():
    parser = cli.build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return {name: sp.get_default("fn") for name, sp in action.choices.items()}


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_every_subcommand_runs_a_stage_module(name):
    fn = _subcommands()[name]
    assert fn.__module__.startswith("empriors.stages."), (name, fn.__module__)
    # the function is named for the command (``diagnostics`` aggregates the per-lap ones)
    expected = {"diagnostics": "cmd_diagnostics_aggregate"}.get(
        name, "cmd_" + name.replace("-", "_")
    )
    assert fn.__name__ == expected, (name, fn.__name__)


def test_cli_holds_only_argument_parsing():
    """cli.py defines the parser, argparse types, the output paths the arguments name and
    main(); no stage logic."""
    tree = ast.parse((SRC / "cli.py").read_text())
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert functions <= {"build_parser", "main", "_boolean", "_iteration", "_outputs"}, functions


def test_rule_files_name_existing_stage_modules():
    """Each rule file that runs ``python -m empriors`` says which stage modules it maps to,
    and those modules define the commands its rules run."""
    commands = _subcommands()
    for path in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        text = path.read_text()
        used = set(re.findall(r"python -m empriors ([a-z-]+)", text))
        if not used:
            continue
        header = re.search(r"# Stage modules: (.*?)\(src/empriors/stages/\)", text, re.S)
        assert header, f"{path.name}: no '# Stage modules:' line"
        named = set(re.findall(r"empriors\.stages\.(\w+)", header.group(1)))
        for module in named:
            assert (SRC / "stages" / f"{module}.py").is_file(), (path.name, module)
        for command in used:
            module = commands[command].__module__.rsplit(".", 1)[1]
            assert module in named, f"{path.name} runs {command} ({module}) but names {named}"


def test_every_output_the_cli_checks_is_an_argument_of_its_command():
    """cli.WRITES (outputs checked writable before any compute) names real commands and
    their real arguments: a misspelt name would silently go unchecked."""
    parser = cli.build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    for command, outputs in cli.WRITES.items():
        assert command in action.choices, command
        dests = {a.dest for a in action.choices[command]._actions}
        for name in outputs:
            assert name.rstrip("/") in dests, (command, name)
