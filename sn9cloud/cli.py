"""The ``sn9cloud`` command line: parse arguments, call one library function, print."""

from __future__ import annotations

import json
import sys

import click

from sn9cloud import __version__
from sn9cloud.errors import Sn9Error


def _fail(e: Sn9Error) -> None:
    click.echo(f"sn9cloud: error: {e}", err=True)
    sys.exit(2)


@click.group()
@click.version_option(__version__, prog_name="sn9cloud")
def main() -> None:
    """Register optical satellite images to SAR images (SpaceNet 9 offset maps)."""


@main.command()
@click.argument("optical")
@click.argument("sar")
@click.option("-o", "--output", required=True, help="Offset-map COG to write (path or s3://).")
@click.option("--model", type=click.Choice(["nonrigid", "affine"]), default="nonrigid",
              show_default=True, help="Field model: smooth non-rigid (most accurate) or affine.")
@click.option("--report", "report_path", default=None, help="Write the registration report (JSON).")
@click.option("--max-working-size", type=int, default=1024, show_default=True,
              help="Longest side of the working grid, px.")
def register(optical: str, sar: str, output: str, model: str, report_path: str | None,
             max_working_size: int) -> None:
    """Register SAR to OPTICAL and write the SpaceNet 9 offset map on the optical grid."""
    from sn9cloud.register_pair import register_files

    try:
        report = register_files(optical, sar, output, model=model, report_path=report_path,
                                max_working_size=max_working_size)
    except Sn9Error as e:
        _fail(e)
    click.echo(
        f"wrote {output}: {report['inliers']} inlier matches, estimated error "
        f"{report['estimated_error_px']:.2f} working px ({report['estimated_error_m']:.2f} m), "
        f"{report['timings_s']['total_with_io']:.2f} s"
    )


@main.command()
@click.argument("offsets")
@click.option("--tiepoints", required=True, help="SpaceNet 9 tie-point CSV.")
@click.option("--optical", required=True, help="The optical image (for its geotransform).")
@click.option("--sar", required=True, help="The SAR image (for its geotransform).")
def score(offsets: str, tiepoints: str, optical: str, sar: str) -> None:
    """Score an offset map with the SpaceNet 9 metric; the last line is JSON."""
    from sn9cloud.score import score_offsets

    try:
        s = score_offsets(offsets, tiepoints, optical, sar)
    except Sn9Error as e:
        _fail(e)
    click.echo(f"{s.n} tie-points: mean {s.mean_px:.3f} px ({s.mean_m:.3f} m), score {s.score:.3f}")
    click.echo(json.dumps(s.to_dict()))


if __name__ == "__main__":  # pragma: no cover
    main()
