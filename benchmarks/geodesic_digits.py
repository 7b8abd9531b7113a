"""Functional-geodesic sparsification and transfer on scikit-learn's digits.

Reproduces the experiments of ``papers/geodesic-sparsification.md`` at digits
scale (8x8 images, bundled with scikit-learn, nothing is downloaded):

1. an MLP (64-64-10) walked to 70% and 90% global magnitude sparsity;
2. a small CNN whose first layer loses 10 of its 12 filters (the paper removes
   50 of 60 in VGG-11);
3. a path from a network trained on digits 0-4 towards one trained on 5-9
   along the first task's functional manifold (catastrophic forgetting).

Baselines run in the same process: one-shot magnitude projection, magnitude
pruning + fine-tuning and iterative prune-retrain with as many weight updates
as the geodesic takes steps, plain fine-tuning on task B and the straight
line between the two task networks.  Writes ``results.json``, ``table.md``
and PNG plots to ``--out``.

Every setting is passed explicitly in the paper's absolute units
(``beta_absolute``, ``eps``, no early Lanczos stop), so the numbers of
``docs/geodesic.md`` measured with moduli 0.2 reproduce; the scale-free
defaults are measured by ``geodesic_heldout.py``.

Run (456 s measured on one core of a shared machine)::

    PYTHONPATH=$PWD python benchmarks/geodesic_digits.py --out benchmarks/results/geodesic_digits
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
from torch import nn

from moduli import geodesic, targets


# ----------------------------------------------------------------------------- data and training


def digits(seed: int = 0):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    X = torch.tensor(d.data / 16.0, dtype=torch.float32)
    Y = torch.tensor(d.target, dtype=torch.int64)
    idx = torch.arange(len(Y))
    tr, te = train_test_split(idx.numpy(), test_size=0.3, random_state=seed, stratify=Y.numpy())
    return X[tr], Y[tr], X[te], Y[te]


def mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 12, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 12 x 4 x 4
        nn.Conv2d(12, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 16 x 2 x 2
        nn.Flatten(), nn.Linear(64, 10),
    )


def accuracy(model: nn.Module, X, Y) -> float:
    was = model.training
    model.eval()
    with torch.no_grad():
        a = float((model(X).argmax(1) == Y).float().mean())
    model.train(was)
    return a


def weight_params(model: nn.Module, names) -> dict:
    mods = dict(model.named_modules())
    return {n: mods[n].weight for n in names}


def apply_(model: nn.Module, names, masks) -> None:
    """Zero masked weights in place (element masks or unit masks with biases)."""
    mods = dict(model.named_modules())
    with torch.no_grad():
        for n in names:
            m, w = masks[n], mods[n].weight
            if m.shape == w.shape:
                w.mul_(m.to(w.dtype))
            else:
                w.mul_(m.to(w.dtype).view(-1, *([1] * (w.ndim - 1))))
                if mods[n].bias is not None:
                    mods[n].bias.mul_(m.to(w.dtype))


def train(model, X, Y, *, updates: int, lr: float, seed: int, batch: int = 64, names=(), masks=None,
          callback=None, every: int = 0):
    """Adam for ``updates`` minibatch steps; masked weights are kept at zero."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    done = 0
    while done < updates:
        perm = torch.randperm(len(Y), generator=g)
        for i in range(0, len(Y), batch):
            idx = perm[i : i + batch]
            opt.zero_grad()
            nn.functional.cross_entropy(model(X[idx]), Y[idx]).backward()
            opt.step()
            if masks is not None:
                apply_(model, names, masks)
            done += 1
            if callback is not None and every and done % every == 0:
                callback(done)
            if done >= updates:
                break
    model.eval()
    return model


def masks_for(model, names, p, structured):
    ws = weight_params(model, names)
    return geodesic.unit_masks(ws, p) if structured else geodesic.magnitude_masks(ws, p)


def one_shot(dense, names, p, structured=False):
    m = copy.deepcopy(dense)
    apply_(m, names, masks_for(m, names, p, structured))
    return m


def finetune(dense, names, p, X, Y, updates, lr, seed, structured=False):
    m = one_shot(dense, names, p, structured)
    return train(m, X, Y, updates=updates, lr=lr, seed=seed, names=names,
                 masks=masks_for(m, names, p, structured))


def iterative(dense, names, p, X, Y, updates, lr, seed, rounds, structured=False):
    m = copy.deepcopy(dense)
    for r in range(1, rounds + 1):
        pr = p * r / rounds
        masks = masks_for(m, names, pr, structured)
        apply_(m, names, masks)
        train(m, X, Y, updates=max(1, updates // rounds), lr=lr, seed=seed + r, names=names, masks=masks)
    return m


def sparsity_of(model, names):
    return targets.sparsity([w.detach() for w in weight_params(model, names).values()])


# ----------------------------------------------------------------------------- experiments


def run_sparsify(args, rows, curves, seed):
    """MLP experiment for one seed (data split, initialisation and batches all follow it)."""
    Xtr, Ytr, Xte, Yte = digits(seed)
    dense = train(mlp(seed), Xtr, Ytr, updates=args.dense_updates, lr=1e-2, seed=seed)
    names = ["0", "2"]
    dense_acc = accuracy(dense, Xte, Yte)
    rows.append(dict(experiment="mlp", seed=seed, sparsity=0.0, method="dense", test_acc=dense_acc,
                     updates=args.dense_updates))
    print(f"[mlp seed {seed}] dense test accuracy {dense_acc:.4f}", flush=True)
    first = len(rows)
    for p in args.sparsities:
        def evaluate(m, p=p):
            proj = one_shot(m, names, p)
            return {"acc": accuracy(m, Xte, Yte), "acc_projected": accuracy(proj, Xte, Yte)}

        t = time.perf_counter()
        m = one_shot(dense, names, p)
        rows.append(dict(experiment="mlp", seed=seed, sparsity=p, method="one-shot magnitude",
                         test_acc=accuracy(m, Xte, Yte),
                         updates=0, seconds=time.perf_counter() - t, measured_sparsity=sparsity_of(m, names)))
        variants = [
            ("geodesic Eq. 7", dict(mode="eq7", beta_absolute=args.beta, eps=args.eps_eq7, steps=args.steps_eq7, restore=0.0)),
            ("geodesic compensate + restore", dict(mode="compensate", eps=args.eps, steps=args.steps, restore=1.0)),
            ("geodesic compensate + restore, Fisher metric",
             dict(mode="compensate", eps=args.eps, steps=args.steps, restore=1.0, metric="fisher")),
        ]
        for label, kw in variants:
            t = time.perf_counter()
            path = geodesic.sparsify(dense, Xtr, p, lanczos_iters=args.lanczos, lanczos_tol=None, evaluate=evaluate,
                                     eval_every=args.eval_every, progress=True, seed=seed, **kw)
            sec = time.perf_counter() - t
            line = geodesic.line_length(dense, path.model, Xtr, segments=20, metric=kw.get("metric", "output"))
            h = path.history
            steps_taken = sum(r["kind"] == "step" for r in h)
            rows.append(dict(
                experiment="mlp", seed=seed, sparsity=p, method=label, test_acc=accuracy(path.model, Xte, Yte),
                updates=steps_taken, seconds=sec, products=h[-1]["products"],
                measured_sparsity=sparsity_of(path.model, names), reached=path.reached,
                path_length=h[-1]["path_length"], line_length=line["path_length"],
                euclidean_length=h[-1]["euclidean_length"], line_euclidean=line["euclidean_length"],
                final_jump=h[-1]["step_norm"], **{k: v for k, v in kw.items() if k != "steps"},
            ))
            if seed != args.seed:
                continue
            curves[f"mlp {p:.0%} {label}"] = {
                "step": [r["step"] for r in h if "acc" in r],
                "acc": path.column("acc"), "acc_projected": path.column("acc_projected"),
                "distance": [r["distance"] for r in h if "acc" in r],
            }
        for r in rows[-len(variants):]:
            print(f"[mlp {p:.0%} seed {seed}] {r['method']}: test {r['test_acc']:.4f} steps {r['updates']} "
                  f"length {r['path_length']:.3f} vs line {r['line_length']:.3f} ({r['seconds']:.1f}s)", flush=True)
        budget = max(r["updates"] for r in rows[first:] if r["sparsity"] == p)
        for lr in args.ft_lrs:
            t = time.perf_counter()
            m = finetune(dense, names, p, Xtr, Ytr, budget, lr, seed)
            rows.append(dict(experiment="mlp", seed=seed, sparsity=p, method=f"magnitude + fine-tune (lr {lr:g})",
                             test_acc=accuracy(m, Xte, Yte), updates=budget, seconds=time.perf_counter() - t,
                             measured_sparsity=sparsity_of(m, names)))
            t = time.perf_counter()
            m = iterative(dense, names, p, Xtr, Ytr, budget, lr, seed, rounds=5)
            rows.append(dict(experiment="mlp", seed=seed, sparsity=p,
                             method=f"iterative prune-retrain, 5 rounds (lr {lr:g})",
                             test_acc=accuracy(m, Xte, Yte), updates=budget, seconds=time.perf_counter() - t,
                             measured_sparsity=sparsity_of(m, names)))
        for r in rows[-2 * len(args.ft_lrs):]:
            print(f"[mlp {p:.0%} seed {seed}] {r['method']}: test {r['test_acc']:.4f}", flush=True)


def run_cnn(args, rows, curves):
    Xtr, Ytr, Xte, Yte = digits(args.seed)
    Xtr, Xte = Xtr.view(-1, 1, 8, 8), Xte.view(-1, 1, 8, 8)
    dense = train(cnn(args.seed), Xtr, Ytr, updates=args.dense_updates, lr=5e-3, seed=args.seed)
    names, p = ["0"], 10 / 12
    rows.append(dict(experiment="cnn", sparsity=p, method="dense", test_acc=accuracy(dense, Xte, Yte),
                     updates=args.dense_updates))
    m = one_shot(dense, names, p, structured=True)
    rows.append(dict(experiment="cnn", sparsity=p, method="one-shot filter removal", test_acc=accuracy(m, Xte, Yte),
                     updates=0, filters_left=int(m[0].weight.reshape(12, -1).any(1).sum())))

    def evaluate(mm):
        return {"acc": accuracy(mm, Xte, Yte), "acc_projected": accuracy(one_shot(mm, names, p, True), Xte, Yte)}

    for label, kw in [
        ("geodesic Eq. 7", dict(mode="eq7", beta_absolute=args.beta, eps=args.eps_eq7, steps=args.steps_eq7, restore=0.0)),
        ("geodesic compensate + restore", dict(mode="compensate", eps=args.eps, steps=args.cnn_steps, restore=1.0)),
    ]:
        t = time.perf_counter()
        path = geodesic.sparsify(dense, Xtr, p, structured="filters", targets=names, lanczos_iters=args.cnn_lanczos,
                                 lanczos_tol=None,
                                 batch_size=args.cnn_batch, seed=args.seed,
                                 evaluate=evaluate, eval_every=args.eval_every, progress=True, **kw)
        sec = time.perf_counter() - t
        h = path.history
        rows.append(dict(experiment="cnn", sparsity=p, method=label, test_acc=accuracy(path.model, Xte, Yte),
                         updates=sum(r["kind"] == "step" for r in h), seconds=sec, reached=path.reached,
                         filters_left=int(path.model[0].weight.reshape(12, -1).any(1).sum()),
                         path_length=h[-1]["path_length"], final_jump=h[-1]["step_norm"]))
        curves[f"cnn {label}"] = {"step": [r["step"] for r in h if "acc" in r], "acc": path.column("acc"),
                                  "acc_projected": path.column("acc_projected"),
                                  "distance": [r["distance"] for r in h if "acc" in r]}
        print(f"[cnn] {label}: test {rows[-1]['test_acc']:.4f} ({sec:.1f}s)", flush=True)
    budget = max(r["updates"] for r in rows if r["experiment"] == "cnn" and r["method"].startswith("geodesic"))
    for lr in args.ft_lrs:
        m = finetune(dense, names, p, Xtr, Ytr, budget, lr, args.seed, structured=True)
        rows.append(dict(experiment="cnn", sparsity=p, method=f"filter removal + fine-tune (lr {lr:g})",
                         test_acc=accuracy(m, Xte, Yte), updates=budget))
        m = iterative(dense, names, p, Xtr, Ytr, budget, lr, args.seed, rounds=10, structured=True)
        rows.append(dict(experiment="cnn", sparsity=p, method=f"one filter at a time + retrain, 10 rounds (lr {lr:g})",
                         test_acc=accuracy(m, Xte, Yte), updates=budget))
    for r in rows[-2 * len(args.ft_lrs):]:
        print(f"[cnn] {r['method']}: test {r['test_acc']:.4f}", flush=True)


def run_transfer(args, rows, curves):
    Xtr, Ytr, Xte, Yte = digits(args.seed)
    a_tr, b_tr = Ytr < 5, Ytr >= 5
    a_te, b_te = Yte < 5, Yte >= 5
    net_a = train(mlp(args.seed), Xtr[a_tr], Ytr[a_tr], updates=args.task_updates, lr=1e-2, seed=args.seed)
    net_b = train(mlp(args.seed), Xtr[b_tr], Ytr[b_tr], updates=args.task_updates, lr=1e-2, seed=args.seed + 1)

    def both(m):
        return {"acc_a": accuracy(m, Xte[a_te], Yte[a_te]), "acc_b": accuracy(m, Xte[b_te], Yte[b_te])}

    def summary(method, accs_a, accs_b, **extra):
        mins = [min(x, y) for x, y in zip(accs_a, accs_b)]
        i = max(range(len(mins)), key=mins.__getitem__)
        rows.append(dict(experiment="transfer", method=method, best_min_acc=mins[i], acc_a=accs_a[i], acc_b=accs_b[i],
                         start_a=accs_a[0], start_b=accs_b[0], end_a=accs_a[-1], end_b=accs_b[-1], **extra))
        print(f"[transfer] {method}: best point A {accs_a[i]:.3f} B {accs_b[i]:.3f}; end A {accs_a[-1]:.3f} "
              f"B {accs_b[-1]:.3f}", flush=True)

    for beta in args.transfer_betas:
        label, kw = f"geodesic Eq. 7 (task-A metric), beta={beta:g}", dict(beta_absolute=beta)
        t = time.perf_counter()
        path = geodesic.transfer(net_a, net_b, Xtr[a_tr], steps=args.transfer_steps, eps=args.eps,
                                 lanczos_iters=args.lanczos, lanczos_tol=None, evaluate=both,
                                 eval_every=args.transfer_eval_every,
                                 keep_every=None, progress=True, **kw)
        sec = time.perf_counter() - t
        curves[f"transfer {label}"] = {"step": [r["step"] for r in path.history if "acc_a" in r],
                                       "acc_a": path.column("acc_a"), "acc_b": path.column("acc_b"),
                                       "distance": [r["distance"] for r in path.history if "acc_a" in r]}
        summary(label, path.column("acc_a"), path.column("acc_b"), seconds=sec, steps=path.history[-1]["step"],
                reached=path.reached, **kw)
    # straight line in weight space
    wa, wb = (torch.nn.utils.parameters_to_vector(m.parameters()).detach() for m in (net_a, net_b))
    probe = copy.deepcopy(net_a)
    la, lb = [], []
    for s in torch.linspace(0, 1, 41):
        torch.nn.utils.vector_to_parameters((1 - s) * wa + s * wb, probe.parameters())
        r = both(probe)
        la.append(r["acc_a"])
        lb.append(r["acc_b"])
    curves["transfer straight line"] = {"step": list(range(41)), "acc_a": la, "acc_b": lb}
    summary("straight line A→B", la, lb)
    # sequential training: A fine-tuned on B
    for lr in args.ft_lrs:
        ft = copy.deepcopy(net_a)
        fa, fb = [both(ft)["acc_a"]], [both(ft)["acc_b"]]

        def cb(done, ft=ft, fa=fa, fb=fb):
            r = both(ft)
            fa.append(r["acc_a"])
            fb.append(r["acc_b"])
            ft.train()

        train(ft, Xtr[b_tr], Ytr[b_tr], updates=args.transfer_steps, lr=lr, seed=args.seed + 2,
              callback=cb, every=args.transfer_eval_every)
        curves[f"transfer fine-tune on B (lr {lr:g})"] = {"step": list(range(len(fa))), "acc_a": fa, "acc_b": fb}
        summary(f"fine-tune A on task B (lr {lr:g})", fa, fb, steps=args.transfer_steps)


# ----------------------------------------------------------------------------- output


def plots(curves, out: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in curves if k.startswith("mlp") or k.startswith("cnn")]
    if keys:
        ncols = min(4, len(keys))
        nrows = math.ceil(len(keys) / ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.0 * nrows), squeeze=False)
        for ax in axes.flat[len(keys):]:
            ax.axis("off")
        for ax, k in zip(axes.flat, keys):
            c = curves[k]
            ax.plot(c["step"], c["acc"], color="tab:blue", label="test acc (path)")
            ax.plot(c["step"], c["acc_projected"], color="tab:blue", ls="--", label="test acc (projected)")
            ax.set_ylim(0, 1)
            ax.set_xlabel("step")
            ax.set_title(k, fontsize=8)
            ax.set_ylabel("test accuracy", fontsize=7)
            ax2 = ax.twinx()
            ax2.plot(c["step"], c["distance"], color="tab:red", label="distance to hyperplane")
            ax2.tick_params(axis="y", colors="tab:red")
            ax2.set_ylabel("distance to hyperplane", color="tab:red", fontsize=7)
        axes[0][0].legend(fontsize=6, loc="lower left")
        fig.tight_layout()
        fig.savefig(out / "geodesic_paths.png", dpi=120)
        plt.close(fig)
    keys = [k for k in curves if k.startswith("transfer")]
    if keys:
        fig, ax = plt.subplots(figsize=(4.2, 4))
        for k in keys:
            ax.plot(curves[k]["acc_a"], curves[k]["acc_b"], marker=".", ms=3, label=k.replace("transfer ", ""))
        ax.set_xlabel("test accuracy, task A (digits 0-4)")
        ax.set_ylabel("test accuracy, task B (digits 5-9)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(out / "geodesic_transfer.png", dpi=120)
        plt.close(fig)


def _fmt(vals, digits=4):
    vals = [v for v in vals if v is not None]
    if not vals:
        return ""
    m = sum(vals) / len(vals)
    if len(vals) == 1:
        return f"{m:.{digits}f}"
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))
    return f"{m:.{digits}f} ± {sd:.{digits}f}"


def table(rows) -> str:
    """Markdown: mean ± sample std over seeds for every (experiment, sparsity, method)."""
    lines = ["| experiment | sparsity | method | seeds | test acc | updates | reached | final jump | "
             "path length (functional) | straight line (functional) | seconds |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    groups: dict = {}
    for r in rows:
        if r["experiment"] != "transfer":
            groups.setdefault((r["experiment"], r["sparsity"], r["method"]), []).append(r)
    for (exp, sp, method), rs in groups.items():
        get = lambda k: [r.get(k) for r in rs]  # noqa: E731
        reached = f"{sum(bool(r['reached']) for r in rs)}/{len(rs)}" if "reached" in rs[0] else ""
        lines.append(
            f"| {exp} | {sp:.3f} | {method} | {len(rs)} | {_fmt(get('test_acc'))} | {_fmt(get('updates'), 0)} | "
            f"{reached} | {_fmt(get('final_jump'), 3)} | {_fmt(get('path_length'), 2)} | "
            f"{_fmt(get('line_length'), 2)} | {_fmt(get('seconds'), 1)} |"
        )
    lines += ["", "| transfer method | best point: acc A | acc B | min | end: acc A | acc B |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        if r["experiment"] == "transfer":
            lines.append(f"| {r['method']} | {r['acc_a']:.4f} | {r['acc_b']:.4f} | {r['best_min_acc']:.4f} | "
                         f"{r['end_a']:.4f} | {r['end_b']:.4f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/geodesic_digits"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=3, help="seeds of the MLP experiment (CNN, transfer: one)")
    ap.add_argument("--sparsities", type=float, nargs="+", default=[0.7, 0.9])
    ap.add_argument("--dense-updates", type=int, default=1200)
    ap.add_argument("--task-updates", type=int, default=600)
    ap.add_argument("--steps", type=int, default=400, help="steps of the compensate walks")
    ap.add_argument("--cnn-steps", type=int, default=300)
    ap.add_argument("--cnn-batch", type=int, default=256, help="random batch per CNN step (metric cost)")
    ap.add_argument("--steps-eq7", type=int, default=500, help="max steps of the free Eq. 7 walks")
    ap.add_argument("--eps", type=float, default=0.04)
    ap.add_argument("--eps-eq7", type=float, default=0.04)
    ap.add_argument("--beta", type=float, default=0.01)
    ap.add_argument("--lanczos", type=int, default=40, help="Lanczos vectors (products with g) per step")
    ap.add_argument("--cnn-lanczos", type=int, default=20)
    ap.add_argument("--eval-every", type=int, default=25)
    ap.add_argument("--ft-lrs", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2],
                    help="Adam learning rates of the fine-tuning baselines (each is reported)")
    ap.add_argument("--transfer-steps", type=int, default=400)
    ap.add_argument("--transfer-betas", type=float, nargs="+", default=[0.1, 1.0])
    ap.add_argument("--transfer-eval-every", type=int, default=5)
    ap.add_argument("--only", choices=["mlp", "cnn", "transfer"], nargs="*", default=None)
    ap.add_argument("--force", action="store_true", help="overwrite an existing results.json")
    ap.add_argument("--replot", action="store_true", help="only rewrite table.md and the plots from results.json")
    args = ap.parse_args(argv)
    if args.replot:
        saved = json.loads((args.out / "results.json").read_text())
        (args.out / "table.md").write_text(table(saved["rows"]))
        plots(saved["curves"], args.out)
        print(table(saved["rows"]))
        return 0
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    if (args.out / "results.json").exists() and not args.force:
        print(f"{args.out}/results.json exists; pass --force to overwrite", file=sys.stderr)
        return 1
    rows, curves = [], {}
    t0 = time.perf_counter()
    todo = args.only or ["mlp", "cnn", "transfer"]
    if "mlp" in todo:
        for seed in range(args.seed, args.seed + args.seeds):
            run_sparsify(args, rows, curves, seed)
    if "cnn" in todo:
        run_cnn(args, rows, curves)
    if "transfer" in todo:
        run_transfer(args, rows, curves)
    total = time.perf_counter() - t0
    meta = {"command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "torch": torch.__version__, "python": platform.python_version(), "threads": 1, "seconds": total}
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows, "curves": curves}, indent=1))
    md = table(rows)
    (args.out / "table.md").write_text(md)
    plots(curves, args.out)
    print(md)
    print(f"total {total:.0f}s; wrote {args.out}/results.json, table.md, geodesic_paths.png, geodesic_transfer.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
