"""keyrender's command line: parse options, call the library, print, map errors to exit codes.

Nothing here imports torch at module level: `keyrender --help` and `keyrender run --dry-run`
stay fast.
"""

from __future__ import annotations

import sys

import click

from keyrender.errors import EXIT_BAD_INPUT, EXIT_FAILED, KeyrenderError


class _Group(click.Group):
    """Maps keyrender's errors to exit codes with a one-line message instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KeyrenderError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="keyrender")
def main() -> None:
    """Render a shot list into video, keeping every character the same person."""


# ---- run (foundation) ----------------------------------------------------------------------
# ---- end run ---------------------------------------------------------------------------------

# ---- identity + check (identity layer) -------------------------------------------------------
# ---- end identity + check --------------------------------------------------------------------

# ---- interpolate (interpolation stage) -------------------------------------------------------
# ---- end interpolate -------------------------------------------------------------------------


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
