"""State probes: how much of the world state a frozen representation holds, split by episode.

A probe regresses ground-truth state quantities (world-frame hand and target positions, target
- hand, joint angles; :mod:`worldmodel.eval.probe_data`) from frozen features of single frames
(or of a few views of the same episode) and reports the held-out R² per quantity. Train and test
are split by *episode*, and so are the ridge's cross-validation folds and the MLP's early-stopping
split: frames of one episode share a target, so any frame split leaks it.

Two probes per representation: a ridge regression (scikit-learn ``RidgeCV`` over a grid of
penalties, group-K-fold by episode) and a small MLP (torch: 2 hidden layers, Adam, weight decay,
early stopping on held-out *episodes* of the training part, which scikit-learn's
``MLPRegressor(early_stopping=True)`` cannot do: its validation split is by sample).

Baselines measured in the same run (:func:`run_probe`): PCA of raw pixels, the same with the
viewpoint appended, and any other encoders (the same architecture untrained, the control).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from worldmodel.eval.probe_data import ProbeFrames

#: Ridge penalties searched by cross-validation, per 100 standardised features (scaled by the
#: feature count, so the grid suits 10 features and 10^4 alike).
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-3, 5, 17))


@dataclass(frozen=True)
class ProbeConfig:
    """Settings of the probes (shared by every representation of a run)."""

    test_fraction: float = 0.25
    """Fraction of the episodes held out for testing."""
    folds: int = 5
    """Group-K-fold folds (by episode) of the ridge's penalty search."""
    pca_components: int = 256
    """Components of the raw-pixel PCA baselines (fit on the training frames only)."""
    mlp_hidden: int = 256
    """Width of the MLP probe's two hidden layers."""
    mlp_epochs: int = 150
    """Largest number of epochs of the MLP probe."""
    mlp_patience: int = 15
    """Epochs without validation improvement before the MLP probe stops (best weights kept)."""
    mlp_weight_decay: float = 1e-3
    """AdamW weight decay of the MLP probe."""
    mlp_lr: float = 1e-3
    """Learning rate of the MLP probe."""
    seed: int = 0
    """Seed of the episode split and of the MLP probe."""

    def __post_init__(self) -> None:
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.folds < 2:
            raise ValueError(f"folds must be >= 2, got {self.folds}")
        for name in ("pca_components", "mlp_hidden", "mlp_epochs", "mlp_patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def episode_split(episodes: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean test mask ``[N]``: a random ``test_fraction`` of the distinct episodes (all their frames)."""
    unique = np.unique(episodes)
    if unique.size < 4:
        raise ValueError(f"an episode split needs at least 4 episodes, got {unique.size}")
    rng = np.random.default_rng(seed)
    n_test = max(1, int(round(test_fraction * unique.size)))
    test_eps = rng.choice(unique, size=n_test, replace=False)
    return np.isin(episodes, test_eps)


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)
    return (train - mean) / std, (test - mean) / std


def r2_per_dim(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Coefficient of determination of each output column (scikit-learn's ``r2_score``, raw values)."""
    from sklearn.metrics import r2_score

    return np.atleast_1d(r2_score(y_true, y_pred, multioutput="raw_values"))


def _ridge_predictions(x_fit: np.ndarray, y_fit: np.ndarray, x_eval: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Ridge predictions ``[A, n_eval, q]`` for every penalty at once, from one eigendecomposition.

    Features and targets are centred on the fit set (the intercept is not penalised). With more
    features than samples the kernel form is used (``K = X X^T``), else the primal
    (``X^T X``), so the cost is one ``min(n, p)``-square decomposition per fit set.
    """
    xm, ym = x_fit.mean(axis=0), y_fit.mean(axis=0)
    x, y, xe = x_fit - xm, y_fit - ym, x_eval - xm
    if x.shape[0] <= x.shape[1]:
        lam, u = np.linalg.eigh(x @ x.T)
        left, right = (xe @ x.T) @ u, u.T @ y
    else:
        lam, u = np.linalg.eigh(x.T @ x)
        left, right = xe @ u, u.T @ (x.T @ y)
    lam = np.clip(lam, 0.0, None)
    return np.stack([left @ (right / (lam + a)[:, None]) for a in alphas]) + ym


def ridge_probe(
    x_train: np.ndarray, y_train: np.ndarray, groups: np.ndarray, x_test: np.ndarray, folds: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression on standardised features with a penalty per output column chosen by
    group-K-fold (by episode) cross-validation over :data:`RIDGE_ALPHAS`.

    Same estimator as scikit-learn's ``RidgeCV(alpha_per_target=True)`` with group folds, written
    as one eigendecomposition per fold for all penalties and outputs: with 10^4-d features
    scikit-learn refits each (penalty, fold) pair, minutes per probe. Returns (test predictions
    ``[n_test, q]``, chosen penalty per column ``[q]``).
    """
    from sklearn.model_selection import GroupKFold

    y2 = y_train.reshape(len(y_train), -1).astype(np.float64)
    xs, xt = _standardise(x_train.astype(np.float64), x_test.astype(np.float64))
    alphas = np.asarray(RIDGE_ALPHAS) * xs.shape[1] / 100.0  # penalties relative to the feature count
    n_folds = min(folds, np.unique(groups).size)
    err = np.zeros((alphas.size, y2.shape[1]))
    for fit, held in GroupKFold(n_splits=n_folds).split(xs, y2, groups):
        pred = _ridge_predictions(xs[fit], y2[fit], xs[held], alphas)
        err += ((pred - y2[held]) ** 2).sum(axis=1)
    best = err.argmin(axis=0)
    pred_all = _ridge_predictions(xs, y2, xt, alphas)
    pred = pred_all[best, :, np.arange(y2.shape[1])].T
    return pred.reshape((len(x_test),) + y_train.shape[1:]), alphas[best]


def mlp_probe(
    x_train: np.ndarray, y_train: np.ndarray, groups: np.ndarray, x_test: np.ndarray, config: ProbeConfig
) -> tuple[np.ndarray, int]:
    """Predictions on ``x_test`` of a 2-hidden-layer MLP; early stopping on held-out training
    episodes (a fifth of them). Returns (predictions, epochs trained)."""
    import torch
    from torch import nn

    xs, xt = _standardise(x_train.astype(np.float64), x_test.astype(np.float64))
    y_mean, y_std = y_train.mean(axis=0), np.where(y_train.std(axis=0) > 1e-12, y_train.std(axis=0), 1.0)
    ys = (y_train - y_mean) / y_std
    val = episode_split(groups, 0.2, config.seed + 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        h = config.mlp_hidden
        net = nn.Sequential(nn.Linear(xs.shape[1], h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, ys.shape[1]))
        opt = torch.optim.AdamW(net.parameters(), lr=config.mlp_lr, weight_decay=config.mlp_weight_decay)
        xtr = torch.as_tensor(xs[~val], dtype=torch.float32)
        ytr = torch.as_tensor(ys[~val], dtype=torch.float32)
        xva = torch.as_tensor(xs[val], dtype=torch.float32)
        yva = torch.as_tensor(ys[val], dtype=torch.float32)
        gen = torch.Generator().manual_seed(config.seed)
        best, best_state, since, epochs = math.inf, None, 0, 0
        for epoch in range(config.mlp_epochs):
            net.train()
            for idx in torch.randperm(xtr.shape[0], generator=gen).split(256):
                opt.zero_grad(set_to_none=True)
                nn.functional.mse_loss(net(xtr[idx]), ytr[idx]).backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                loss = float(nn.functional.mse_loss(net(xva), yva))
            epochs = epoch + 1
            if loss < best - 1e-5:
                best, since = loss, 0
                best_state = {k: v.clone() for k, v in net.state_dict().items()}
            else:
                since += 1
                if since >= config.mlp_patience:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        with torch.no_grad():
            pred = net(torch.as_tensor(xt, dtype=torch.float32)).numpy().astype(np.float64)
    return pred * y_std + y_mean, epochs


# --------------------------------------------------------------------------- representations

#: A representation: (records, test mask) -> (train features, test features).
FeatureFn = Callable[[ProbeFrames, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _pixels(data: ProbeFrames) -> np.ndarray:
    return data.frames.reshape(len(data), -1).astype(np.float32) / 255.0


def pixel_pca_features(components: int, with_viewpoint: bool = False) -> FeatureFn:
    """PCA of the raw pixels (fit on the training frames only), optionally with the 7-d viewpoint appended."""

    def features(data: ProbeFrames, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.decomposition import PCA

        x = _pixels(data)
        n = min(components, int((~test).sum()) - 1, x.shape[1])
        pca = PCA(n_components=n, svd_solver="randomized", random_state=0).fit(x[~test])
        z = pca.transform(x)
        if with_viewpoint:
            from envs.camera import viewpoint7

            z = np.concatenate([z, viewpoint7(data.viewpoints)], axis=1)
        return z[~test], z[test]

    return features


def encoder_features(encoder: Any, views: int = 1, batch_size: int = 256) -> FeatureFn:
    """Frozen features of each record's frame; with ``views > 1`` the mean of the features of the
    frame and its ``views - 1`` preceding context frames (a GQN's r aggregates views by a sum)."""
    if views < 1:
        raise ValueError(f"views must be >= 1, got {views}")

    def features(data: ProbeFrames, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = encode_records(encoder, data, views, batch_size)
        return z[~test], z[test]

    return features


def encode_records(encoder: Any, data: ProbeFrames, views: int = 1, batch_size: int = 256) -> np.ndarray:
    """Features ``[N, D]`` of every record (mean over the last ``views`` views of its episode)."""
    if views > 1:
        have = 0 if data.context_frames is None else data.context_frames.shape[1]
        if have < views - 1:
            raise ValueError(f"{views} views need {views - 1} context frames per record; the probe frames hold {have}")
    out = []
    for start in range(0, len(data), batch_size):
        sl = slice(start, start + batch_size)
        acc = encoder.encode_numpy(data.frames[sl], data.viewpoints[sl]).astype(np.float64)
        for j in range(1, views):
            acc += encoder.encode_numpy(data.context_frames[sl, -j], data.context_viewpoints[sl, -j])
        out.append(acc / views)
    return np.concatenate(out).astype(np.float32)


# --------------------------------------------------------------------------- the run


def probe_representation(
    features: FeatureFn,
    data: ProbeFrames,
    test: np.ndarray,
    config: ProbeConfig,
    probes: tuple[str, ...] = ("ridge", "mlp"),
) -> dict[str, Any]:
    """Held-out R² of each probe and quantity for one representation.

    Each probe is fit once for all quantities together (their columns side by side; the ridge
    picks a penalty per column, the MLP's outputs are standardised), then scored per quantity.
    """
    x_train, x_test = features(data, test)
    groups = data.episodes[~test]
    names = list(data.quantities)
    widths = [data.quantities[n].shape[1] for n in names]
    y = np.concatenate([data.quantities[n] for n in names], axis=1)
    cuts = np.cumsum([0, *widths])
    result: dict[str, Any] = {"feature_dim": int(x_train.shape[1]), "probes": {}}
    for probe in probes:
        if probe == "ridge":
            pred, alpha = ridge_probe(x_train, y[~test], groups, x_test, config.folds)
            extra = [{"alpha": [float(a) for a in alpha[cuts[i] : cuts[i + 1]]]} for i in range(len(names))]
        elif probe == "mlp":
            pred, epochs = mlp_probe(x_train, y[~test], groups, x_test, config)
            extra = [{"epochs": epochs} for _ in names]
        else:
            raise ValueError(f"unknown probe {probe!r}; valid values: 'ridge', 'mlp'")
        dims = r2_per_dim(y[test], pred)
        result["probes"][probe] = {
            n: {
                "r2": float(dims[cuts[i] : cuts[i + 1]].mean()),
                "r2_per_dim": [float(d) for d in dims[cuts[i] : cuts[i + 1]]],
                **extra[i],
            }
            for i, n in enumerate(names)
        }
    return result


def best_r2(result: Mapping[str, Any], quantity: str) -> float:
    """The better of the probes' held-out R² of ``quantity`` for one representation's result."""
    return max(p[quantity]["r2"] for p in result["probes"].values())


def run_probe(
    data: ProbeFrames,
    representations: Mapping[str, FeatureFn],
    config: ProbeConfig | None = None,
    probes: tuple[str, ...] = ("ridge", "mlp"),
    progress: bool = True,
) -> dict[str, Any]:
    """Probe every representation on the same episode split; a JSON-ready result.

    Returns ``{"config", "data", "split", "representations": {name: {"feature_dim", "probes":
    {probe: {quantity: {"r2", "r2_per_dim", ...}}}, "best": {quantity: r2}}}}``.
    """
    from tqdm.auto import tqdm

    config = config or ProbeConfig()
    test = episode_split(data.episodes, config.test_fraction, config.seed)
    out: dict[str, Any] = {
        "config": asdict(config),
        "data": dict(data.info, records=len(data)),
        "split": {
            "by": "episode",
            "train_episodes": int(np.unique(data.episodes[~test]).size),
            "test_episodes": int(np.unique(data.episodes[test]).size),
            "train_records": int((~test).sum()),
            "test_records": int(test.sum()),
        },
        "quantities": {k: int(v.shape[1]) for k, v in data.quantities.items()},
        "representations": {},
    }
    for name, fn in tqdm(representations.items(), desc="probing representations", disable=not progress):
        res = probe_representation(fn, data, test, config, probes)
        res["best"] = {q: best_r2(res, q) for q in data.quantities}
        out["representations"][name] = res
    return out


def plot_probe(result: Mapping[str, Any], path: str) -> None:
    """Bar plot of the best held-out R² per quantity and representation (ridge hatched beside it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reps = list(result["representations"])
    quantities = list(result["quantities"])
    width = 0.8 / max(1, len(reps))
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(quantities), 3.6))
    for i, rep in enumerate(reps):
        res = result["representations"][rep]
        xs = np.arange(len(quantities)) + (i - (len(reps) - 1) / 2) * width
        best = [res["best"][q] for q in quantities]
        bars = ax.bar(
            xs, [max(v, -0.1) for v in best], width * 0.95, label=rep
        )  # axis floor -0.1; label the true value
        if "ridge" in res["probes"]:
            ridge = [max(res["probes"]["ridge"][q]["r2"], -0.1) for q in quantities]
            ax.scatter(xs, ridge, marker="_", s=120, color="k", zorder=3, label="ridge" if i == 0 else None)
        for b, v in zip(bars, best):
            ax.text(
                b.get_x() + b.get_width() / 2, max(v, -0.1) + 0.01, f"{v:.2f}", ha="center", va="bottom", fontsize=6
            )
    ax.set_xticks(np.arange(len(quantities)), quantities)
    ax.set_ylabel("held-out R² (better probe; bar)")
    ax.set_ylim(-0.1, 1.05)
    ax.axhline(0, color="k", lw=0.5)
    info = result.get("data", {})
    ax.set_title(
        f"state probes, {info.get('env_id', '')} {info.get('camera', '')} camera, split by episode", fontsize=9
    )
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
