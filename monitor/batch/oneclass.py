"""Jobs ``aae``, ``wae``, ``deep-svdd``, ``ocnn``: one detector on Thyroid and Arrhythmia (the
``dagmm-*`` protocols) and on ``mnist-one-class``.

``mnist-one-class`` (../shared/PROTOCOLS.md): for each digit d, train on the d images of
MNIST train + valid, test on all 10,000 test images (d normal, every other digit
anomalous); ROC AUC per digit and the mean. Bar: mean AUC ≥ 0.948 (Deep SVDD, Ruff et al.
2018). Deep SVDD and OC-NN use Ruff et al.'s setup there (bias-free LeNet-type CNN,
``network="lenet"``; GCN-L1 + min-max preprocessing with the normal class's constants;
autoencoder pretraining), with fewer epochs so that ten digits fit a CPU budget; AAE and WAE
use small dense nets. The report prints the exact settings.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from monitor.batch import Job, register_job

MNIST_BAR_AUC = 0.948
#: Published mean AUCs on MNIST one-class (Ruff et al. 2018, Table 1) for context.
MNIST_PUBLISHED = {"Deep SVDD one-class": 0.948, "Deep SVDD soft-boundary": 0.937, "OC-SVM": 0.912,
                   "DCAE": 0.897, "AnoGAN": 0.913, "KDE": 0.814, "IsolationForest": 0.905}

TAB = {"epochs": 200, "batch_size": 64}
MN = {"epochs": 15, "batch_size": 128}
#: Ruff et al.'s MNIST setup (LeNet-type CNN, GCN-L1 + per-class min-max, AE pretraining, Adam,
#: weight decay 0.5e-6, batch 200) with fewer epochs so that ten digits fit a CPU budget: 50 epochs of
#: autoencoder pretraining at lr 1e-3 (divided by 10 after epoch 40), then 20 Deep SVDD epochs at
#: Ruff's lr 1e-4 (constant), which keeps the pretrained features (the SVDD phase at lr 1e-3 erodes them).
#: Chosen on the MNIST validation split (train on digit d of MNIST train, score the validation images;
#: monitor/experiments/oneclass_dev.py, one-class objective, seed 0), mean AUC over the ten digits:
#:   pretrain 30 @1e-3 (ms 20) + SVDD 30 @1e-3 (ms 20), the previous settings      0.9426
#:   pretrain 30 @1e-3 (ms 20) + SVDD 10 @1e-3                                      0.9427
#:     the same, pretraining weight decay 0.5e-3 (Ruff's AE)                        0.9425
#:   pretrain 50 @1e-3 (ms 40) + SVDD 10 @1e-3                                      0.9445
#:   pretrain 30 @1e-3 (ms 20) + SVDD 20 @1e-4                                      0.9453
#:   pretrain 50 @1e-3 (ms 40) + SVDD 20 @1e-4  (digits 2 / 5: 0.895 / 0.878)       0.9509
#:     the same, SVDD 10 @1e-4 (stopped after 4 digits, each lower)                 0.9483
#:     the same, rep_dim 64 (chosen; digits 2 / 5: 0.931 / 0.920)                   0.9587
#: Protocol (mnist-one-class, seed 0, 1 CPU thread, ~75 s/digit) with rep_dim 32, run after that
#: choice: one-class 0.9465 (digits 0.973 0.997 0.900 0.939 0.946 0.891 0.976 0.934 0.941 0.967),
#: soft-boundary (nu 0.1) 0.9357 (one-class was 0.9413 before). With rep_dim 64 (the job's one-class
#: now; the rule "adopt iff validation > 0.9509" was fixed before its protocol figure was read):
#: 0.9583 (digits 0.989 0.995 0.927 0.923 0.960 0.939 0.982 0.950 0.943 0.975).
#: Before: 30 + 30 epochs at lr 1e-3 gave 0.9413 one-class / 0.9435 soft-boundary; 60 + 60 epochs
#: 0.9348; Ruff et al.'s PyTorch settings exactly (150 + 150 epochs, lr 1e-4 with milestone 50,
#: pretraining weight decay 0.5e-3; on a GPU) 0.9361 / 0.9276.
LENET = {"network": "lenet", "rep_dim": 64, "preprocess": "gcn", "pretrain_epochs": 50, "pretrain_lr": 1e-3,
         "pretrain_lr_milestone": 40, "epochs": 20, "lr": 1e-4, "lr_milestone": None, "batch_size": 200,
         "weight_decay": 5e-7}
#: The soft-boundary objective keeps the earlier settings (30 + 30 epochs at lr 1e-3, divided by 10
#: after epoch 20, in both phases): on the same validation split, soft-boundary nu 0.1 gave 0.9454 with
#: them and 0.9329 with LENET's; its protocol figure with them is 0.9435.
LENET_SOFT = {"rep_dim": 32, "pretrain_epochs": 30, "pretrain_lr": None, "pretrain_lr_milestone": None,
              "epochs": 30, "lr": 1e-3, "lr_milestone": 20}
#: OC-NN on MNIST: the LeNet-type autoencoder of Deep SVDD pretrained with Ruff et al.'s autoencoder
#: settings (150 epochs, lr 1e-4, weight decay 0.5e-3, batch 200), frozen, and an RBF head
#: (``g="rbf"``) chosen on the MNIST validation split (train on digit d of MNIST train, score the
#: validation images; monitor/experiments/oneclass_dev.py). 128 units, all 10 digits: mean AUC 0.752 /
#: 0.887 / 0.940 / 0.886 / 0.826 at rbf_bandwidth 1 / 0.5 / 0.3 / 0.2 / 0.15. Then a head grid
#: (--head-grid; stopped after digits 0-2 for time): bandwidth 0.25 / 0.3 / 0.4 x 128 / 512 units x
#: nu 0.1 / 0.05; best 0.3, 512 units, nu 0.1 (0.975 on those digits; 128 units 0.966; 512 units was
#: better on each of the three). The sigmoid head of the paper on a LeNet encoder (30 pretraining
#: epochs at lr 1e-3) gave 0.6628 on the protocol (a hyperplane cannot enclose a class).
LENET_AE = {"network": "lenet", "ae_latent": 32, "preprocess": "gcn", "pretrain_epochs": 150, "pretrain_lr": 1e-4,
            "batch_size": 200, "weight_decay": 5e-4}
#: Per detector: "variants" (name -> params), optionally per family ("mnist_variants" replaces
#: "variants" on mnist-one-class), and per-dataset-family params ("tabular", "mnist").
DEFAULTS: dict[str, dict[str, Any]] = {
    "aae": {
        "variants": {"aae": {}},
        "tabular": {**TAB, "hidden": [32, 16], "latent_dim": 4},
        "mnist": {**MN, "hidden": [256, 64], "latent_dim": 16, "out_activation": "sigmoid"},
    },
    "wae": {
        "variants": {"wae": {}},
        "tabular": {**TAB, "hidden": [32, 16], "latent_dim": 4},
        "mnist": {**MN, "hidden": [256, 64], "latent_dim": 16, "out_activation": "sigmoid"},
    },
    "deep-svdd": {
        "variants": {"deep-svdd one-class": {"objective": "one-class"},
                     "deep-svdd soft-boundary": {"objective": "soft-boundary", "nu": 0.1}},
        "mnist_variants": {"deep-svdd one-class": {"objective": "one-class"},
                           "deep-svdd soft-boundary": {"objective": "soft-boundary", "nu": 0.1, **LENET_SOFT}},
        "tabular": {**TAB, "hidden": [32, 16], "rep_dim": 8, "pretrain_epochs": 100},
        "mnist": LENET,
    },
    "ocnn": {
        "variants": {"ocnn": {}},
        # on Thyroid the frozen-AE features gave AUC ~0.50; raw features with a linear g ~0.77 (2 seeds)
        "tabular": {**TAB, "hidden": 32, "pretrain_epochs": 0, "g": "linear", "nu": 0.1},
        # OC-NN with RBF units on the frozen LeNet-type encoder (LENET_AE above); and the paper's
        # sigmoid head on dense-AE features (0.7731). Earlier, a sigmoid head on the LeNet encoder,
        # frozen or trained end to end: 0.6628 and 0.6563.
        "mnist": {"hidden": 32, "nu": 0.1, "g": "sigmoid"},
        "mnist_variants": {
            "ocnn rbf lenet": {**LENET_AE, "freeze_encoder": True, "g": "rbf", "hidden": 512, "rbf_bandwidth": 0.3,
                               "epochs": 50, "lr": 1e-3},
            "ocnn dense": {**MN, "ae_hidden": [256], "ae_latent": 32, "pretrain_epochs": 10},
        },
    },
}


# --------------------------------------------------------------------------- mnist-one-class
def mnist_one_class_data(digit: int):
    """(X_train, X_test, y_test) for digit ``digit``: train = the digit's images of train + valid;
    test = all 10k test images, y_test = 1 for every other digit (anomalous)."""
    from streams.datasets import load_mnist

    (Xtr, ytr), (Xva, yva), (Xte, yte) = load_mnist(copy=False)
    X = np.concatenate([Xtr[ytr == digit], Xva[yva == digit]])
    return X, Xte, (yte != digit).astype(np.int8)


def evaluate_mnist_one_class(make_detector, digits, progress=None, save_dir: Path | None = None,
                             component: str | None = None, desc: str = "mnist-one-class") -> dict[str, Any]:
    """ROC AUC (and PR AUC) per digit for ``make_detector(digit)``; mean over digits."""
    from monitor.evaluation import pr_auc, roc_auc

    per_digit = []
    it = progress(list(digits), desc=desc, leave=False) if progress else digits
    for d in it:
        X, Xte, yte = mnist_one_class_data(int(d))
        det = make_detector(int(d))
        t0 = time.perf_counter()
        det.fit(X)
        t1 = time.perf_counter()
        s = det.score(Xte)[component or det.default_component_name()]
        t2 = time.perf_counter()
        per_digit.append({"digit": int(d), "roc_auc": roc_auc(yte, s), "pr_auc": pr_auc(yte, s),
                          "n_train": int(len(X)), "fit_s": t1 - t0, "score_s": t2 - t1})
        if save_dir is not None:
            det.save(Path(save_dir) / f"digit-{d}")
    aucs = [r["roc_auc"] for r in per_digit]
    return {"protocol": "mnist-one-class", "dataset": "mnist-one-class", "per_digit": per_digit,
            "mean_roc_auc": float(np.mean(aucs)), "std_roc_auc": float(np.std(aucs)),
            "runtime_s": float(sum(r["fit_s"] + r["score_s"] for r in per_digit))}


# --------------------------------------------------------------------------- the job
def run_oneclass(out_dir: Path, cfg: dict[str, Any], progress) -> dict[str, Any]:
    from models import get_detector
    from models.torch_base import torch_threads
    from monitor.protocols import tabular as tp
    from monitor.report import Report

    det_name = cfg["detector"]
    cls = get_detector(det_name)
    base = DEFAULTS.get(det_name, {"variants": {det_name: {}}, "tabular": {}, "mnist": {}})
    variants = cfg.get("variants") or base["variants"]
    mnist_variants = cfg.get("variants") or base.get("mnist_variants") or base["variants"]
    datasets = [cfg["data"]] if cfg.get("data") else list(cfg["datasets"])
    save = out_dir / "models" if cfg.get("save_models") else None
    tab_rows, mnist_rows, results = [], [], {}
    t_start = time.perf_counter()
    with torch_threads(cfg.get("threads")):
        for ds in datasets:
            fam = "mnist" if ds == "mnist-one-class" else "tabular"
            for vname, vparams in (mnist_variants if fam == "mnist" else variants).items():
                params = {**base.get(fam, {}), **(cfg.get(f"{fam}_params") or {}), **vparams}
                key = f"{vname} | {ds}"
                sd = save / vname.replace(" ", "-") / Path(str(ds)).stem if save else None
                if fam == "mnist":
                    res = evaluate_mnist_one_class(lambda d, p=params: cls(**{**p, "seed": int(cfg["seeds"][0])}),
                                                   cfg["digits"], progress, sd, desc=f"{vname} mnist")
                    res["params"] = params
                    mnist_rows.append({"detector": vname, "mean_roc_auc": res["mean_roc_auc"],
                                       "std_over_digits": res["std_roc_auc"],
                                       **{f"d{r['digit']}": r["roc_auc"] for r in res["per_digit"]},
                                       "runtime_s": round(res["runtime_s"], 1)})
                else:
                    res = tp.evaluate_detector(lambda s, p=params: cls(**{**p, "seed": s}), ds, cfg["seeds"],
                                               progress, save_dir=sd, desc=f"{vname} {ds}")
                    res["params"] = params
                    tab_rows.append(tp.summary_row(vname, res))
                results[key] = res
    verdict = []
    for r in mnist_rows:
        ok = r["mean_roc_auc"] >= MNIST_BAR_AUC
        digits_note = "" if len(cfg["digits"]) == 10 else f" (digits {cfg['digits']} only)"
        verdict.append(f"{r['detector']}: mnist-one-class mean AUC {r['mean_roc_auc']:.4f} "
                       f"{'≥' if ok else '<'} {MNIST_BAR_AUC} — bar {'reached' if ok else 'NOT reached'}{digits_note}.")
    rep = Report(f"anomon batch {cfg.get('_job', det_name)}")
    rep.text(f"Detector {det_name}, variants {list(variants)} (mnist-one-class: {list(mnist_variants)}); seeds {cfg['seeds']} on the tabular protocols "
             f"(mean ± std over seeds); mnist-one-class uses seed {cfg['seeds'][0]}.")
    if tab_rows:
        rep.heading("dagmm protocols (threshold at the test anomaly ratio)")
        rep.table(tab_rows)
    if mnist_rows:
        rep.heading("mnist-one-class: ROC AUC per normal digit")
        rep.table(mnist_rows)
        for v in verdict:
            rep.text(v, "good" if "reached" in v and "NOT" not in v else "bad")
        rep.text("Published means for context (Ruff et al. 2018, LeNet-type CNNs): "
                 + ", ".join(f"{k} {v:.3f}" for k, v in MNIST_PUBLISHED.items()), "note")
    rep.heading("Settings")
    rep.json({k: v.get("params") for k, v in results.items()})
    rep.write(out_dir)
    lines = [f"{r['detector']:26s} {r['dataset']}: F1 {r['f1']}  ROC AUC {r['roc_auc']}" for r in tab_rows]
    lines += [f"{r['detector']:26s} mnist-one-class: mean AUC {r['mean_roc_auc']:.4f}" for r in mnist_rows] + verdict
    return {"detector": det_name, "results": results, "tabular_table": tab_rows, "mnist_table": mnist_rows,
            "verdict": verdict, "summary": "\n".join(lines), "total_s": time.perf_counter() - t_start}


for _job, _desc in (
    ("aae", "adversarial autoencoder (JSD, discriminator on z)"),
    ("wae", "Wasserstein autoencoder (MMD, IMQ kernel)"),
    ("deep-svdd", "Deep SVDD, one-class and soft-boundary"),
    ("ocnn", "one-class neural network (OC-NN)"),
):
    register_job(Job(
        name=_job,
        description=f"{_desc} on dagmm-thyroid, dagmm-arrhythmia and mnist-one-class",
        run=run_oneclass,
        defaults={"detector": _job, "datasets": ["thyroid", "arrhythmia", "mnist-one-class"],
                  "digits": list(range(10)), "data": None, "variants": None,
                  "tabular_params": {}, "mnist_params": {}},
    ))
