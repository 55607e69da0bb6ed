"""The STAC pipeline: catalog in, one offset-map COG and one result item per pair out.

One pair is `process_pair` (read through GDAL where the assets are, register, build the
COG, report and thumbnail in a scratch folder, publish); `run_catalog` loads, pairs and
runs them all, one pair's failure never stopping the others.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from sn9cloud.config import RegistrationConfig
from sn9cloud.engine.executor import SERIAL, Executor
from sn9cloud.errors import InputError, OutputError, Sn9Error, outcome
from sn9cloud.io.cog import build_offsets_cog
from sn9cloud.io.policy import ReadPolicy, folder_of, normalize, strip_credentials
from sn9cloud.io.s3 import is_s3
from sn9cloud.io.thumbnail import offset_magnitude_png
from sn9cloud.prepared import PreparedRun
from sn9cloud.register_pair import check_inputs, register_hrefs
from sn9cloud.settings import Settings
from sn9cloud.stac.catalog import Search, load_items, raster_href
from sn9cloud.stac.items import COG_TYPE, PublishedFile, build_result_item, item_datetime
from sn9cloud.stac.pairing import ItemPair, PairingOptions, explicit_pairs, pair_items
from sn9cloud.stac.publish import (
    DEFAULT_COLLECTION,
    LocalFile,
    Publisher,
    check_collection_id,
    sha256_file,
)


@dataclass(frozen=True)
class RunOptions:
    """Where and how a catalog run publishes; ``config`` is the registration
    configuration every pair of the run shares."""

    output: str
    results_collection: str = DEFAULT_COLLECTION
    config: RegistrationConfig = field(default_factory=RegistrationConfig)
    force: bool = False
    pairing: PairingOptions = field(default_factory=PairingOptions)
    #: what the catalog may make the run read; None: the catalog's own location and
    #: ``allow`` (with SN9CLOUD_ALLOW), decided by `run_catalog`
    read_policy: ReadPolicy | None = None
    allow: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_collection_id(self.results_collection)


@dataclass
class PairOutcome:
    name: str
    status: str  # published | skipped | failed
    item_id: str | None = None
    item_href: str | None = None
    error: str | None = None
    seconds: float = 0.0
    estimated_error_m: float | None = None
    inliers: int | None = None
    node: str | None = None  # the Ray node that ran it, in a cluster batch
    error_kind: str | None = None  # input | config | unreliable | output | transient | internal

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass
class RunSummary:
    outcomes: list[PairOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[PairOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def counts(self) -> dict[str, int]:
        out = {"published": 0, "skipped": 0, "failed": 0}
        for o in self.outcomes:
            out[o.status] += 1
        return out


def plan_pairs(
    catalog: str,
    search: Search | None = None,
    pairing: PairingOptions | None = None,
    explicit: Iterable[tuple[str, str]] = (),
    policy: ReadPolicy | None = None,
) -> tuple[list[ItemPair], list[PairOutcome]]:
    """The pairs to register, and an outcome for each problem of the catalog (a link
    refused or unreadable, a cycle, an invalid item) and of pairing."""
    loaded = load_items(catalog, search, policy)
    unread = [PairOutcome(where, "failed", error=why, error_kind="input")
              for where, why in loaded.problems]
    if not loaded.items and not unread:
        raise InputError(f"catalog {catalog}: no items found")
    explicit = list(explicit)
    pairs, problems = (explicit_pairs(loaded.items, explicit) if explicit
                       else pair_items(loaded.items, pairing))
    return pairs, unread + [PairOutcome(p.name, "failed", error=p.reason, error_kind="input")
                            for p in problems]


def _relative_href(target: str | None, output_item_dir: str) -> str | None:
    if not target:
        return None
    if "://" in target or is_s3(output_item_dir) or "://" in output_item_dir:
        return target
    return os.path.relpath(target, output_item_dir)


def process_pair(pair: ItemPair, publisher: Publisher, options: RunOptions, run: PreparedRun,
                 executor: Executor | None = None, scratch: str | None = None) -> PairOutcome:
    """Register and publish one pair; every failure becomes the outcome's error.

    ``run`` is the run's prepared configuration (made once per run, not per pair);
    ``executor`` runs the pair's window jobs (matching, offset-map windows); the pair's
    files are made in a folder under ``scratch`` (the run's; the system's by default)."""
    t0 = time.perf_counter()
    item_id = run.result_id(pair.optical.id, pair.sar.id)
    out = PairOutcome(pair.name, "failed", item_id=item_id,
                      item_href=publisher.item_href(item_id))
    try:
        if not options.force:
            existing = publisher.published_item(item_id, run.config_hash)
            if existing is not None:
                publisher.link(existing)  # a run that died before linking left it unlinked
                out.status = "skipped"
                return out
        _published_item(pair, publisher, options, run, out, executor or SERIAL, scratch)
    except Exception as e:  # a pair's failure, expected or not, must not stop the batch
        o = outcome(e)
        out.error, out.error_kind = o.message, o.kind
    finally:
        out.seconds = round(time.perf_counter() - t0, 3)
    return out


@dataclass
class PairProducts:
    """What one registered pair produced, in a scratch folder: the offset COG, the report
    and the thumbnail, and how to build its item once the files' names are known."""

    files: list[LocalFile]
    report: dict[str, Any]
    build: Callable[[dict[str, PublishedFile]], dict[str, Any]]


def make_products(pair: ItemPair, run: PreparedRun, executor: Executor, workdir: str,
                  collection_id: str, item_dir: str | None,
                  policy: ReadPolicy | None) -> PairProducts:
    """Register the pair and write its files into ``workdir``. ``item_dir`` is where the
    item will live (inputs are named relative to it where they can be); None: name them
    absolutely (the item travels, as a stac-task's does). ``policy`` is what the items'
    catalog may make us read."""
    item_datetime(pair.sar)  # fail early on an item without a time
    optical_href = raster_href(pair.optical, sar=False, policy=policy)
    sar_href = raster_href(pair.sar, sar=True, policy=policy)
    check_inputs(optical_href, sar_href, run, workdir, policy)
    reg = register_hrefs(optical_href, sar_href, run, executor, policy)
    t1 = time.perf_counter()
    cog = build_offsets_cog(workdir, reg.optical_grid, reg.offsets, tags=run.cog_tags(),
                            executor=executor)
    thumb = os.path.join(workdir, "thumbnail.png")
    offset_magnitude_png(cog, thumb)
    reg.report["timings_s"]["write"] = round(time.perf_counter() - t1, 4)

    def ref(target: str | None) -> str | None:
        # inputs named as the output can reach them: URLs (without credentials), or paths
        # relative to the item (never this machine's absolute paths)
        if target is not None:
            target = strip_credentials(target)
        return target if item_dir is None else _relative_href(target, item_dir)

    optical_ref = ref(optical_href) or optical_href
    sar_ref = ref(sar_href) or sar_href
    reg.report.update({"optical": optical_ref, "sar": sar_ref,
                       "optical_item": pair.optical.id, "sar_item": pair.sar.id,
                       "pair_overlap": round(pair.overlap, 4)})
    report_path = os.path.join(workdir, "report.json")
    with open(report_path, "w") as f:
        json.dump(reg.report, f, indent=1)

    def build(files: dict[str, PublishedFile]) -> dict[str, Any]:
        return build_result_item(
            run=run, optical=pair.optical, sar=pair.sar,
            optical_href=optical_ref, sar_href=sar_ref,
            optical_item_href=ref(pair.optical.get_self_href()),
            sar_item_href=ref(pair.sar.get_self_href()),
            grid=reg.optical_grid, report=reg.report,
            cog=files["offsets"], report_file=files["report"],
            thumbnail=files["thumbnail"], collection_id=collection_id,
        )

    files = [LocalFile("offsets", cog, COG_TYPE),
             LocalFile("report", report_path, "application/json"),
             LocalFile("thumbnail", thumb, "image/png")]
    return PairProducts(files, reg.report, build)


def build_pair_files(pair: ItemPair, run: PreparedRun, executor: Executor, workdir: str,
                     collection_id: str, policy: ReadPolicy | None) -> dict[str, Any]:
    """The result item of a pair with its assets as the files in ``workdir`` (absolute
    local hrefs, checksums filled in): for a caller that uploads them itself."""
    products = make_products(pair, run, executor, workdir, collection_id, item_dir=None,
                             policy=policy)
    files = {}
    for f in products.files:
        digest = sha256_file(f.path)
        name = f"{f.name}-{digest[:12]}{os.path.splitext(f.path)[1]}"
        final = os.path.join(workdir, name)
        os.replace(f.path, final)
        files[f.name] = PublishedFile(final, os.path.getsize(final), digest)
    return products.build(files)


def _published_item(pair: ItemPair, publisher: Publisher, options: RunOptions,
                    run: PreparedRun, out: PairOutcome, executor: Executor,
                    scratch: str | None) -> None:
    workdir = tempfile.mkdtemp(prefix="sn9cloud-pair-", dir=scratch)
    try:
        item_dir = os.path.dirname(publisher.item_href(out.item_id or ""))
        products = make_products(pair, run, executor, workdir, publisher.collection_id,
                                 item_dir, options.read_policy)
        _, wrote = publisher.publish(out.item_id or "", products.files, products.build,
                                     force=options.force)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out.status = "published" if wrote else "skipped"
    out.estimated_error_m = round(float(products.report["estimated_error_m"]), 3)
    out.inliers = int(products.report["inliers"])


Progress = Callable[[int, int, PairOutcome], None]
#: runs a batch of pairs somewhere else (sn9cloud.distributed.batch.run_batch on Ray)
BatchRunner = Callable[[list[ItemPair], RunOptions, PreparedRun, Progress | None],
                       list[PairOutcome]]


def run_catalog(
    catalog: str,
    options: RunOptions,
    settings: Settings,
    search: Search | None = None,
    explicit: Iterable[tuple[str, str]] = (),
    progress: Progress | None = None,
    batch_runner: BatchRunner | None = None,
) -> RunSummary:
    """Register and publish every pair of the catalog; never raises for one pair.

    The configuration is prepared once (the detector located, the identity hashed); pairs
    run one after another in this process, or all at once by ``batch_runner``."""
    run = PreparedRun.of(options.config, settings)  # a bad model item fails before pairing
    policy = options.read_policy or ReadPolicy.of([catalog], (*settings.allow, *options.allow))
    options = replace(options, read_policy=policy)
    check_not_input(options.output, catalog)
    search = replace(search or Search(), results_collection=options.results_collection)
    pairs, problems = plan_pairs(catalog, search, options.pairing, explicit, policy)
    publisher = Publisher(options.output, options.results_collection)  # fail early
    summary = RunSummary(list(problems))
    if batch_runner is not None:
        summary.outcomes.extend(batch_runner(pairs, options, run, progress))
        return summary
    executor = settings.executor()
    scratch = tempfile.mkdtemp(prefix="sn9cloud-run-")  # one folder per run, always removed
    try:
        for i, pair in enumerate(pairs):
            result = process_pair(pair, publisher, options, run, executor, scratch)
            summary.outcomes.append(result)
            if progress:
                progress(i + 1, len(pairs), result)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return summary


def check_not_input(output: str, catalog: str) -> None:
    """Results published into the input catalog's own folder would replace its
    catalog.json: refused (a subfolder, or anywhere beside it, is fine)."""
    try:
        out = normalize(output).split("?")[0]
        src = folder_of(normalize(catalog))
    except Sn9Error:
        return
    if out.rstrip("/" + os.sep) == src.rstrip("/" + os.sep):
        raise OutputError(f"--out {output}: is the input catalog's own folder (its "
                          "catalog.json would be replaced); publish to a subfolder or "
                          "elsewhere")

