"""sn9cloud as a stac-task: a step of an existing STAC pipeline (Cirrus and the like).

The payload is a FeatureCollection of input items and a ``process`` block; the task's
parameters (``process.tasks.sn9cloud``) are the registration configuration in the config
file's shape (``matcher``, ``engine: {...}``, a matcher's section), the pairing options
(``min_overlap``, ``max_days``, ``sar_collections``), explicit ``pairs`` ([optical id,
SAR id], ...) and ``results_collection``. The output payload's features are the result
items, their assets uploaded where ``upload_options.path_template`` says.

Built on the field's own `stactask.Task` for what it does well and where a pipeline
expects its behaviour: payload parsing and validation, parameters, the handler's flow,
collection assignment and uploading assets by ``path_template``. Registering, the result
item and its identity are sn9cloud's own (`pipeline`, `stac.items`), the same as `run`.
Unlike `run` the task does not write catalog links: the pipeline publishes the items it
gets back.
"""

from __future__ import annotations

from typing import Any

import pystac
from stactask import Task
from stactask.exceptions import FailedValidation

from sn9cloud import __version__
from sn9cloud.config import RegistrationConfig
from sn9cloud.errors import ConfigError, InputError, outcome
from sn9cloud.io.policy import ReadPolicy
from sn9cloud.prepared import PreparedRun
from sn9cloud.settings import Settings
from sn9cloud.stac.catalog import is_sar
from sn9cloud.stac.pairing import ItemPair, PairingOptions, explicit_pairs, pair_items
from sn9cloud.stac.publish import DEFAULT_COLLECTION

PAIRING_KEYS = ("min_overlap", "max_days", "sar_collections")
OTHER_KEYS = ("pairs", "results_collection")


class RegisterTask(Task):
    name = "sn9cloud"
    description = "Register SAR items to optical items: SpaceNet 9 offset maps as STAC items"
    version = __version__

    def validate(self) -> bool:
        items = self.items.items
        if not items:
            raise FailedValidation("the payload has no input items")
        sar = [it for it in items if is_sar(it, tuple(self._pairing().sar_collections))]
        if not sar or len(sar) == len(items):
            raise FailedValidation("the payload needs at least one SAR and one optical item")
        self._config()  # a bad parameter fails here, before any work
        return True

    def _params(self) -> dict[str, Any]:
        return dict(self.parameters)

    def _config(self) -> RegistrationConfig:
        p = self._params()
        known = set(RegistrationConfig().to_dict()) | set(PAIRING_KEYS) | set(OTHER_KEYS)
        unknown = sorted(set(p) - known)
        if unknown:
            raise ConfigError(f"task parameters: unknown key(s) {', '.join(unknown)}")
        d = {k: v for k, v in p.items() if k not in PAIRING_KEYS + OTHER_KEYS}
        return RegistrationConfig.from_dict(d, "task parameters")

    def _pairing(self) -> PairingOptions:
        p = self._params()
        kw: dict[str, Any] = {}
        if "min_overlap" in p:
            kw["min_overlap"] = float(p["min_overlap"])
        if "max_days" in p:
            kw["max_days"] = float(p["max_days"])
        if "sar_collections" in p:
            kw["sar_collections"] = tuple(p["sar_collections"])
        return PairingOptions(**kw)

    def process(self, **kwargs: Any) -> list[dict[str, Any]]:
        from boto3utils import s3

        from sn9cloud.pipeline import build_pair_files

        settings = Settings.from_env().apply()
        run = PreparedRun.of(self._config(), settings)
        collection = str(kwargs.get("results_collection", DEFAULT_COLLECTION))
        items = list(self.items.items)
        homes = []
        for it in items:  # a payload's items name their own location, if anywhere
            self_link = next((ln for ln in it.links if ln.rel == "self"), None)
            if self_link is not None:
                it.set_self_href(self_link.get_absolute_href())
                homes.append(str(it.get_self_href()))
        # the read policy: the items' own locations, SN9CLOUD_ALLOW and the task's "allow"
        allow = kwargs.get("allow", [])
        if not isinstance(allow, list) or not all(isinstance(a, str) for a in allow):
            raise InputError("task parameter allow: want a list of prefixes")
        policy = ReadPolicy.of(homes, (*settings.allow, *allow))
        explicit = [(str(p[0]), str(p[1])) for p in kwargs.get("pairs", [])]
        pairs, problems = (explicit_pairs(items, explicit) if explicit
                           else pair_items(items, self._pairing()))
        if problems and not pairs:
            raise InputError("; ".join(f"{p.name}: {p.reason}" for p in problems))
        for p in problems:
            self.logger.warning("%s: %s", p.name, p.reason)
        out = []
        client = s3()  # made now: the AWS environment of this moment
        for pair in pairs:
            out.append(self._one(pair, run, settings, collection, client, build_pair_files,
                                 policy))
        return out

    def _one(self, pair: ItemPair, run: PreparedRun, settings: Settings, collection: str,
             client: Any, build: Any, policy: ReadPolicy) -> dict[str, Any]:
        item_id = run.result_id(pair.optical.id, pair.sar.id)
        workdir = self._workdir / item_id
        workdir.mkdir(parents=True, exist_ok=True)
        self.logger.info("registering %s", pair.name)
        try:
            item = build(pair, run, settings.executor(), str(workdir), collection, policy)
        except Exception as e:  # the task fails naming the pair; the pipeline retries it
            raise InputError(f"{pair.name}: {outcome(e).message}") from e
        item["links"] = [ln for ln in item["links"]
                         if ln["rel"] not in ("root", "parent", "collection")]
        it = pystac.Item.from_dict(item, preserve_dict=False)
        if self._upload:
            it = self.upload_item_assets_to_s3(it, s3_client=client)
        d = it.to_dict(include_self_link=False, transform_hrefs=False)
        d["collection"] = collection
        return d


def run_task(payload: dict[str, Any], upload: bool = True,
             workdir: str | None = None) -> dict[str, Any]:
    """The output payload of ``payload`` (the task's handler)."""
    try:
        return dict(RegisterTask.handler(payload, upload=upload, workdir=workdir,
                                         save_workdir=workdir is not None))
    except FailedValidation as e:
        raise InputError(f"payload: {e or 'failed validation'}") from e
    except (TypeError, ValueError) as e:  # stactask's own payload checks
        raise InputError(f"payload: {e}") from e


