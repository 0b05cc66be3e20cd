"""Parsing one ``%%federate`` / ``%fedbench`` invocation into a checked command.

The grammar is small on purpose::

    %%federate [parties] [--fed NAME] [--dir FOLDER] [--replace] [--null-values ?,NA]   # body: 'name: path' lines
    %%federate run [--parties a,b] [--out NAME] [--epsilon E --sensitivity S]   # body: Python
    %federate stats [COLUMN ...] [--parties a,b] [--nulls skip|error] [--out NAME]
    %federate psi --on COL[,COL] [--mode cardinality|reveal|align] [--receiver P] [--normalize STEPS]
    %federate fit --target COL [--model logistic] [--rounds N] [--features a,b]

Every problem is reported as one :class:`~IPython.core.error.UsageError` line
saying how to fix it (IPython shows a traceback for anything else).
"""

from __future__ import annotations

import argparse
import ast
import difflib
import re
from dataclasses import dataclass, field
from types import CodeType
from typing import Any

from IPython.core.error import UsageError
from IPython.utils.process import arg_split  # the shell-like split IPython's magic_arguments uses

__all__ = [
    "FORMS",
    "FORM_OPTIONS",
    "SUBCOMMANDS",
    "FedbenchCommand",
    "FederateCommand",
    "PartyLine",
    "compile_cell",
    "parse_parties_body",
    "split_list",
]

#: Forms of ``%%federate`` and what each does.
FORMS: dict[str, str] = {
    "parties": "declare parties: body lines 'name: path' (or --dir FOLDER); creates or extends the federation",
    "run": "run the Python body inside every party (df = its rows); its last expression, a dict of "
    "numbers or arrays, is securely summed",
    "stats": "count, nulls, sum, mean, var, std of numeric columns (default: every shared numeric column)",
    "psi": "private set intersection of identifier columns (--on)",
    "fit": "train a model across the parties (--target)",
}

#: Options (argparse destinations) each form accepts besides --fed.
FORM_OPTIONS: dict[str, frozenset[str]] = {
    "parties": frozenset({"dir", "replace", "out", "dashboard", "null_values"}),
    "run": frozenset({"parties", "out", "epsilon", "sensitivity", "delta", "mechanism", "noise", "max_abs"}),
    "stats": frozenset({"parties", "out", "nulls"}),
    "psi": frozenset({"parties", "out", "on", "mode", "receiver", "normalize", "cast", "dashboard"}),
    "fit": frozenset({"parties", "out", "target", "model", "rounds", "features", "epsilon", "dashboard"}),
}
_COMMON = frozenset({"fed", "form", "items"})

#: Sub-commands of ``%fedbench``.
SUBCOMMANDS: dict[str, str] = {
    "status": "settings, federations, and which protocols this install offers",
    "parties": "federation panel: parties, rows, schema agreement (never raw rows)",
    "budget": "privacy-budget panel; with --epsilon/--delta sets the budget of the parties",
    "transcript": "transcript viewer, filterable by party, kind and run",
    "keys": "key size and crypto cost per party (ciphertexts, bytes, encryption time)",
    "reset": "forget the current federation (or --fed NAME, or --all)",
    "help": "this grammar",
}
_SUB_OPTIONS: dict[str, frozenset[str]] = {
    "status": frozenset(),
    "parties": frozenset({"static"}),
    "budget": frozenset({"epsilon", "delta", "parties", "increase_reason", "static"}),
    "transcript": frozenset({"party", "kind", "run", "static"}),
    "keys": frozenset({"run", "static"}),
    "reset": frozenset({"all"}),
    "help": frozenset(),
}
_SUB_COMMON = frozenset({"fed", "command"})

# 'name: path' with a party-name-shaped name (see fedbench.party.validate_party_name).
_PARTY_LINE = re.compile(r"^(?P<name>[A-Za-z0-9_][A-Za-z0-9_.\-]*)\s*:\s*(?P<source>.+?)$")
_COMMENT = re.compile(r"(^|\s)#.*$")


def _option_name(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def _parse(magic: Any, line: str, what: str) -> argparse.Namespace:
    try:
        # Intermixed: options may come between the form and its columns (%federate stats --parties a,b age).
        return magic.parser.parse_intermixed_args(arg_split(line))
    except UsageError as exc:  # argparse's wording, plus where to look
        raise UsageError(f"{exc}; see {what}?") from None
    except ValueError as exc:  # unbalanced quotes in the shell-like split
        raise UsageError(f"cannot split the options ({exc}): check the quotes; see {what}?") from None


def split_list(value: str | None, option: str) -> list[str] | None:
    """Split a comma-separated option value (``a,b``) into its items.

    Raises
    ------
    UsageError
        An empty item (``a,,b``) or a repeated one.
    """
    if value is None:
        return None
    items = [v.strip() for v in value.split(",")]
    if not all(items):
        raise UsageError(f"{option} {value!r} has an empty item: write comma-separated names, e.g. {option} a,b")
    if len(set(items)) != len(items):
        raise UsageError(f"{option} {value!r} lists a name twice")
    return items


@dataclass(frozen=True)
class PartyLine:
    """One ``name: source`` line of a parties cell."""

    lineno: int
    name: str
    source: str


def parse_parties_body(body: str) -> list[PartyLine]:
    """Parse the ``name: path`` lines of a parties cell (blank lines and ``#`` comments are skipped).

    Raises
    ------
    UsageError
        A line of another shape (with a hint if it looks like code), or a name declared twice.
    """
    out: list[PartyLine] = []
    seen: set[str] = set()
    for lineno, raw in enumerate(body.splitlines(), start=1):
        text = _COMMENT.sub("", raw).strip()
        if not text:
            continue
        m = _PARTY_LINE.match(text)
        if m is None:
            hint = (
                "; to run code inside each party start the cell with '%%federate run'"
                if any(tok in text for tok in ("=", "(", "{", "[")) else ""
            )
            raise UsageError(f"line {lineno} {text!r} is not 'name: path' (e.g. north: data/north.csv){hint}")
        name, source = m["name"], m["source"].strip()
        if len(source) >= 2 and source[0] == source[-1] and source[0] in "'\"":
            source = source[1:-1]
        if name in seen:
            raise UsageError(f"line {lineno}: party {name!r} is declared twice in this cell")
        seen.add(name)
        out.append(PartyLine(lineno, name, source))
    return out


def compile_cell(body: str, filename: str = "<%%federate run>") -> tuple[CodeType | None, CodeType]:
    """Compile a run cell into (statements, last expression).

    Raises
    ------
    UsageError
        A syntax error (with its line), an empty body, or a last statement that is not an expression.
    """
    try:
        tree = ast.parse(body, filename=filename)
    except SyntaxError as exc:
        raise UsageError(f"line {exc.lineno}: SyntaxError: {exc.msg}") from None
    if not tree.body:
        raise UsageError("the run cell has no code: end it with a dict of numbers, e.g. {'n': df.height}")
    last = tree.body[-1]
    if not isinstance(last, ast.Expr):
        raise UsageError(
            f"line {last.lineno}: the last line of a run cell must be an expression giving a dict of "
            "numbers or arrays, e.g. {'n': df.height, 'age': df['age'].sum()}"
        )
    statements = ast.Module(body=tree.body[:-1], type_ignores=[])
    head = compile(statements, filename, "exec") if statements.body else None
    tail = compile(ast.Expression(body=last.value), filename, "eval")
    return head, tail


@dataclass
class FederateCommand:
    """A parsed, checked ``%%federate`` invocation.

    Attributes
    ----------
    form : str
        One of :data:`FORMS`.
    args : argparse.Namespace
        The parsed options.
    body : str
        The cell body ("" for the line magic).
    items : list of str
        Positional words after the form (columns of ``stats``).
    """

    form: str
    args: argparse.Namespace
    body: str = ""
    items: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, magic: Any, line: str, cell: str | None) -> FederateCommand:
        """Parse the magic line and body; raise a one-line ``UsageError`` on any mistake."""
        args = _parse(magic, line, "%federate")
        body = cell or ""
        has_body = bool(body.strip())
        words = list(args.items or [])
        form = args.form
        if form is None:
            if not has_body and args.dir is None:
                raise UsageError(
                    "nothing to do: write 'name: path' lines in a '%%federate' cell, or use a form: "
                    + ", ".join(FORMS) + " (see %fedbench help)"
                )
            form = "parties"
        elif form not in FORMS:
            raise UsageError(
                f"unknown form {form!r}: {_suggest(form, list(FORMS))}use one of {', '.join(FORMS)} "
                "(see %fedbench help)"
            )
        allowed = FORM_OPTIONS[form] | _COMMON
        for dest, value in vars(args).items():
            if dest not in allowed and value not in (None, False):
                users = [f for f, opts in FORM_OPTIONS.items() if dest in opts]
                raise UsageError(f"{_option_name(dest)} is not an option of '{form}' (it is for: {', '.join(users)})")
        if words and form != "stats":
            raise UsageError(f"unexpected words after '{form}': {' '.join(words)!r} (options start with --)")
        if form == "run" and not has_body:
            raise UsageError("'run' needs code: put it in the body of a '%%federate run' cell, ending with a dict")
        if form == "parties" and not has_body and args.dir is None:
            raise UsageError("'parties' needs 'name: path' lines in the cell body, or --dir FOLDER")
        if form in ("stats", "psi", "fit") and has_body:
            raise UsageError(f"'{form}' takes no cell body: use the line magic, e.g. %federate {form} ...")
        if form == "psi" and args.on is None:
            raise UsageError("'psi' needs the identifier column(s): %federate psi --on customer_id")
        if form == "fit" and args.target is None:
            raise UsageError("'fit' needs the label column: %federate fit --target diagnosis")
        if form == "run" and (args.epsilon is None) != (args.sensitivity is None):
            raise UsageError(
                "a DP run needs both --epsilon E and --sensitivity S (how much one person's row can change "
                "the summed outputs, L1)"
            )
        if args.out is not None and not args.out.isidentifier():
            raise UsageError(f"--out {args.out!r} is not a Python variable name")
        if args.fed is not None and not args.fed.isidentifier():
            raise UsageError(f"--fed {args.fed!r} is not a Python variable name")
        if form == "run" and args.epsilon is None:
            for dest in ("delta", "mechanism", "noise"):
                if getattr(args, dest) is not None:
                    raise UsageError(f"{_option_name(dest)} only applies to a DP run: add --epsilon E --sensitivity S")
        for dest in ("epsilon", "sensitivity", "max_abs", "delta"):
            value = getattr(args, dest, None)
            if value is not None and not value > 0:
                raise UsageError(f"{_option_name(dest)} must be positive, got {value}")
        if getattr(args, "rounds", None) is not None and args.rounds < 1:
            raise UsageError(f"--rounds must be at least 1, got {args.rounds}")
        return cls(form=form, args=args, body=body, items=words)

    def list_option(self, dest: str) -> list[str] | None:
        """A comma-separated option as a list (``None`` when not given)."""
        return split_list(getattr(self.args, dest), _option_name(dest))


@dataclass
class FedbenchCommand:
    """A parsed, checked ``%fedbench`` invocation."""

    command: str
    args: argparse.Namespace

    @classmethod
    def parse(cls, magic: Any, line: str) -> FedbenchCommand:
        """Parse the magic line; raise a one-line ``UsageError`` on any mistake."""
        args = _parse(magic, line, "%fedbench")
        command = args.command or "status"
        if command not in SUBCOMMANDS:
            raise UsageError(
                f"unknown sub-command {command!r}: {_suggest(command, list(SUBCOMMANDS))}"
                f"use one of {', '.join(SUBCOMMANDS)}"
            )
        allowed = _SUB_OPTIONS[command] | _SUB_COMMON
        for dest, value in vars(args).items():
            if dest not in allowed and value not in (None, False):
                users = [c for c, opts in _SUB_OPTIONS.items() if dest in opts]
                raise UsageError(
                    f"{_option_name(dest)} is not an option of '%fedbench {command}' (it is for: {', '.join(users)})"
                )
        if args.delta is not None and args.epsilon is None:
            raise UsageError("--delta needs --epsilon too, e.g. %fedbench budget --epsilon 1 --delta 1e-6")
        for dest in ("epsilon", "delta"):
            value = getattr(args, dest)
            if value is not None and not value > 0:
                raise UsageError(f"{_option_name(dest)} must be positive, got {value}")
        if args.fed is not None and not args.fed.isidentifier():
            raise UsageError(f"--fed {args.fed!r} is not a Python variable name")
        return cls(command=command, args=args)

    def list_option(self, dest: str) -> list[str] | None:
        """A comma-separated option as a list (``None`` when not given)."""
        return split_list(getattr(self.args, dest), _option_name(dest))
