import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]


def _config(tmp_path, backbone_dir, name, **kw) -> TrainConfig:
    return TrainConfig(out=str(tmp_path / name), steps=6, batch_size=4, resolution=56, checkpoint_every=2,
                       warmup=2, lr=1e-3, model={"backbone": str(backbone_dir)}, **kw)


def _weights(final: Path) -> dict:
    return {**load_file(final / "adapter_model.safetensors"), **load_file(final / "heads.safetensors")}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_training_writes_checkpoints_log_and_a_loadable_model(tmp_path, tiny_backbone_dir):
    from anomalyvfm import AnomalyVFM

    final = train(_config(tmp_path, tiny_backbone_dir, "run"))
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == [
        "step_0000002", "step_0000004", "step_0000006"]
    history = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == list(range(1, 7)) and all(h["loss"] > 0 for h in history)
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000
    model = AnomalyVFM.from_pretrained(final)
    assert model.config.trained


def test_resume_after_a_crash_gives_the_same_weights(tmp_path, tiny_backbone_dir):
    straight = _weights(train(_config(tmp_path, tiny_backbone_dir, "a")))
    cfg = _config(tmp_path, tiny_backbone_dir, "b")
    with pytest.raises(SystemExit):
        train(cfg, crash_at_step=3)  # last checkpoint: step 2
    assert not (tmp_path / "b" / "final").exists()
    resumed = _weights(train(cfg))
    assert _same(straight, resumed)


def test_batches_made_ahead_by_workers_give_the_same_run(tmp_path, tiny_backbone_dir):
    inline = _weights(train(_config(tmp_path, tiny_backbone_dir, "inline", grad_accum=2)))
    cfg = _config(tmp_path, tiny_backbone_dir, "ahead", grad_accum=2, workers=2)
    with pytest.raises(SystemExit):
        train(cfg, crash_at_step=3)  # resumes from step 2 with a fresh set of workers
    assert _same(inline, _weights(train(cfg)))


def test_resume_after_sigkill_gives_the_same_weights(tmp_path, tiny_backbone_dir):
    steps = 30  # long enough that the kill lands mid-run, not after the end
    straight = _weights(train(TrainConfig(**{**_config(tmp_path, tiny_backbone_dir, "a").__dict__, "steps": steps})))
    cfg = {**_config(tmp_path, tiny_backbone_dir, "k").__dict__, "steps": steps}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "training.train", "--config", str(tmp_path / "cfg.json")],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp_path / "k" / "log.jsonl"  # rewritten after each checkpoint: 4 lines = checkpoint 4 is complete
    while (not log.exists() or len(log.read_text().splitlines()) < 4) and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it was killed: nothing to resume"
    assert not (tmp_path / "k" / "final").exists()
    done = len((tmp_path / "k" / "log.jsonl").read_text().splitlines())
    assert 4 <= done < steps
    resumed = _weights(train(TrainConfig(**cfg)))
    assert _same(straight, resumed)


def _ddp_worker(rank: int, world: int, port: int, cfg: dict, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    from training.train import build, train as run

    cfg = TrainConfig(**cfg)
    initial = [p.detach().clone() for p in build(cfg, torch.device("cpu"))[0].parameters() if p.requires_grad]
    run(cfg)
    # rebuild the trained model from the final checkpoint on rank 0 and compare every rank's live weights to it
    from training.train import latest_checkpoint, load_checkpoint

    model, opt = build(cfg, torch.device("cpu"))
    load_checkpoint(latest_checkpoint(Path(cfg.out)), model, opt)
    trained = [p.detach() for p in model.parameters() if p.requires_grad]
    gathered = [None] * world
    torch.distributed.all_gather_object(gathered, [t.numpy() for t in trained])
    same = all((a == b).all() for a, b in zip(gathered[0], gathered[1]))
    moved = any(not torch.equal(a, b) for a, b in zip(initial, trained))
    Path(out, f"rank{rank}.json").write_text(json.dumps({"same": bool(same), "moved": bool(moved)}))
    torch.distributed.destroy_process_group()


def test_two_cpu_processes_stay_in_sync(tmp_path, tiny_backbone_dir):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:  # a free loopback port (the network guard only blocks connect)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = {**_config(tmp_path, tiny_backbone_dir, "ddp").__dict__, "steps": 2, "checkpoint_every": 2}
    mp.spawn(_ddp_worker, args=(2, port, cfg, str(tmp_path)), nprocs=2, join=True)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert all(r["same"] and r["moved"] for r in results)


def test_training_with_mask_refinement_runs(tmp_path, tiny_backbone_dir):
    final = train(_config(tmp_path, tiny_backbone_dir, "r", refine_masks=True, refine_threshold=0.0))
    assert (final / "heads.safetensors").is_file()


def test_frozen_arm_trains_no_adapter(tmp_path, tiny_backbone_dir):
    from training.train import build

    model, optimizer = build(_config(tmp_path, tiny_backbone_dir, "f", freeze_adapters=True), torch.device("cpu"))
    trained = {id(p) for g in optimizer.param_groups for p in g["params"]}
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    assert lora and not any(id(p) in trained for p in lora)


def test_ablation_runs_an_arm_end_to_end(tmp_path, tiny_backbone_dir):
    from conftest import fake_mvtec
    from training.ablate import main as ablate

    fake_mvtec(tmp_path / "data" / "toyset", "a")
    base = tmp_path / "base.json"
    base.write_text(json.dumps({"batch_size": 4, "resolution": 56, "warmup": 1,
                                "model": {"backbone": str(tiny_backbone_dir)}}))
    assert ablate(["--steps", "2", "--arms", "lora,frozen", "--base", str(base), "--data", str(tmp_path / "data"),
                   "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "res"), "--validation", "toyset",
                   "--pairs", "3"]) == 0
    summary = json.loads((tmp_path / "res" / "summary.json").read_text())
    assert set(summary) == {"lora", "frozen"}
    arm = summary["lora"]
    assert set(arm["as_trained"]["validation"]) == {"toyset/a"} and arm["as_trained"]["report"] == {}
    assert 0.0 <= arm["as_trained"]["synthetic"]["I-AUROC[cls]"] <= 1.0
    smoothed = json.loads((tmp_path / "runs" / "lora" / "final-smooth5" / "config.json").read_text())
    assert smoothed["map_smoothing"] == 5  # the filter arm is the same weights with the published 5x5 filter


def test_a_warm_start_with_more_decoder_layers_and_a_map_aware_head_reproduces_its_seed(tiny_checkpoint,
                                                                                         tiny_backbone_dir):
    """Step 0 of a warm-started run is the seed checkpoint, even with extra decoder layers and head inputs; after
    that the map statistics are inputs the head can use."""
    from anomalyvfm import AnomalyVFM
    from training.train import build

    cfg = TrainConfig(init_from=str(tiny_checkpoint), model={
        "backbone": str(tiny_backbone_dir), "top_k": 10, "decoder": {"layers": [0, -1], "image_head": "cls+map"}})
    new, _ = build(cfg, torch.device("cpu"))
    seed = AnomalyVFM.from_pretrained(tiny_checkpoint)
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        a, b = seed.eval()(x), new.eval()(x)
    assert torch.allclose(a.mask_logits, b.mask_logits, atol=1e-5)
    assert torch.allclose(a.image_logits, b.image_logits, atol=1e-6)
    assert new.image_head.fc.in_features == seed.image_head.fc.in_features + 4
    with torch.no_grad():
        new.image_head.fc.weight[0, -4] = 1.0  # the map's max now moves the image logit
        assert not torch.allclose(new(x).image_logits, b.image_logits)


def test_the_published_loss_choices_are_options(tmp_path, tiny_backbone_dir):
    from anomalyvfm.losses import anomalyvfm_loss

    logits, conf = torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)
    masks = torch.zeros(1, 1, 8, 8)
    masks[..., :3, :3] = 1.0  # resizes to a soft edge
    y = torch.ones(1)
    soft = anomalyvfm_loss(logits, conf, torch.zeros(1), masks, y)
    assert anomalyvfm_loss(logits, conf, torch.zeros(1), masks, y, binary_targets=True) != soft
    assert anomalyvfm_loss(logits, conf, torch.zeros(1), masks, y, focal_alpha=0.25) != soft


def test_soup_averages_every_trained_tensor_and_refuses_another_model(tiny_model, tiny_backbone_dir, tmp_path):
    from anomalyvfm import AnomalyVFM, AnomalyVFMConfig
    from anomalyvfm.checkpoint import ADAPTER_NAME, HEADS_NAME, read_tensors
    from training.soup import soup

    first = tiny_model.save_pretrained(tmp_path / "a")
    with torch.no_grad():
        for _, p in tiny_model.trainable_parameters():
            p.add_(1.0)
    tiny_model.config.threshold = 0.7  # settled fields may differ, self_weight too (training.ship carries it over)
    tiny_model.config.self_weight = 0.75
    second = tiny_model.save_pretrained(tmp_path / "b")
    out = soup([first, second], tmp_path / "soup")
    for name in (ADAPTER_NAME, HEADS_NAME):
        a, b, s = (read_tensors(d / name) for d in (first, second, out))
        assert set(s) == set(a) and all(torch.allclose(s[k], a[k] + 0.5) and torch.allclose(b[k], a[k] + 1.0)
                                        for k in a)
    loaded = AnomalyVFM.from_pretrained(out)  # loads with its recorded sha256
    assert loaded.config.threshold_origin == "unset"
    other = AnomalyVFM(AnomalyVFMConfig(backbone=str(tiny_backbone_dir), top_k=10, image_score="topk"))
    with pytest.raises(ValueError, match="image_score"):
        soup([first, other.save_pretrained(tmp_path / "c")], tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_symmetry_augment_turns_each_pair_and_its_mask_alike():
    """With ``symmetry_augment`` every pair is one d4 view of the plain batch's pair (the same view for the good
    image, the bad image and the mask), and not all views are the identity; the batch stays a pure function of the
    indices."""
    from anomalyvfm.synth import SynthConfig
    from anomalyvfm.tta import TEST_VIEWS, apply_view
    from training.train import batch

    synth = SynthConfig(size=56)
    plain = batch(TrainConfig(batch_size=8, seed=5), synth, 0, 0)
    turned = batch(TrainConfig(batch_size=8, seed=5, symmetry_augment=True), synth, 0, 0)
    again = batch(TrainConfig(batch_size=8, seed=5, symmetry_augment=True), synth, 0, 0)
    assert all(torch.equal(a, b) for a, b in zip(turned, again))
    assert torch.equal(plain[2], turned[2])
    used = []
    for j in range(4):
        pair = slice(2 * j, 2 * j + 2)
        match = [v for v in TEST_VIEWS["d4"] if torch.equal(apply_view(plain[0][pair], v), turned[0][pair])
                 and torch.equal(apply_view(plain[1][pair], v), turned[1][pair])]
        assert match, f"pair {j} is not one view of the plain pair"
        used.append(match[0])
    assert any(v != TEST_VIEWS["d4"][0] for v in used)


def test_hard_normals_trains_on_each_slots_pair_whose_good_image_scores_highest(tmp_path, tiny_backbone_dir):
    """With ``hard_normals`` K each pair slot draws K candidate pairs, the first being the slot's pair without
    mining; ``hardest_pairs`` keeps, per slot, the (good, bad) pair whose good image the model scores highest; a
    mined run trains end to end."""
    from types import SimpleNamespace

    from anomalyvfm.synth import SynthConfig
    from training.train import batch, hardest_pairs

    synth = SynthConfig(size=56)
    plain = batch(TrainConfig(batch_size=4, seed=5), synth, 0, 0)
    mined = batch(TrainConfig(batch_size=4, seed=5, hard_normals=3), synth, 0, 0)
    assert mined[0].shape[0] == 12 and mined[2].tolist() == [0.0, 1.0] * 6
    assert torch.equal(mined[0][0:2], plain[0][0:2]) and torch.equal(mined[0][6:8], plain[0][2:4])
    assert not torch.equal(mined[0][2:4], mined[0][0:2])

    def brightness(x):  # a stand-in model: an image's score is its mean
        return SimpleNamespace(image_logits=x.mean((1, 2, 3)).unsqueeze(1))

    x, m, y = hardest_pairs(brightness, *mined, candidates=3)
    means = mined[0][0::2].mean((1, 2, 3)).reshape(2, 3)
    for slot, pick in enumerate(means.argmax(1).tolist()):
        rows = slice(2 * (3 * slot + pick), 2 * (3 * slot + pick) + 2)
        assert torch.equal(x[2 * slot:2 * slot + 2], mined[0][rows]) and torch.equal(m[2 * slot:2 * slot + 2],
                                                                                      mined[1][rows])
    assert y.tolist() == [0.0, 1.0, 0.0, 1.0]
    assert hardest_pairs(brightness, *plain, candidates=1)[0] is plain[0]
    with pytest.raises(ValueError, match="hard_normals"):
        TrainConfig(hard_normals=0)
    final = train(_config(tmp_path, tiny_backbone_dir, "mined", hard_normals=2))
    assert (final / "heads.safetensors").exists()


def test_an_anchored_run_starts_at_its_anchor_and_is_pulled_back_to_it(tiny_checkpoint, tiny_backbone_dir, tmp_path):
    """With ``anchor_to`` its own seed, the anchor term is zero at step 0; once the head drifts it is positive and
    its gradient pushes the head back; a run logs it."""
    from training.train import anchor_loss, build, load_anchor

    cfg = _config(tmp_path, tiny_backbone_dir, "anchored", init_from=str(tiny_checkpoint),
                  anchor_to=str(tiny_checkpoint))
    cfg.model["top_k"] = 10
    cfg.steps = 2
    model, _ = build(cfg, torch.device("cpu"))
    anchor = load_anchor(cfg, torch.device("cpu"))
    x = torch.randn(4, 3, 56, 56)
    assert abs(anchor_loss(model.eval()(x), anchor, x).item()) < 1e-5
    with torch.no_grad():
        model.image_head.fc.bias += 2.0  # the run now scores good images higher than its anchor
    drifted = anchor_loss(model(x), anchor, x)
    assert drifted.item() > 1e-3
    drifted.backward()
    assert model.image_head.fc.bias.grad.item() > 0  # descent lowers the bias again
    train(cfg)
    history = [json.loads(line) for line in (tmp_path / "anchored" / "log.jsonl").read_text().splitlines()]
    assert all("anchor" in h and h["anchor"] >= -1e-6 for h in history)


def test_ensemble_averages_its_members_logits_and_saves_them_all(tiny_model, tiny_backbone_dir, tmp_path):
    """An ensemble's outputs are the mean of its members' view-averaged outputs; it saves and loads back every
    member (with the weights' sha256 covering them), and a folder without the members' file is refused."""
    from anomalyvfm import AnomalyVFM, AnomalyVFMConfig
    from anomalyvfm.checkpoint import MEMBERS_NAME, weights_sha256
    from anomalyvfm.errors import CheckpointError
    from training.ensemble import ensemble

    first = tiny_model.save_pretrained(tmp_path / "a")
    with torch.no_grad():
        for name, p in tiny_model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    second = tiny_model.save_pretrained(tmp_path / "b")
    out = ensemble([first, second], tmp_path / "ens", test_views="mirror")
    ens = AnomalyVFM.from_pretrained(out).prepare_for_inference()
    assert len(ens.config.members) == 1 and str(second.as_posix()) in ens.config.members[0]
    assert ens.config.threshold_origin == "unset" and (out / MEMBERS_NAME).is_file()
    parts = [AnomalyVFM.from_pretrained(d) for d in (first, second)]
    x = torch.rand(2, 3, 56, 56)
    with torch.no_grad():
        got = ens.outputs(x)
        want = []
        for m in parts:
            m.config.test_views = "mirror"
            want.append(m.prepare_for_inference().outputs(x))
    assert not torch.allclose(want[0].image_logits, want[1].image_logits)  # the members differ
    assert torch.allclose(got.image_logits, (want[0].image_logits + want[1].image_logits) / 2, atol=1e-5)
    assert torch.allclose(got.mask_logits, (want[0].mask_logits + want[1].mask_logits) / 2, atol=1e-5)
    assert weights_sha256(out) != weights_sha256(first)  # the members are covered by the recorded sha256
    (out / MEMBERS_NAME).unlink()
    with pytest.raises(CheckpointError, match=MEMBERS_NAME):
        AnomalyVFM.from_pretrained(out)
    other = AnomalyVFM(AnomalyVFMConfig(backbone=str(tiny_backbone_dir), top_k=10, image_score="topk"))
    with pytest.raises(ValueError, match="image_score"):
        ensemble([first, other.save_pretrained(tmp_path / "c")], tmp_path / "bad")
