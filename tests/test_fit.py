"""The robust fit: the non-rigid field beats the best affine on real SpaceNet 9 geometry."""

from __future__ import annotations

import numpy as np
import pytest
import sn9_geometry as g

from sn9cloud.engine.fit import DisplacementField, fit_field, fit_tps, irls_affine


def _loo_px(name: str) -> tuple[float, float]:
    s = g.load(name)
    p, d = s.opt_xy, s.sar_xy - s.opt_xy
    centre, scale = p.mean(axis=0), float(np.ptp(p, axis=0).max())
    u = (p - centre) / scale
    h = np.column_stack([u, np.ones(len(u))])
    a = irls_affine(u, d, iters=0)
    r = d - h @ a.T
    hat = h @ np.linalg.pinv(h.T @ h) @ h.T
    loo_aff = r / (1 - np.diag(hat))[:, None]
    tps = fit_tps(u, r)
    px = s.opt_transform.a
    return (float(np.mean(np.hypot(*loo_aff.T))) / px,
            float(np.mean(np.hypot(*tps.loo_residuals.T))) / px)


@pytest.mark.parametrize("name", g.NAMES)
def test_nonrigid_leave_one_out_beats_affine_on_real_tiepoints(data, name: str) -> None:
    affine_px, tps_px = _loo_px(name)
    assert tps_px <= 17.0, f"{name}: non-rigid LOO {tps_px:.1f} px"
    assert tps_px < affine_px


def test_tps_leave_one_out_closed_form_matches_explicit_refits(data) -> None:
    s = g.load("03_tiepoints_train_01")
    p, d = s.opt_xy[:40], (s.sar_xy - s.opt_xy)[:40]
    u = (p - p.mean(0)) / np.ptp(p, 0).max()
    f = fit_tps(u, d, lambdas=(1e-3,))
    from sn9cloud.engine.fit import _sqdist, _tps_kernel, _tps_solve
    for i in (0, 7, 23):
        keep = np.arange(len(u)) != i
        fi = _tps_solve(u[keep], d[keep], 1e-3, want_loo=False)
        pred = (_tps_kernel(_sqdist(u[i:i + 1], u[keep])) @ fi.weights
                + np.array([[*u[i], 1.0]]) @ fi.poly)
        np.testing.assert_allclose(d[i] - pred[0], f.loo_residuals[i], atol=1e-6)


def test_fit_field_rejects_outliers_and_recovers_a_smooth_field() -> None:
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 1000, (300, 2))
    true = np.column_stack([5 + 0.01 * src[:, 0] + 8 * np.sin(src[:, 1] / 300),
                            -3 + 6 * np.cos(src[:, 0] / 400)])
    disp = true + rng.normal(0, 0.3, true.shape)
    bad = rng.choice(300, 40, replace=False)
    disp[bad] += rng.uniform(-40, 40, (40, 2))
    fit = fit_field(src, disp, "nonrigid", threshold=1.5, gate=3.0, block=60.0)
    assert not fit.inliers[bad].any() or fit.inliers[bad].mean() < 0.1
    grid = rng.uniform(100, 900, (500, 2))
    gt = np.column_stack([5 + 0.01 * grid[:, 0] + 8 * np.sin(grid[:, 1] / 300),
                          -3 + 6 * np.cos(grid[:, 0] / 400)])
    err = np.hypot(*(fit.field(grid) - gt).T)
    assert err.mean() < 0.5
    affine = fit_field(src, disp, "affine", threshold=1.5, gate=3.0)
    assert np.hypot(*(affine.field(grid) - gt).T).mean() > 2 * err.mean()
    # the field survives serialisation unchanged
    again = DisplacementField.from_dict(fit.field.to_dict())
    np.testing.assert_allclose(again(grid), fit.field(grid))
