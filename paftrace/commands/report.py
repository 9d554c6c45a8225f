"""`paftrace report FILE`: a self-contained HTML (or Markdown) report of a recording."""

from __future__ import annotations

from pathlib import Path

import click

REPORT_EXAMPLES = """\b
Examples:
  paftrace report incident.paf                   # -> incident.html, opens offline
  paftrace report incident.paf --format md -o -  # Markdown for a ticket, on stdout
  paftrace report capture.jsonl                  # a `paftrace --json` capture works too
"""


def default_output(source: str, fmt: str) -> str:
    path = Path(source)
    stem = path.name.removesuffix(".gz")
    for suffix in (".paf", ".jsonl", ".json"):
        stem = stem.removesuffix(suffix)
    return str(path.with_name(f"{stem}.{'html' if fmt == 'html' else 'md'}"))


@click.command(epilog=REPORT_EXAMPLES)
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", metavar="FILE",
              help="Where to write (default: SOURCE with .html/.md; '-' = stdout).")
@click.option("--format", "fmt", type=click.Choice(["html", "md"]), default="html",
              show_default=True, help="html: one offline file with plots; md: tables.")
def report(source: str, output: str | None, fmt: str) -> None:
    """Build a report from a `paftrace record` file or a `--json` capture (no root)."""
    from paftrace.report.html import ReportAssetError, render_html  # noqa: PLC0415
    from paftrace.report.markdown import render_markdown  # noqa: PLC0415
    from paftrace.report.model import build_model  # noqa: PLC0415
    from paftrace.report.recording import RecordingError, read_recording  # noqa: PLC0415

    try:
        recording = read_recording(source)
        model = build_model(recording)
        text = render_html(model) if fmt == "html" else render_markdown(model)
    except (RecordingError, ReportAssetError) as exc:
        raise click.ClickException(str(exc)) from exc
    if recording.cut_short:
        click.echo(f"paftrace: {source} was cut short: {'; '.join(recording.problems)}",
                   err=True)
    target = output or default_output(source, fmt)
    if target == "-":
        click.echo(text, nl=False)
        return
    try:
        Path(target).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot write {target}: {exc.strerror or exc}") from exc
    click.echo(f"paftrace: wrote {target} ({len(text.encode()) / 1e6:.1f} MB): "
               f"{model['verdict']['title']}", err=True)
