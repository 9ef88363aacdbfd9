"""The README and docs/ against the code, in a few seconds: every relative link and image exists,
every command they quote parses with the current argument parser, and every flag of every
command has help text and is named somewhere in the docs.

Parsers are built in this process (`parser()` of each command; none imports TensorFlow), so a
flag that was removed or renamed fails here, not in a newcomer's terminal.
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import importlib
import importlib.util
import io
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "saved_models" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
CODE_SPAN = re.compile(r"`([^`]+)`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
SHELL_OPERATORS = {"&&", "||", "|", ";", "&", ">", ">>", "<", "2>", "2>&1"}


def programs() -> list[str]:
    """Every command there is: the console scripts' modules (setup.cfg) and the benchmark scripts."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    modules = [line.split("=", 1)[1].split(":")[0].strip()
               for line in cfg["options.entry_points"]["console_scripts"].strip().splitlines()]
    modules = ["tuning" if m == "tuning.__main__" else m for m in modules]
    return modules + [f"bench/{p.name}" for p in sorted((ROOT / "bench").glob("*.py"))]


def parser_of(program: str) -> argparse.ArgumentParser:
    """The argument parser of `python -m <program>` or `python <program>` (bench/*.py)."""
    if program.endswith(".py"):
        spec = importlib.util.spec_from_file_location(f"bench_{Path(program).stem}", ROOT / program)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module("tuning.__main__" if program == "tuning" else program)
    return module.parser()


def links(markdown: str) -> list[str]:
    """Relative link and image targets, code blocks and spans left out, #anchors stripped."""
    prose = CODE_SPAN.sub("", FENCE.sub("", markdown))
    targets = [t.split("#", 1)[0] for t in LINK.findall(prose)]
    return [t for t in targets if t and not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def commands(markdown: str) -> list[list[str]]:
    """Every `python -m kerasdl...`, `python -m tuning ...` or `python bench/....py` command line in
    code blocks and code spans, as argv after `python` (line continuations joined, comments,
    environment-variable prefixes and whatever a pipe, `&&` or `&` adds left out)."""
    snippets = []
    for block in FENCE.findall(markdown):
        snippets += block.replace("\\\n", " ").splitlines()
    snippets += [span.replace("\n", " ") for span in CODE_SPAN.findall(FENCE.sub("", markdown))]
    found = []
    for snippet in snippets:
        lexer = shlex.shlex(snippet, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        try:
            tokens = list(lexer)
        except ValueError:  # an unbalanced quote: not a command line
            continue
        segment: list[str] = []
        for token in [*tokens, ";"]:
            if token not in SHELL_OPERATORS:
                segment.append(token)
                continue
            while segment and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", segment[0]):  # KERASDL_FAULT=x python ...
                segment.pop(0)
            if len(segment) >= 2 and segment[0] in ("python", "python3") and (
                    segment[1] == "-m" and len(segment) >= 3 and re.match(r"^(kerasdl|tuning)\b", segment[2])
                    or segment[1].startswith("bench/") and segment[1].endswith(".py")):
                found.append(segment[1:])
            segment = []
    return found


def placeholders_filled(args: list[str]) -> list[str]:
    """Docs' placeholders made concrete: `[--json]` is an optional flag, `{linear,mlp,cnn}` its first
    choice, `<name>` any name, `...` nothing."""
    out = []
    for arg in args:
        if arg in ("...", "…") or "..." in arg and not arg.startswith("-"):
            continue
        arg = arg.strip("[]")
        arg = re.sub(r"\{([^,{}]+),[^{}]*\}", r"\1", arg)
        arg = re.sub(r"<[^<>]+>", "x", arg)
        if arg:
            out.append(arg)
    return out


REFUSED = {("-m", "kerasdl.mnist", "resnet")}
"""Commands the docs quote as bad input (docs/reliability.md): they must keep failing to parse."""


def parse_problem(argv: list[str]) -> str | None:
    """None if `argv` (after `python`) parses with its command's current parser, else why not. A
    command named without arguments (`python -m kerasdl.digits`, `python -m tuning ...`) need only exist."""
    program, args = (argv[1], argv[2:]) if argv[0] == "-m" else (argv[0], argv[1:])
    if program.endswith("..."):  # `python -m kerasdl...`: the family, not a command
        return None
    if program not in programs():
        return f"{' '.join(argv)}: no such command ({program})"
    parser = parser_of(program)
    args = placeholders_filled(args)
    if not args or "--help" in args or "-h" in args:
        return None
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            parser.parse_args(args)
    except SystemExit:
        if tuple(argv) in REFUSED:
            return None
        return f"python {shlex.join(argv)}: {err.getvalue().strip().splitlines()[-1]}"
    return f"python {shlex.join(argv)}: quoted as bad input, but it parses" if tuple(argv) in REFUSED else None


def page_problems(markdown: str, directory: Path) -> list[str]:
    """Broken relative links and commands that do not parse, in one page whose folder is `directory`."""
    problems = [f"broken link {target}" for target in links(markdown) if not (directory / target).exists()]
    return problems + [p for p in map(parse_problem, commands(markdown)) if p]


def undocumented(parser: argparse.ArgumentParser, docs: str) -> list[str]:
    """Flags of `parser` with no help text, or named nowhere in `docs`."""
    problems = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or not action.option_strings:
            continue
        flags = "/".join(action.option_strings)
        if not action.help or action.help == argparse.SUPPRESS:
            problems.append(f"{parser.prog} {flags}: no help text")
        if not any(re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", docs) for f in action.option_strings):
            problems.append(f"{parser.prog} {flags}: not named in README.md or docs/")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_exist_and_commands_parse(page):
    assert page_problems(page.read_text(), page.parent) == []


@pytest.mark.parametrize("program", programs())
def test_every_flag_has_help_and_is_documented(program):
    docs = "\n".join(page.read_text() for page in PAGES)
    assert undocumented(parser_of(program), docs) == []


def test_the_check_catches_a_broken_link_a_removed_flag_and_an_undocumented_one(tmp_path):
    (tmp_path / "there.md").write_text("x")
    page = """See [here](there.md#top), [gone](missing.md), ![fig](figures/none.png), [web](https://example.org/x).

```bash
KERASDL_MNIST=x python -m kerasdl.mnist {cnn,mlp} --epochs 2 \\
    --no-such-flag 3   # a flag that was removed
python -m kerasdl.serve --models runs/saved_models &   # fine
python -m kerasdl.nosuchmodule --quick
```

Inline: `python bench/precision.py --repeats 2 [--xla both]` parses; `python -m tuning lr --epochs zero` does not.
"""
    problems = page_problems(page, tmp_path)
    assert problems[:2] == ["broken link missing.md", "broken link figures/none.png"]
    assert any("kerasdl.mnist" in p and "unrecognized arguments: --no-such-flag 3" in p for p in problems)
    assert any("no such command (kerasdl.nosuchmodule)" in p for p in problems)
    assert any("tuning lr --epochs zero" in p and "--epochs" in p for p in problems)
    assert len(problems) == 5, problems

    fake = argparse.ArgumentParser(prog="python -m kerasdl.fake")
    fake.add_argument("--documented", help="named in the docs")
    fake.add_argument("--silent")
    assert undocumented(fake, "use `--documented` or `--documented-too`") == [
        "python -m kerasdl.fake --silent: no help text", "python -m kerasdl.fake --silent: not named in README.md or docs/"]
