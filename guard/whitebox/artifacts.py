"""Save and load fitted Latent Guards: safetensors for arrays, JSON for everything else. Never pickle.

Loading checks the sha256 manifest of every file, the `guard.json` schema (types, ranges, finite
numbers; `guard.io.artifacts.GuardMeta`), that the artifact was fitted on this very host, that
its layer and position exist for that host, and the arrays' shapes and values (the folder
layout is `guard.io.artifacts`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from guard.decision.policy import Policy
from guard.errors import ArtifactError
from guard.io.artifact_io import read_folder, update_manifest, write_manifest
from guard.io.artifacts import FORMAT_VERSION, META_FILE, READABLE_VERSIONS, TENSOR_FILE, GuardMeta
from guard.whitebox.host import HostModel
from guard.whitebox.latent import LatentGuard


def save_latent(
    path: str | Path, latent: LatentGuard, policy: Policy, extra: dict[str, Any] | None = None
) -> Path:
    """Write a fitted `LatentGuard` and its `Policy` to a folder.

    Example:
        >>> save_latent("my_guard", latent, Policy())  # doctest: +SKIP
    """
    from safetensors.numpy import save_file

    latent._check_fitted()
    host = latent._host()
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    several = bool(getattr(latent, "harm_layers_", None))
    directions, harm_bias = latent.readout()
    tensors = {
        "direction": np.ascontiguousarray(latent.direction_, dtype=np.float32),
        "refusal_direction": np.ascontiguousarray(latent.refusal_direction_, dtype=np.float32),
        "auroc_grid": np.ascontiguousarray(latent.auroc_grid_, dtype=np.float32),
    }
    if several:
        tensors["harm_directions"] = np.ascontiguousarray(directions, dtype=np.float32)
    save_file(tensors, str(out / TENSOR_FILE))
    params = {k: v for k, v in latent.get_params().items() if k != "host"}
    if params.get("layers") is not None:
        params["layers"] = [int(x) for x in params["layers"]]
    meta = {
        "format_version": FORMAT_VERSION,
        "host": {
            "name": host.name,
            "fingerprint": host.fingerprint,
            "hidden_size": host.hidden_size,
            "num_layers": host.num_layers,
            "source": host.source,
        },
        "latent": {
            "params": params,
            "layer": latent.layer_,
            "position": latent.position_,
            "n_positions": latent.n_positions_,
            "bias": latent.bias_,
            "platt": list(latent.platt_),
            "candidate_layers": latent.candidate_layers_,
            "cosmic_scores": latent.cosmic_scores_,
            "cv_auroc": latent.cv_auroc_,
            "selection_auroc": latent.selection_auroc_,
            "harm_refusal_cosine": latent.harm_refusal_cosine_,
            "refusal_reply_auroc": latent.refusal_reply_auroc_,
            "harm_layers": latent.readout_layers if several else None,
            "harm_bias": harm_bias if several else None,
        },
        "policy": policy.model_dump(),
        "extra": extra or {},
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    write_manifest(out)
    return out


def recorded_host(path: str | Path) -> HostModel:
    """The host a guard folder was fitted on: its recorded source path, else the embedded default."""
    try:
        source = json.loads((Path(path) / META_FILE).read_text(encoding="utf-8"))["host"].get("source", "")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        source = ""  # load_latent reports the broken file precisely
    if source and source != "default" and Path(source).exists():
        return HostModel.from_pretrained(source)
    return HostModel.default()


def load_latent(path: str | Path, host: HostModel) -> tuple[LatentGuard, Policy, dict[str, Any]]:
    """Read a guard folder written by `save_latent` for `host`.

    Raises:
        ArtifactError: missing files, corrupt JSON or tensors, another format version, an
            artifact fitted on a different host, or arrays of the wrong shape.
    """
    folder = Path(path)
    meta_path, tensor_path = folder / META_FILE, folder / TENSOR_FILE
    meta, tensors = read_folder(
        folder,
        META_FILE,
        TENSOR_FILE,
        READABLE_VERSIONS,
        kind="guard artifact",
        remedy="; re-run `guard fit`",
        manifest="error",
    )
    try:
        checked = GuardMeta.model_validate(meta)
    except ValueError as exc:  # pydantic's ValidationError names each bad field
        raise ArtifactError(
            f"{meta_path} does not follow the guard.json schema; re-run `guard fit`:\n{exc}"
        ) from None
    want = checked.host.fingerprint
    if want != host.fingerprint:
        raise ArtifactError(
            f"{folder} was fitted on host {checked.host.name!r} ({str(want)[:12]}...), "
            f"not on {host.name!r} ({host.fingerprint[:12]}...); fit a guard for this host with `guard fit`"
        )
    h = host.hidden_size
    for name in ("direction", "refusal_direction"):
        if name not in tensors or tensors[name].shape != (h,):
            raise ArtifactError(f"{tensor_path}: {name!r} missing or not of shape ({h},)")
        if not np.isfinite(tensors[name]).all():
            raise ArtifactError(f"{tensor_path}: {name!r} holds NaN or infinite values; re-run `guard fit`")
    if not float(np.linalg.norm(tensors["direction"])) > 0:
        raise ArtifactError(
            f"{tensor_path}: the harmfulness direction is zero (it would score every prompt "
            "the same); re-run `guard fit`"
        )
    lat_meta = checked.latent
    if lat_meta.harm_layers is not None:
        want_shape = (len(lat_meta.harm_layers), h)
        got = tensors.get("harm_directions")
        if got is None or got.shape != want_shape:
            raise ArtifactError(f"{tensor_path}: 'harm_directions' missing or not of shape {want_shape}")
        if not np.isfinite(got).all() or not float(np.linalg.norm(got)) > 0:
            raise ArtifactError(f"{tensor_path}: 'harm_directions' is zero or not finite; re-run `guard fit`")
    n_post = len(host.encode("Hello").post_instruction)
    if lat_meta.n_positions != n_post + 1:
        raise ArtifactError(
            f"{meta_path}: n_positions {lat_meta.n_positions} does not match the host's chat "
            f"template ({n_post + 1} positions: the instruction and {n_post} template tokens)"
        )
    try:
        lat = meta["latent"]
        latent = LatentGuard(host, **lat["params"])
        latent.direction_ = tensors["direction"]
        latent.refusal_direction_ = tensors["refusal_direction"]
        latent.auroc_grid_ = tensors.get("auroc_grid", np.zeros((0, 0), dtype=np.float32))
        latent.layer_ = int(lat["layer"])
        latent.position_ = int(lat["position"])
        latent.n_positions_ = int(lat["n_positions"])
        latent.bias_ = float(lat["bias"])
        latent.platt_ = (float(lat["platt"][0]), float(lat["platt"][1]))
        latent.candidate_layers_ = [int(x) for x in lat["candidate_layers"]]
        latent.cosmic_scores_ = dict(lat["cosmic_scores"])
        latent.cv_auroc_ = float(lat["cv_auroc"])
        latent.selection_auroc_ = float(lat["selection_auroc"])
        latent.harm_refusal_cosine_ = float(lat["harm_refusal_cosine"])
        latent.refusal_reply_auroc_ = float(lat["refusal_reply_auroc"])
        if lat_meta.harm_layers is not None:
            latent.set_readout(
                lat_meta.harm_layers, tensors["harm_directions"], float(lat_meta.harm_bias or 0.0)
            )
        policy = Policy(**meta["policy"])
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ArtifactError(f"{meta_path} is corrupt ({exc}); re-run `guard fit`") from exc
    for layer in latent.capture_layers:
        if not 0 <= layer < host.num_layers:
            raise ArtifactError(f"{meta_path}: layer {layer} does not exist in {host.name!r}")
    return latent, policy, meta


def update_policy(path: str | Path, **changes: Any) -> Policy:
    """Change fields of the `Policy` recorded in a guard folder, and its manifest with it, leaving
    every other byte of ``guard.json`` as `save_latent` wrote it (a head refitted on its own, such
    as the reply head, moves its threshold without a host pass).

    Raises:
        ArtifactError: no ``guard.json``, or a change the `Policy` schema rejects.

    Example:
        >>> update_policy("my_guard", reply_threshold=0.55).reply_threshold  # doctest: +SKIP
        0.55
    """
    meta_path = Path(path) / META_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        policy = Policy(**{**meta["policy"], **changes})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{meta_path}: cannot update its policy ({exc})") from exc
    meta["policy"] = policy.model_dump()
    meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True))
    update_manifest(Path(path), [META_FILE])
    return policy


__all__ = ["load_latent", "recorded_host", "save_latent", "update_policy"]
