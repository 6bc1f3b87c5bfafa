import json

from anomalyvfm.cards import build_card, weights_sha256


def _results(tmp_path):
    rows = [{"dataset": "toyset", "category": "a", "method": "anomalyvfm", "shots": 0, "seed": 0,
             "I-AUROC": 0.8123, "P-AUROC": 0.9, "AUPRO@0.3": float("nan")},
            {"dataset": "toyset", "category": "a", "method": "knn", "shots": 1, "seed": 0,
             "I-AUROC": 0.6, "P-AUROC": 0.7, "AUPRO@0.3": 0.5}]
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"rows": rows}))
    return path


def test_card_carries_metadata_and_measured_results(tiny_checkpoint, tmp_path):
    from huggingface_hub import ModelCard

    card = build_card(tiny_checkpoint, _results(tmp_path), summary="A tiny test model.",
                      training="synthetic pairs", evaluation="toy", limitations="none")
    parsed = ModelCard(str(card))
    assert parsed.data.library_name == "anomalyvfm" and parsed.data.license == "mit"
    assert "anomaly-detection" in parsed.data.tags and parsed.data.datasets == ["toyset"]
    results = {(r.metric_name, r.dataset_name): r.metric_value for r in parsed.data.eval_results}
    assert results == {("I-AUROC", "toyset/a"): 81.23, ("P-AUROC", "toyset/a"): 90.0}  # knn rows and NaN left out
    assert weights_sha256(tiny_checkpoint) in str(card) and "A tiny test model." in str(card)


def test_card_command_writes_a_parseable_card(tiny_checkpoint, tmp_path):
    from huggingface_hub import ModelCard

    from anomalyvfm.cli import main

    (tmp_path / "limits.md").write_text("Not for medical use.")
    assert main(["card", str(tiny_checkpoint), "--results", str(_results(tmp_path)),
                 "--limitations", str(tmp_path / "limits.md")]) == 0
    card = ModelCard.load(tiny_checkpoint / "README.md")
    assert card.data.eval_results[0].metric_value == 81.23 and "Not for medical use." in card.text


def test_a_profile_card_names_its_shipped_base_and_its_resolution(tiny_model, tmp_path):
    """A profile of the shipped default recorded this machine's path to the package as its base, and a fine-tune at
    the model's own resolution printed 'Settings: resolution None'."""
    from anomalyvfm.calibration import Calibration
    from anomalyvfm.fewshot import save_profile
    from anomalyvfm.fewshot.config import FinetuneConfig, FinetuneReport
    from anomalyvfm.model import shipped_checkpoint

    cal = Calibration(threshold=0.9, scale=0.1, fpr=0.01, n_good=16, n_images=2, resolution=224).to_dict()
    directory = save_profile(tiny_model, tmp_path / "profile", base=str(shipped_checkpoint()), good=[],
                             config=FinetuneConfig(), report=FinetuneReport(calibration=cal))
    card = (directory / "README.md").read_text()
    assert json.loads((directory / "profile.json").read_text())["base_model"] == "anomalyvfm-vits14"
    assert "Fine-tuned from `anomalyvfm-vits14`" in card and "Settings: 224 px," in card
