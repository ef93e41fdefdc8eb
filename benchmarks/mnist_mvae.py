"""Speed and quality of the MVAE recipe on MNIST, on a short budget.

    MMGEN_DATA_ROOT=../shared/data python benchmarks/mnist_mvae.py --epochs 5

Prints, in one run:
  * training samples/s at the recipe's batch size, the machine's fp32 matmul throughput on the
    same layer shapes (benchmarks/roofline.py), and their ratio;
  * after training: the validation ELBO terms, image->label accuracy on the TEST split (argmax of
    the label decoder at the posterior mean of q(z|image)), and label->image coherence (samples
    from q(z|label=k) judged by a CNN classifier trained on the training split).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torchvision.utils import save_image

sys.path.insert(0, str(Path(__file__).parent))
from reference_loop import reference_step_loss, time_steps
from roofline import record_linear_calls, time_matmuls

from mmgen.eval.crossmodal import coherence, prediction_accuracy
from mmgen.eval.judge import load_or_train_classifier
from mmgen.recipe import build_dataset, build_model, load_recipe, resolve_device
from mmgen.run import RunDir
from mmgen.train.session import create_run
from mmgen.train.trainer import Trainer


def resident_mb() -> float:
    """This process's resident memory now, from /proc (Linux), in MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 1e6


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # kilobytes on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="recipes/mnist_mvae.toml")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=None, help="run directory (default: a temporary folder)")
    ap.add_argument("--per-class", type=int, default=100, help="samples per class for coherence")
    ap.add_argument("overrides", nargs="*", help="key.path=value recipe overrides")
    args = ap.parse_args()

    recipe = load_recipe(args.recipe, [*args.overrides, f"train.epochs={args.epochs}"])
    device = resolve_device(args.device)
    out = args.out or Path(tempfile.mkdtemp(prefix="mmgen-bench-")) / "run"
    splits = build_dataset(recipe).load()
    trainer = Trainer(recipe, build_model(recipe), splits, create_run(out, recipe, lambda _m: None), device)
    print(f"recipe {args.recipe}  device {device}  threads {torch.get_num_threads()}  "
          f"train {trainer.n_train}  batch {recipe.train.batch_size}  epochs {args.epochs}")

    # ---- the roofline: the step's own matmuls, timed alone ------------------------------------
    model = trainer.model
    first = {n: model.modalities[n].prepare(splits["train"][n][: recipe.train.batch_size].to(device))
             for n in model.names}
    calls = record_linear_calls(model, lambda: model(first, beta=1.0).loss.backward())
    model.zero_grad(set_to_none=True)
    flops_per_step = sum(c.flops for c in calls)
    matmul_s = time_matmuls(calls, device)
    roof_sps = recipe.train.batch_size / matmul_s
    print(f"matmuls per step: {len(calls)} Linear calls, {flops_per_step / 1e9:.3f} GFLOP "
          f"({flops_per_step / recipe.train.batch_size / 1e6:.1f} MFLOP/sample)")
    print(f"fp32 matmul throughput on these shapes: {flops_per_step / matmul_s / 1e9:.1f} GFLOP/s "
          f"-> roofline {roof_sps:.0f} samples/s")

    # ---- the same layers in the published code's step structure, and in mmgen's ------------------
    opt = torch.optim.Adam(model.parameters(), lr=recipe.train.lr, fused=device.type in ("cpu", "cuda"))

    def step_with(loss_fn):
        def step():
            loss = loss_fn()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        return step

    ref_s = time_steps(step_with(lambda: reference_step_loss(model, first, 0.5)))
    ours_s = time_steps(step_with(lambda: model(first, beta=0.5).loss))
    B = recipe.train.batch_size
    print(f"step, published structure (3 passes, every decoder each): {B / ref_s:6.0f} samples/s")
    print(f"step, mmgen (encode once, decode what each term needs):  {B / ours_s:6.0f} samples/s "
          f"({ref_s / ours_s:.2f}x)")
    trainer.model.load_state_dict(build_model(recipe).to(device).state_dict())  # train from a fresh init

    # ---- training ------------------------------------------------------------------------------
    rss = []

    def on_epoch(row):
        rss.append(resident_mb())
        print(f"epoch {row['epoch']:3d}  {row['samples_per_s']:6.0f} samples/s  {row['train_seconds']:5.1f} s  "
              f"loss {row['train/loss']:8.2f}  val/loss {row['val/loss']:8.2f}  β {row['beta']:.3f}  "
              f"RSS {rss[-1]:.0f} MB (peak {peak_mb():.0f} MB)", flush=True)

    trainer.fit(on_epoch=on_epoch)
    rows = RunDir(out).read_metrics()
    sps = statistics.median(r["samples_per_s"] for r in rows)
    print(f"training: {sps:.0f} samples/s (median over epochs), "
          f"{statistics.median(r['train_seconds'] for r in rows):.1f} s per {trainer.n_train}-example epoch")
    print(f"ratio to the matmul roofline: {sps / roof_sps:.1%}")
    print(f"memory: peak RSS {peak_mb():.0f} MB; RSS after each epoch {' '.join(f'{r:.0f}' for r in rss)} MB")

    # ---- quality on the test split --------------------------------------------------------------
    last = rows[-1]
    print("validation ELBO terms (nats, λ = 1, β = 1): "
          + "  ".join(f"{k[4:]} {v:.2f}" for k, v in last.items() if k.startswith("val/elbo")))
    test = splits["test"]
    image = model.modalities["image"].prepare(test["image"].to(device), torch.Generator(device).manual_seed(1))
    acc = prediction_accuracy(model, {"image": image}, "label", test["label"].to(device))
    t = time.perf_counter()
    classifier = load_or_train_classifier(splits["train"]["image"].to(device), splits["train"]["label"].to(device),
                                          recipe.modalities["label"].num_classes, name=recipe.data.kind)
    clf_acc = float((classifier.predict(test["image"].to(device).float() / 255) == test["label"].to(device))
                    .float().mean())
    print(f"classifier: test accuracy {clf_acc:.4f} (ready in {time.perf_counter() - t:.0f} s)")
    mean_coh, per_class = coherence(model, classifier, "label", "image", recipe.modalities["label"].num_classes,
                                    per_class=args.per_class)
    print(f"image->label accuracy (test): {acc:.4f}")
    print(f"label->image coherence: {mean_coh:.4f}  per class: " + " ".join(f"{c:.2f}" for c in per_class))
    with torch.no_grad():
        z = torch.randn(64, model.latent_dim, device=device)
        grid = out / "samples-prior.png"
        save_image(model.modalities["image"].mean(model.modalities["image"].decode(z)), grid, nrow=8)
    print(f"unconditional samples: {grid}")
    summary = {"samples_per_s": sps, "roofline_samples_per_s": roof_sps, "ratio": sps / roof_sps,
               "peak_rss_mb": peak_mb(), "rss_mb_per_epoch": rss,
               "step_samples_per_s": B / ours_s, "published_structure_samples_per_s": B / ref_s,
               "accuracy": acc, "coherence": mean_coh, "classifier_accuracy": clf_acc,
               **{k: v for k, v in last.items() if k.startswith("val/")}}
    print(json.dumps(summary))



if __name__ == "__main__":
    main()
