"""What every command-line entry point shares (alae_tf's and this package's): absl flags, run
the same way by `python -m MODULE` and by the module's console script (pyproject.toml)."""
from __future__ import annotations

import sys

from absl import app, flags


def parse_flags(argv: list[str]) -> list[str]:
    """absl's parsing, with its errors as one `error:` line and exit status 1."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


def run(main, module: str, flags_parser=parse_flags) -> None:
    """app.run(main) for the entry point `module` (its __name__).

    Run as a console script, the program's __main__ is the script that pip wrote, not `module`:
    absl's --help would then list none of the module's flags and show no description. Both are
    taken from `module`, so --help reads the same as with `python -m`."""
    values = flags.FLAGS
    mod = sys.modules[module]
    main_mod = sys.modules.get("__main__")
    if main_mod is not None and main_mod is not mod:
        for flag in values.get_key_flags_for_module(mod):
            values.register_key_flag_for_module(sys.argv[0], flag)
        if not getattr(main_mod, "__doc__", None):
            main_mod.__doc__ = mod.__doc__
    app.run(main, flags_parser=flags_parser)
