"""Linear-Gaussian benchmark: the continuous world model against python-control and filterpy.

All on the double integrator (A = [[1, .1], [0, 1]], B = [[.005], [.1]], W = diag(1e-4, 1e-2),
Q = I, R = 0.1, γ = 0.95), logs of exciting inputs u ~ N(0, 1) in episodes of 100 steps:

1. Fit: ``GaussianWorldModel(...).fit`` (joint Gaussian of (x, u, x') + quadratic reward,
   dynamics through the origin) against the least-squares estimate of (A, B, W) with
   ``numpy.linalg.lstsq`` on the same transitions; both estimates are checked equal.
2. Solve: ``model.solve(0.95)`` (Riccati by policy iteration on the learned conditional) and
   the same with value iteration, against ``control.dlqr(√γ Â, √γ B̂, Q, R)`` on the learned
   matrices (python-control solves the Riccati equation only; the constant c = γ tr(WP)/(1-γ)
   is then one line); max |P - P_dlqr| reported.
3. Filter: ``model.filter`` (T = 1000 steps, C = [1, 0], V = 0.01) against filterpy's
   ``KalmanFilter`` predict/update loop and ``LinearGaussianSystem.kalman_filter`` on the same
   observations; max |mean difference| reported.
4. Accuracy of V(x0 = (1, 0)) against the number of transitions (1k ... 100k), 10 seeds per size
   (medians and the worst), as a table and the plot ``benchmarks/linear_gaussian_accuracy.png``.

Timings are medians over ``--repeats`` runs (the machine is shared: read ratios, not absolutes).

    PYTHONPATH=. python benchmarks/bench_linear_gaussian.py
    PYTHONPATH=. python benchmarks/bench_linear_gaussian.py --quick --markdown /tmp/lg.md
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from _common import Report, fmt_ratio, fmt_s, machine, per_call  # noqa: E402

from spmn.reference import LinearGaussianSystem  # noqa: E402
from spmn.worldmodels.gaussian.model import GaussianWorldModel, transitions_from_system  # noqa: E402

A = np.array([[1.0, 0.1], [0.0, 1.0]])
B = np.array([[0.005], [0.1]])
W = np.diag([1e-4, 1e-2])
Q, R, GAMMA = np.eye(2), np.array([[0.1]]), 0.95
X0 = np.array([1.0, 0.0])
PLOT = os.path.join(HERE, "linear_gaussian_accuracy.png")
SYSTEM = LinearGaussianSystem(A, B, W)


def _model() -> GaussianWorldModel:
    return GaussianWorldModel(["x0", "x1"], ["u0"], "r", intercept=False)


def _lstsq(logs):
    Z = np.stack([logs["x0"], logs["x1"], logs["u0"]], axis=1)
    Y = np.stack([logs["x0_next"], logs["x1_next"]], axis=1)
    theta, *_ = np.linalg.lstsq(Z, Y, rcond=None)
    res = Y - Z @ theta
    return theta.T, res.T @ res / Z.shape[0]


def bench_fit_solve(rep: Report, sizes, repeats: int) -> None:
    import control

    fit_rows, solve_rows = [], []
    for n in sizes:
        logs = transitions_from_system(SYSTEM, n, cost=(Q, R), seed=0)
        t_ours, model = per_call(lambda: _model().fit(logs), repeats)
        t_cost, _ = per_call(lambda: GaussianWorldModel(["x0", "x1"], ["u0"], None, cost=(Q, R),
                                                        intercept=False).fit(logs), repeats)
        t_ls, (theta, W_ls) = per_call(lambda: _lstsq(logs), repeats)
        d = model.linear_dynamics()
        err = max(np.abs(d.A - theta[:, :2]).max(), np.abs(d.B - theta[:, 2:]).max(),
                  np.abs(d.W - W_ls).max())
        fit_rows.append([f"{n:,}", fmt_s(t_ours), fmt_s(t_cost), fmt_s(t_ls),
                         fmt_ratio(t_cost / t_ls), f"{err:.1e}"])
        t_pi, sol = per_call(lambda: model.solve(GAMMA), repeats, 0.2)
        t_vi, vi = per_call(lambda: model.solve(GAMMA, method="value_iteration"), repeats, 0.2)
        g = np.sqrt(GAMMA)
        t_ctl, (K, P, _) = per_call(lambda: control.dlqr(g * d.A, g * d.B, Q, R), repeats, 0.2)
        solve_rows.append([f"{n:,}", fmt_s(t_pi), fmt_s(t_vi), fmt_s(t_ctl),
                           fmt_ratio(t_pi / t_ctl), f"{np.abs(sol.P - P).max():.1e}",
                           f"{np.abs(vi.P - P).max():.1e}", f"{np.abs(sol.K - K).max():.1e}"])
    rep.table("Fit: GaussianWorldModel.fit vs numpy least squares (same transitions)",
              ["transitions", "ours (reward learned)", "ours (cost given)", "lstsq",
               "ours (cost given) / lstsq", "max abs Δ(A, B, W)"], fit_rows,
              "ours = one joint Gaussian of (x, u, x'), validated as a circuit leaf; 'reward "
              "learned' adds the least-squares quadratic reward (10 monomials); lstsq = (A, B) "
              "and the residual covariance only.")
    rep.table("Solve: exact Bellman updates on the learned model vs python-control dlqr",
              ["transitions", "ours (policy it.)", "ours (value it.)", "control.dlqr",
               "ours PI / dlqr", "max abs ΔP (PI)", "max abs ΔP (VI)", "max abs ΔK (PI)"],
              solve_rows,
              "Same learned matrices; dlqr solves the undiscounted DARE of (√γA, √γB); Δ = ours − "
              "dlqr.")


def bench_filter(rep: Report, T: int, repeats: int) -> None:
    from filterpy.kalman import KalmanFilter

    C, V = np.array([[1.0, 0.0]]), np.array([[0.01]])
    sys_obs = LinearGaussianSystem(A, B, W, C, V)
    rng = np.random.default_rng(1)
    u = rng.normal(size=(T, 1))
    y = sys_obs.simulate(np.zeros(2), u, seed=2).y
    model = GaussianWorldModel.from_system(A, B, W, cost=(Q, R))

    def filterpy_run():
        kf = KalmanFilter(dim_x=2, dim_z=1, dim_u=1)
        kf.x, kf.P, kf.F, kf.B, kf.Q, kf.H, kf.R = np.zeros(2), np.eye(2), A, B, W, C, V
        out = np.empty((T, 2))
        for t in range(T):
            if t:
                kf.predict(u=u[t - 1])
            kf.update(y[t])
            out[t] = kf.x
        return out

    t_ours, ours = per_call(lambda: model.filter(y, u, C, V), repeats)
    t_fp, fp = per_call(filterpy_run, repeats)
    t_ref, ref = per_call(lambda: sys_obs.kalman_filter(y, u), repeats)
    rows = [[f"{T:,}", fmt_s(t_ours), fmt_s(t_fp), fmt_s(t_ref), fmt_ratio(t_ours / t_fp),
             f"{np.abs(ours.means - fp).max():.1e}", f"{np.abs(ours.means - ref.means).max():.1e}",
             f"{ours.loglik:.6f}", f"{ref.loglik:.6f}"]]
    rep.table("Filter: model.filter vs filterpy KalmanFilter and the reference Kalman filter",
              ["steps", "ours", "filterpy", "reference", "ours / filterpy",
               "max abs Δmean (filterpy)", "max abs Δmean (reference)", "loglik ours",
               "loglik reference"], rows,
              "C = [1, 0], V = 0.01, prior N(0, I); filterpy has no log-likelihood of the whole "
              "sequence (its per-step `log_likelihood` is not accumulated here).")


def bench_accuracy(rep: Report, sizes, seeds: int, plot: str | None) -> None:
    v_true = float(SYSTEM.lqr(Q, R, GAMMA).value(X0))
    rows, med, worst = [], [], []
    for n in sizes:
        errs = []
        for s in range(seeds):
            logs = transitions_from_system(SYSTEM, n, cost=(Q, R), seed=1000 + s)
            v = _model().fit(logs).solve(GAMMA).cost(X0)
            errs.append(abs(v - v_true) / v_true)
        med.append(statistics.median(errs))
        worst.append(max(errs))
        rows.append([f"{n:,}", f"{100 * med[-1]:.3f}%", f"{100 * worst[-1]:.3f}%"])
    rep.table(f"Accuracy of V(x0 = (1, 0)) (true {v_true:.6f}) against the number of transitions",
              ["transitions", f"median abs. rel. error ({seeds} seeds)", "worst"], rows)
    if plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        ax.loglog(sizes, 100 * np.array(med), "o-", label="median")
        ax.loglog(sizes, 100 * np.array(worst), "s--", label="worst of seeds")
        ax.loglog(sizes, 100 * med[0] * np.sqrt(sizes[0] / np.array(sizes)), ":", color="gray",
                  label="∝ 1/√N")
        ax.axhline(1.0, color="red", lw=0.8, label="1%")
        ax.set_xlabel("logged transitions")
        ax.set_ylabel("|V̂(x0) − V(x0)| / V(x0)  [%]")
        ax.set_title("Double integrator: learned GaussianWorldModel")
        ax.legend()
        fig.tight_layout()
        fig.savefig(plot, dpi=120)
        rep.text(f"\nplot: {os.path.relpath(plot, os.path.dirname(HERE))}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, 2 seeds, 1 repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--markdown", help="also write the tables to this file")
    ap.add_argument("--plot", default=PLOT, help="accuracy plot path ('' for none)")
    args = ap.parse_args(argv)
    rep = Report()
    rep.text(f"machine: {machine()}")
    repeats = 1 if args.quick else args.repeats
    bench_fit_solve(rep, [20_000] if args.quick else [20_000, 100_000], repeats)
    bench_filter(rep, 1000, repeats)
    sizes = [1_000, 10_000] if args.quick else \
        [1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000]
    bench_accuracy(rep, sizes, 2 if args.quick else 10, args.plot or None)
    if args.markdown:
        rep.write(args.markdown)


if __name__ == "__main__":
    main()
