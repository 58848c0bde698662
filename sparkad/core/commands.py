"""Helpers shared by the click commands and the spark-submit jobs that reuse their options."""
from __future__ import annotations

import click


def option_group(*decorators):
    """One decorator applying click options in the order given (as they appear in --help), so that a
    command and a job declare an option once."""
    def apply(f):
        for d in reversed(decorators):
            f = d(f)
        return f
    return apply


def run_command(command: click.Command, argv=None) -> int:
    """Run a click command as a function (the spark-submit jobs' ``main``) and return its exit code;
    usage errors are printed as click prints them (exit code 2)."""
    try:
        command.main(args=argv, standalone_mode=False)
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Abort:
        return 130
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


def spark_master_option(default: str = "local[*]"):
    """``--master``, the Spark master, as every command that runs on Spark spells it."""
    return click.option("--master", help=f"Spark master (spark://host:7077, yarn, local[N]; sc://host:15002 for a Spark Connect server; default: {default}).")


#: ``--scheduler``, a Dask scheduler, as every command that runs on Dask spells it
dask_scheduler_option = click.option("--scheduler", help="Dask scheduler address (tcp://host:8786) instead of a local cluster.")


def split_list(value: str | None) -> list[str] | None:
    """A comma-separated option value as a list (None when not given)."""
    return value.split(",") if value else None
