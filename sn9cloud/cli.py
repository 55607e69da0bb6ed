"""The ``sn9cloud`` command line: parse arguments, read the settings once, build the one
registration configuration, call one library function, print.

Every failure a user can act on ends the same way: one line ``sn9cloud: error: ...``
naming the input, exit status 2 (usage errors included).
"""

from __future__ import annotations

import json
import math
import signal
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from sn9cloud import __version__
from sn9cloud.engine.registration import MODELS
from sn9cloud.errors import InputError, Sn9Error, outcome
from sn9cloud.matchers import MATCHERS

F = TypeVar("F", bound=Callable[..., Any])


def _fail(e: BaseException) -> NoReturn:
    click.echo(f"sn9cloud: error: {outcome(e).message}", err=True)
    sys.exit(2)


class _Cli(click.Group):
    """Usage errors (a bad flag, a missing argument) as one line and exit 2, like every
    other error."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        _stop_on_sigterm()
        try:
            return super().main(*args, **kwargs)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except (click.exceptions.Abort, KeyboardInterrupt):
            click.echo("sn9cloud: aborted", err=True)
            sys.exit(130)
        except click.ClickException as e:
            hint = ""
            ctx = getattr(e, "ctx", None)
            if ctx is not None:
                hint = f" (see `{ctx.command_path} --help`)"
            click.echo(f"sn9cloud: error: {e.format_message()}{hint}", err=True)
            sys.exit(2)


def _stop_on_sigterm() -> None:
    """SIGTERM ends the command as Ctrl-C does, through every ``finally`` (scratch folders
    removed, nothing half-renamed into place)."""
    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, handler)


def _settings() -> Any:
    """The environment's settings, read and checked once per command."""
    from sn9cloud.settings import Settings

    try:
        return Settings.from_env().apply()
    except Sn9Error as e:
        _fail(e)


def registration_options(f: F) -> F:
    """The configuration flags `register` and `run` share; choices from the registries."""
    f = click.option("--config", "config_path", default=None, metavar="FILE",
                     help="TOML file of registration settings (see `sn9cloud config`); the "
                          "flags below override it.")(f)
    f = click.option("--max-working-size", type=int, default=None,
                     help="Longest side of the working grid, px (default 1024).")(f)
    f = click.option("--model", type=click.Choice(MODELS), default=None,
                     help="Field model: smooth non-rigid (default, most accurate) or "
                          "affine.")(f)
    f = click.option("--matcher", type=click.Choice(MATCHERS.names()), default=None,
                     help="; ".join(f"{m.name}: {m.summary}" for m in MATCHERS)
                     + f" (default {MATCHERS.names()[0]}).")(f)
    return f


def _config(config_path: str | None, matcher: str | None, model: str | None,
            max_working_size: int | None) -> Any:
    from sn9cloud.config import RegistrationConfig, load_config

    try:
        config = load_config(config_path) if config_path else RegistrationConfig()
        for flag, key, value in (("--matcher", "matcher", matcher),
                                 ("--model", "engine.model", model),
                                 ("--max-working-size", "engine.max_working_size",
                                  max_working_size)):
            config = config.with_values({key: value}, flag)
    except Sn9Error as e:
        _fail(e)
    return config


def _need_service_extra(module: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        _fail(InputError(f"this command needs {module}: pip install 'sn9cloud[service]'"))


def _prepared(config: Any, settings: Any) -> Any:
    from sn9cloud.prepared import PreparedRun

    try:
        return PreparedRun.of(config, settings)
    except Sn9Error as e:
        _fail(e)


@click.group(cls=_Cli)
@click.version_option(__version__, prog_name="sn9cloud")
def main() -> None:
    """Register optical satellite images to SAR images (SpaceNet 9 offset maps)."""


@main.command()
@click.argument("optical")
@click.argument("sar")
@click.option("-o", "--output", required=True, help="Offset-map COG to write (path or s3://).")
@click.option("--report", "report_path", default=None, help="Write the registration report (JSON).")
@registration_options
def register(optical: str, sar: str, output: str, report_path: str | None,
             matcher: str | None, model: str | None, max_working_size: int | None,
             config_path: str | None) -> None:
    """Register SAR to OPTICAL and write the SpaceNet 9 offset map on the optical grid."""
    from sn9cloud.register_pair import register_files

    settings = _settings()
    run = _prepared(_config(config_path, matcher, model, max_working_size), settings)
    try:
        report = register_files(optical, sar, output, run, report_path=report_path,
                                executor=settings.executor())
    except Exception as e:
        _fail(e)
    click.echo(
        f"wrote {output}: {report['inliers']} inlier matches, estimated error "
        f"{report['estimated_error_px']:.2f} working px ({report['estimated_error_m']:.2f} m), "
        f"{report['timings_s']['total_with_io']:.2f} s ({run.label()})"
    )


@main.command("config")
@registration_options
def config_cmd(matcher: str | None, model: str | None, max_working_size: int | None,
               config_path: str | None) -> None:
    """Print the whole registration configuration (every default, or what --config and the
    flags make of it) as a TOML config file, and the hash results of it carry."""
    config = _config(config_path, matcher, model, max_working_size)
    run = _prepared(config, _settings())
    click.echo(config.to_toml(), nl=False)
    click.echo(f"\n# effective configuration hash: {run.config_hash} ({run.label()})")


@main.command()
@click.argument("offsets")
@click.option("--tiepoints", required=True, help="SpaceNet 9 tie-point CSV.")
@click.option("--optical", required=True, help="The optical image (for its geotransform).")
@click.option("--sar", required=True, help="The SAR image (for its geotransform).")
def score(offsets: str, tiepoints: str, optical: str, sar: str) -> None:
    """Score an offset map with the SpaceNet 9 metric; the last line is JSON."""
    from sn9cloud.score import score_offsets

    _settings()
    try:
        s = score_offsets(offsets, tiepoints, optical, sar)
    except Exception as e:
        _fail(e)
    click.echo(f"{s.n} tie-points: mean {s.mean_px:.3f} px ({s.mean_m:.3f} m), score {s.score:.3f}")
    click.echo(json.dumps(s.to_dict()))


def _bbox(value: str | None) -> tuple[float, float, float, float] | None:
    if not value:
        return None
    try:
        a = tuple(float(v) for v in value.split(","))
    except ValueError:
        a = ()
    if len(a) != 4 or not all(math.isfinite(v) for v in a):
        raise click.BadParameter(f"{value[:80]!r}: want minx,miny,maxx,maxy (four numbers)")
    if a[0] > a[2] or a[1] > a[3] or not (-180 <= a[0] <= 180 and -180 <= a[2] <= 180
                                          and -90 <= a[1] <= 90 and -90 <= a[3] <= 90):
        raise click.BadParameter(f"{value[:80]!r}: want minx <= maxx and miny <= maxy, in "
                                 "degrees (WGS84)")
    return (a[0], a[1], a[2], a[3])


@main.command()
@click.argument("catalog")
@click.option("--out", "output", required=True,
              help="Where to publish: a local folder or s3://bucket/prefix.")
@click.option("--collection", "collections", multiple=True,
              help="Only input items of this collection (repeatable).")
@click.option("--bbox", default=None, help="Only input items intersecting minx,miny,maxx,maxy.")
@click.option("--datetime", "dt", default=None, help="Only input items in this time range "
              "(RFC 3339 instant or start/end, '..' open).")
@click.option("--pair", "pairs", nargs=2, multiple=True, metavar="OPTICAL_ID SAR_ID",
              help="Register these items (repeatable) instead of pairing by footprint.")
@click.option("--sar-collection", "sar_collections", multiple=True,
              help="Treat items of this collection as SAR (besides sar:* fields).")
@click.option("--min-overlap", type=float, default=None,
              help="Pair only footprints overlapping by this fraction of the smaller one "
                   "(default 0.3).")
@click.option("--max-days", type=float, default=None,
              help="Pair only acquisitions at most this many days apart.")
@click.option("--results-collection", default=None,
              help="Collection of the results (default sn9cloud-offsets).")
@click.option("--allow", "allow", multiple=True, metavar="PREFIX",
              help="Also read what the catalog names under this folder, s3://bucket/prefix "
                   "or http(s)://host/path (repeatable; by default only the catalog's own "
                   "location: SECURITY.md).")
@click.option("--max-items", type=click.IntRange(1), default=None,
              help="Fail if more input items than this match (default: no limit).")
@registration_options
@click.option("--force", is_flag=True, help="Republish pairs already published.")
@click.option("--pgstac", "pgstac_dsn", default=None, metavar="DSN",
              help="After publishing, load the results into this pgstac database (the STAC "
                   "API's); see `sn9cloud ingest`.")
@click.option("--stac-api", "stac_api", default=None, metavar="URL",
              help="After publishing, create the results in this STAC API through its "
                   "Transactions extension (token: $SN9CLOUD_STAC_API_TOKEN); see "
                   "`sn9cloud ingest`.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="", default=None,
              metavar="[ADDRESS]", help="Run the pairs at once on a Ray cluster: ADDRESS, the "
              "cluster this runs in ($RAY_ADDRESS, as under `ray job submit`), or a local "
              "one.")
@click.option("--ray-windows", is_flag=True,
              help="With --ray: also spread each pair's window jobs over the cluster.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (last line).")
def run(catalog: str, output: str, collections: tuple[str, ...], bbox: str | None,
        dt: str | None, pairs: tuple[tuple[str, str], ...], sar_collections: tuple[str, ...],
        min_overlap: float | None, max_days: float | None, results_collection: str | None,
        allow: tuple[str, ...], max_items: int | None, matcher: str | None,
        model: str | None, max_working_size: int | None,
        config_path: str | None, force: bool, pgstac_dsn: str | None, stac_api: str | None,
        ray_address: str | None, ray_windows: bool, as_json: bool) -> None:
    """Register every optical/SAR pair of CATALOG (static catalog or STAC API) and publish
    an offset-map COG and a STAC item per pair under --out."""
    from sn9cloud.pipeline import PairOutcome, RunOptions, run_catalog
    from sn9cloud.stac.catalog import Search, parse_interval
    from sn9cloud.stac.publish import DEFAULT_COLLECTION

    settings = _settings()
    config = _config(config_path, matcher, model, max_working_size)
    pairing = _pairing_flags(min_overlap, max_days, sar_collections)
    try:
        if dt is not None:
            parse_interval(dt)
        options = RunOptions(output=output, config=config, force=force, pairing=pairing,
                             allow=allow, results_collection=results_collection or
                             DEFAULT_COLLECTION)
    except Sn9Error as e:
        _fail(e)
    search = Search(collections=collections, bbox=_bbox(bbox), datetime=dt,
                    max_items=max_items)

    def progress(i: int, n: int, o: PairOutcome) -> None:
        detail = (f"error: {o.error}" if o.status == "failed" else
                  f"{o.item_id}" + (f", est. {o.estimated_error_m:.2f} m"
                                    if o.estimated_error_m is not None else ""))
        click.echo(f"[{i}/{n}] {o.status:9s} {o.name} ({o.seconds:.1f} s) {detail}", err=True)

    batch_runner = None
    if ray_address is not None:
        from sn9cloud.distributed.batch import run_batch
        from sn9cloud.distributed.cluster import connect

        try:
            res = connect(ray_address or settings.ray_address)
        except Sn9Error as e:
            _fail(e)
        click.echo(f"Ray cluster: {res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs",
                   err=True)

        def batch_runner(p, o, r, cb):  # type: ignore[no-untyped-def]
            return run_batch(p, o, r, cb, spread_windows=ray_windows)

    try:
        summary = run_catalog(catalog, options, settings, search, explicit=pairs,
                              progress=progress, batch_runner=batch_runner)
    except Exception as e:
        _fail(e)
    click.echo(f"\n{'pair':48s} {'status':9s} {'est. m':>7s} {'inliers':>7s} {'s':>6s}")
    for o in summary.outcomes:
        est = f"{o.estimated_error_m:7.2f}" if o.estimated_error_m is not None else f"{'-':>7s}"
        inl = f"{o.inliers:7d}" if o.inliers is not None else f"{'-':>7s}"
        click.echo(f"{o.name[:48]:48s} {o.status:9s} {est} {inl} {o.seconds:6.1f}")
    c = summary.counts()
    click.echo(f"{c['published']} published, {c['skipped']} skipped (already published), "
               f"{c['failed']} failed; catalog: {output.rstrip('/')}/catalog.json")
    for o in summary.failed:
        click.echo(f"sn9cloud: error: {o.name}: {o.error}", err=True)
    if pgstac_dsn is not None and (c["published"] or c["skipped"]):
        _ingest(f"{output.rstrip('/')}/catalog.json", pgstac_dsn or settings.pgstac_dsn)
    if stac_api is not None and (c["published"] or c["skipped"]):
        republished = {o.item_id for o in summary.outcomes
                       if o.status == "published" and o.item_id}
        _publish_api(f"{output.rstrip('/')}/catalog.json", stac_api, settings.stac_api_token,
                     replace=republished if force else None)
    if as_json:
        click.echo(json.dumps({"counts": c, "outcomes": [o.to_dict() for o in summary.outcomes]}))
    if summary.failed:
        sys.exit(2)


def _ingest(catalog: str, dsn: str | None) -> None:
    from sn9cloud.stac.ingest import ingest

    if dsn is None:
        _fail(InputError("no database: pass --dsn, or set PGSTAC_DSN (or PGHOST, PGUSER, ...)"))
    try:
        n_coll, n_items = ingest(catalog, dsn)
    except Exception as e:
        _fail(e)
    click.echo(f"ingested {n_coll} collection(s) and {n_items} item(s) from {catalog} "
               "into pgstac")


def _publish_api(catalog: str, api_url: str, token: str | None,
                 replace: set[str] | None = None) -> None:
    from sn9cloud.stac.transactions import publish_to_api

    try:
        pub = publish_to_api(catalog, api_url, replace=replace or set(), token=token)
    except Exception as e:
        _fail(e)
    click.echo(f"STAC API {api_url}: created {pub.collections_created} collection(s) and "
               f"{pub.items_created} item(s); {pub.items_replaced} item(s) replaced, "
               f"{pub.items_existing} already there left as they are")


@main.command("ingest")
@click.argument("catalog")
@click.option("--dsn", default=None, help="pgstac database (default: PGSTAC_DSN or PG* vars).")
@click.option("--stac-api", "stac_api", default=None, metavar="URL",
              help="Instead of the database: a STAC API with the Transactions extension.")
def ingest_cmd(catalog: str, dsn: str | None, stac_api: str | None) -> None:
    """Load a static STAC catalog (e.g. the results of `sn9cloud run`) into pgstac, the
    database behind the STAC API, or into a STAC API through its Transactions extension
    (what is already there is left as it is)."""
    settings = _settings()
    if stac_api is not None:
        if dsn is not None:
            _fail(InputError("give --dsn or --stac-api, not both"))
        _publish_api(catalog, stac_api, settings.stac_api_token)
    else:
        _ingest(catalog, dsn or settings.pgstac_dsn)


def _pairing_flags(min_overlap: float | None, max_days: float | None,
                   sar_collections: tuple[str, ...]) -> Any:
    from dataclasses import replace

    from sn9cloud.stac.pairing import PairingOptions

    return replace(PairingOptions(), sar_collections=sar_collections, max_days=max_days,
                   **({} if min_overlap is None else {"min_overlap": min_overlap}))


@main.command()
@click.option("--out", "output", required=True,
              help="Where results are published and the service keeps its state: a local "
                   "folder or s3://bucket/prefix.")
@click.option("--queue", "queue_url", default=None, metavar="SQS_URL",
              help="Consume S3 event notifications (direct or through SNS) from this queue.")
@click.option("--prefix", "prefixes", multiple=True,
              help="Only objects whose key starts with this (repeatable).")
@click.option("--stac-api", "stac_api", default=None, metavar="URL",
              help="Poll this STAC API for new items (with --collection).")
@click.option("--collection", "collections", multiple=True,
              help="Input collections to serve (repeatable; the poller searches these).")
@click.option("--poll-interval", type=float, default=60.0, show_default=True,
              help="Seconds between polls of the STAC API.")
@click.option("--poll-overlap", type=float, default=24.0, show_default=True,
              help="Hours before the watermark each poll looks again (late arrivals).")
@click.option("--since", default=None, help="Poll items acquired from this RFC 3339 time "
              "on, where no watermark is stored yet.")
@click.option("--sar-collection", "sar_collections", multiple=True,
              help="Treat items of this collection as SAR (besides sar:* fields).")
@click.option("--min-overlap", type=float, default=None,
              help="Pairing as for `run` (default 0.3).")
@click.option("--max-days", type=float, default=None, help="Pairing as for `run`.")
@click.option("--results-collection", default=None,
              help="Collection of the results (default sn9cloud-offsets).")
@click.option("--allow", "allow", multiple=True, metavar="PREFIX",
              help="What items may make the watcher read: s3://bucket/prefix, a folder or "
                   "http(s)://host/path (repeatable; needed with --queue; SECURITY.md).")
@registration_options
@click.option("--lease", "lease_s", type=float, default=300.0, show_default=True,
              help="Seconds a pair's lease lasts (renewed while it runs).")
@click.option("--max-attempts", type=int, default=5, show_default=True,
              help="Attempts of a pair that fails transiently before it fails for good.")
@click.option("--retry-base", "retry_base_s", type=float, default=10.0, show_default=True,
              help="Seconds before the first retry; doubled each attempt.")
@click.option("--partner-timeout", type=float, default=24.0, show_default=True,
              help="Hours an item waits for a partner before it is recorded as failed.")
@click.option("--publish-api", default=None, metavar="URL",
              help="Also create each result in this STAC API (Transactions extension; token "
                   "$SN9CLOUD_STAC_API_TOKEN).")
@click.option("--ray", "ray_address", is_flag=False, flag_value="", default=None,
              metavar="[ADDRESS]", help="Run pairs on a Ray cluster.")
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=None,
              help="Serve Prometheus metrics on this port.")
@click.option("--sweep-interval", type=float, default=30.0, show_default=True,
              help="Seconds between sweeps (expired leases, due retries, lonely items).")
@click.option("--max-idle", type=float, default=None,
              help="Exit after this many seconds with nothing to do (default: run on).")
@click.option("--once", is_flag=True, help="One round of every source and one sweep, then "
              "exit.")
def watch(output: str, queue_url: str | None, prefixes: tuple[str, ...],
          stac_api: str | None, collections: tuple[str, ...], poll_interval: float,
          poll_overlap: float, since: str | None, sar_collections: tuple[str, ...],
          min_overlap: float | None, max_days: float | None,
          results_collection: str | None, allow: tuple[str, ...], matcher: str | None,
          model: str | None, max_working_size: int | None, config_path: str | None,
          lease_s: float,
          max_attempts: int, retry_base_s: float, partner_timeout: float,
          publish_api: str | None, ray_address: str | None, metrics_port: int | None,
          sweep_interval: float, max_idle: float | None, once: bool) -> None:
    """Register new items as they arrive: S3 events through SQS (--queue) and/or a STAC
    API polled for new items (--stac-api), each paired with the best known item of the
    other modality and published exactly once under OUTPUT. Logs are JSON lines."""
    import threading

    from sn9cloud.stac.publish import DEFAULT_COLLECTION, check_collection_id

    _need_service_extra("prometheus_client")
    from sn9cloud.service.logs import JsonLog
    from sn9cloud.service.serve import Source, serve, stop_on_signals
    from sn9cloud.service.sources import ApiPoller, SqsSource
    from sn9cloud.service.watcher import (
        LocalRunner,
        PairRunner,
        RayRunner,
        Watcher,
        WatchOptions,
    )

    if not queue_url and not stac_api:
        _fail(InputError("nothing to watch: give --queue SQS_URL and/or --stac-api URL"))
    for name, v in (("--lease", lease_s), ("--poll-interval", poll_interval),
                    ("--partner-timeout", partner_timeout), ("--retry-base", retry_base_s)):
        if not v > 0:
            _fail(InputError(f"{name} {v:g}: must be more than 0"))
    if max_attempts < 1:
        _fail(InputError(f"--max-attempts {max_attempts}: must be at least 1"))
    settings = _settings()
    config = _config(config_path, matcher, model, max_working_size)
    run = _prepared(config, settings)
    from sn9cloud.io.policy import ReadPolicy

    allowed = (*settings.allow, *allow)
    if queue_url and not allowed:
        _fail(InputError("--queue: name the buckets its events may make the watcher read, "
                         "with --allow s3://BUCKET/PREFIX (or SN9CLOUD_ALLOW; SECURITY.md)"))
    try:
        options = WatchOptions(
            output=output, config=config,
            pairing=_pairing_flags(min_overlap, max_days, sar_collections),
            collections=collections, lease_s=lease_s, max_attempts=max_attempts,
            retry_base_s=retry_base_s, partner_timeout_s=partner_timeout * 3600,
            stac_api=publish_api, results_collection=results_collection or DEFAULT_COLLECTION,
            read_policy=ReadPolicy.of([stac_api] if stac_api else [], allowed))
        check_collection_id(options.results_collection)
    except Sn9Error as e:
        _fail(e)
    log = JsonLog()
    try:
        runner: PairRunner
        if ray_address is not None:
            from sn9cloud.distributed.cluster import connect

            connect(ray_address or settings.ray_address)
            runner = RayRunner(options, run)
        else:
            runner = LocalRunner(options, run, settings)
        watcher = Watcher(options, run, runner, log, api_token=settings.stac_api_token)
        sources: list[Source] = []
        if queue_url:
            sources.append(SqsSource(queue_url, watcher, prefixes))
        if stac_api:
            sources.append(ApiPoller(stac_api, collections, watcher, poll_interval,
                                     poll_overlap * 3600, since))
        if metrics_port is not None:
            watcher.metrics.serve(metrics_port)
    except Exception as e:
        _fail(e)
    stop = threading.Event()
    stop_on_signals(stop, watcher)
    serve(watcher, sources, stop, sweep_s=sweep_interval, idle_exit_s=max_idle, once=once)


@main.command()
@click.argument("output")
@click.option("--json", "as_json", is_flag=True, help="Every record as JSON lines.")
def status(output: str, as_json: bool) -> None:
    """What the service did under OUTPUT: counts by state (per configuration), and the
    failed pairs and items with their reasons."""
    from collections import Counter

    from sn9cloud.io.store import open_store
    from sn9cloud.service.state import all_records

    _settings()
    try:
        store = open_store(output)
        records = list(all_records(store))
    except Exception as e:
        _fail(e)
    if as_json:
        for r in records:
            click.echo(json.dumps(r, sort_keys=True))
        return
    by_config: dict[str, Counter[str]] = {}
    for r in records:
        by_config.setdefault(str(r.get("config_hash", ""))[:12], Counter())[
            str(r.get("state"))] += 1
    if not records:
        click.echo(f"no service state under {output}")
        return
    for cfg, counts in sorted(by_config.items()):
        parts = ", ".join(f"{counts[s]} {s}" for s in ("published", "running", "waiting",
                                                       "failed") if counts[s])
        click.echo(f"config {cfg}: {parts}")
    for r in records:
        if r.get("state") == "failed":
            what = (f"{r.get('optical')} + {r.get('sar')}" if r.get("kind") == "pair"
                    else f"item {r.get('item')}")
            final = "failed" if r.get("final") else "retrying"
            click.echo(f"{final}: {what} (attempts {r.get('attempts', 0)}): {r.get('reason')}")


@main.command()
@click.argument("payload")
@click.option("--output", default=None, help="Write the output payload here (default: "
              "standard output).")
@click.option("--no-upload", is_flag=True, help="Leave the result assets in --workdir.")
@click.option("--workdir", default=None, help="Keep the work files here.")
def task(payload: str, output: str | None, no_upload: bool, workdir: str | None) -> None:
    """Run as a stac-task: PAYLOAD (a FeatureCollection with a process block; a file,
    s3:// or - for standard input) in, the output payload with the result items out."""
    _need_service_extra("stactask")
    from sn9cloud.service.task import run_task

    _settings()
    try:
        if payload == "-":
            doc = json.load(sys.stdin)
        else:
            from sn9cloud.stac.stacio import stac_io

            doc = json.loads(stac_io().read_text(payload))
        if not isinstance(doc, dict):
            raise InputError(f"payload {payload}: not a JSON object")
        out = run_task(doc, upload=not no_upload, workdir=workdir)
        text = json.dumps(out)
        if output:
            from sn9cloud.stac.stacio import stac_io

            stac_io().write_text(output, text)
        else:
            click.echo(text)
    except ValueError as e:
        _fail(InputError(f"payload {payload}: not JSON ({e})"))
    except Exception as e:
        _fail(e)


@main.command()
@click.argument("catalog")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8090, show_default=True,
              help="Port to serve on.")
@click.option("--browser-dir", default=None,
              help="A built STAC Browser (default: $SN9CLOUD_STAC_BROWSER, or "
                   "deploy/stac-browser/dist of a checkout).")
def browse(catalog: str, host: str, port: int, browser_dir: str | None) -> None:
    """Serve STAC Browser on CATALOG: a local results folder (served beside the browser)
    or the http(s) URL of a STAC API or catalog. Runs until interrupted."""
    import time
    from pathlib import Path

    from sn9cloud.stac.browser import BrowserServer

    settings = _settings()
    try:
        server = BrowserServer(catalog, Path(browser_dir) if browser_dir
                               else settings.browser_dir, host, port).start()
    except Exception as e:
        _fail(e)
    click.echo(f"STAC Browser on {server.url} for {catalog} (Ctrl-C to stop)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
