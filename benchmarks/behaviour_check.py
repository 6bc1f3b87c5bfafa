"""Does a refactor change what the package computes? Compares this tree with an earlier commit on real images.

    python benchmarks/behaviour_check.py --before 5a79c01

For each tree (the earlier commit checked out as a git worktree, run with this interpreter and that tree first on
``sys.path``): the shipped checkpoint's scores under every rule and its maps on 16 real test images of
../shared/data (magnetic_tile crack/good, deeppcb, elpv/mono), a fresh k = 4 fine-tune on magnetic_tile train/good
(4 steps, same seed) scored the same way, and the profile the *earlier* tree saved, loaded by each tree. Prints the
largest absolute difference of each; the refactor's bar is 1e-5.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

DUMP = r'''
import glob, sys, warnings
import numpy as np, torch
warnings.simplefilter("ignore")
out, profile_dir, make = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
D = {data!r}
imgs = (sorted(glob.glob(f"{{D}}/magnetic_tile/magnetic_tile/test/crack/*"))[:4]
        + sorted(glob.glob(f"{{D}}/magnetic_tile/magnetic_tile/test/good/*"))[:4]
        + sorted(glob.glob(f"{{D}}/deeppcb/pcb/test/*/*"))[:4] + sorted(glob.glob(f"{{D}}/elpv/mono/test/*/*"))[:4])
from anomalyvfm.model import AnomalyVFM, load_default
from anomalyvfm.fewshot import FinetuneConfig, finetune, save_profile

def dump(model, tag):
    res = model.predict(imgs, batch_size=4)
    keys = sorted(res[0].scores)
    np.savez(f"{{out}}/{{tag}}.npz", scores=np.array([[r.scores[k] for k in keys] for r in res]), keys=np.array(keys),
             **{{f"map{{i}}": r.anomaly_map for i, r in enumerate(res)}})

torch.manual_seed(0)
model = load_default()
dump(model, "shipped")
good = sorted(glob.glob(f"{{D}}/magnetic_tile/magnetic_tile/train/good/*"))[:4]
cfg = FinetuneConfig(steps=4, eval_every=2, holdout=8)
profile, report = finetune(model, good, cfg, progress=False)
dump(profile, "finetuned")
if make:
    save_profile(profile, profile_dir, base="shipped", good=good, config=cfg, report=report)
dump(AnomalyVFM.from_pretrained(profile_dir), "profile_loaded")
'''


def run(tree: Path, out: Path, profile: Path, make: bool) -> None:
    script = out / "dump.py"
    script.write_text(DUMP.format(data=str(DATA)))
    env_path = f"import sys; sys.path.insert(0, {str(tree)!r}); exec(open({str(script)!r}).read())"
    subprocess.run([sys.executable, "-c", env_path, str(out), str(profile), "1" if make else "0"], check=True,
                   cwd=tree)


def main(argv=None) -> int:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the earlier commit")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        old_tree, old_out, new_out = tmp / "tree", tmp / "old", tmp / "new"
        old_out.mkdir()
        new_out.mkdir()
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(old_tree), args.before], check=True, cwd=ROOT)
        try:
            run(old_tree, old_out, tmp / "profile", make=True)
            run(ROOT, new_out, tmp / "profile", make=False)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], check=True, cwd=ROOT)
        worst = 0.0
        for tag in ("shipped", "finetuned", "profile_loaded"):
            a, b = np.load(old_out / f"{tag}.npz"), np.load(new_out / f"{tag}.npz")
            assert list(a["keys"]) == list(b["keys"]), (tag, a["keys"], b["keys"])
            d_scores = float(np.abs(a["scores"] - b["scores"]).max())
            d_maps = max(float(np.abs(a[f"map{i}"] - b[f"map{i}"]).max()) for i in range(len(a["scores"])))
            worst = max(worst, d_scores, d_maps)
            print(f"{tag}: rules {list(a['keys'])}; max |Δ score| {d_scores:.1e}, max |Δ map| {d_maps:.1e}")
    print(f"largest difference {worst:.1e} ({'within' if worst <= 1e-5 else 'OVER'} 1e-5)")
    return 0 if worst <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
