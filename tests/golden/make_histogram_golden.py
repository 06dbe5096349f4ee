#!/usr/bin/python3
"""Golden values for quant/histogram_observer and quant/percentile_observer: torch 1.13's
HistogramObserver (running histogram, combine step, L2 range search, qparams) and the percentile
rule (torch.quantile, linear) with a moving average. Run with Debian's python3 (torch 1.13):
    /usr/bin/python3 tests/golden/make_histogram_golden.py > tests/golden/histogram.json
"""
import json

import torch
from torch.ao.quantization.observer import HistogramObserver, MinMaxObserver

torch.manual_seed(0)


def f32(t):
    return [float(v) for v in t.reshape(-1).tolist()]


def data_sets():
    return {
        "one_batch": [torch.randn(300) * 2.5],
        "growing": [torch.randn(200), torch.randn(200) * 3 + 1, torch.randn(250) * 8 - 2],
        # Second batch inside the first one's range: the histograms are added (no combine).
        "shrinking": [torch.randn(300) * 4, torch.randn(200) * 0.5],
        "one_sided": [torch.rand(200) * 5, torch.rand(200) * 9, torch.rand(100) * 2],
        "small_range": [torch.rand(200) * 0.8 + 0.1, torch.rand(200) * 0.9],
        "constant": [torch.full((100,), 1.7)],
        "constant_then_data": [torch.full((50,), -0.3), torch.randn(200)],
        "outliers": [torch.cat([torch.randn(400), torch.tensor([40.0, -25.0])])],
    }


CONFIGS = [
    ("int8_affine", torch.qint8, torch.per_tensor_affine),
    ("uint8_affine", torch.quint8, torch.per_tensor_affine),
    ("int8_symmetric", torch.qint8, torch.per_tensor_symmetric),
    ("uint8_symmetric", torch.quint8, torch.per_tensor_symmetric),
]


def nonzero_bins(h):
    idx = torch.nonzero(h).reshape(-1)
    return [[int(i), float(h[i])] for i in idx.tolist()]


def histogram_cases(sets):
    cases = []
    for dname, batches in sets.items():
        for cname, dtype, scheme in CONFIGS:
            obs = HistogramObserver(dtype=dtype, qscheme=scheme)
            steps = []
            for b in batches:
                obs(b)
                step = {"min": float(obs.min_val), "max": float(obs.max_val)}
                if cname == "int8_affine":  # the histogram does not depend on the qparams spec
                    step["histogram"] = nonzero_bins(obs.histogram)
                steps.append(step)
            new_min, new_max = obs._non_linear_param_search()
            scale, zp = obs.calculate_qparams()
            cases.append({"name": f"{dname}/{cname}", "data": dname, "dtype": "uint8" if dtype == torch.quint8 else "int8",
                          "symmetric": scheme == torch.per_tensor_symmetric, "steps": steps,
                          "search_min": float(new_min), "search_max": float(new_max),
                          "scale": float(scale), "zero_point": int(zp)})
    return cases


def percentile_cases(sets):
    cases = []
    for dname in ("growing", "outliers", "one_sided", "constant"):
        for p, c in ((0.01, 0.01), (1.0, 0.5), (0.0, 1.0)):
            for cname, dtype, scheme in CONFIGS[:3]:
                lo_q, hi_q = p / 100.0, 1.0 - p / 100.0
                min_val = max_val = None
                steps = []
                for b in sets[dname]:
                    lo, hi = torch.quantile(b, lo_q), torch.quantile(b, hi_q)
                    if min_val is None:
                        min_val, max_val = lo, hi
                    else:
                        min_val = min_val + c * (lo - min_val)
                        max_val = max_val + c * (hi - max_val)
                    steps.append({"min": float(min_val), "max": float(max_val)})
                scale, zp = MinMaxObserver(dtype=dtype, qscheme=scheme)._calculate_qparams(min_val, max_val)
                cases.append({"name": f"{dname}/p{p}/c{c}/{cname}", "data": dname, "percentile": p,
                              "averaging_constant": c, "dtype": "uint8" if dtype == torch.quint8 else "int8",
                              "symmetric": scheme == torch.per_tensor_symmetric, "steps": steps,
                              "scale": float(scale), "zero_point": int(zp)})
    return cases


def quantile_cases():
    x = torch.randn(101) * 3
    y = torch.randn(7)
    out = []
    for name, t in (("randn101", x), ("randn7", y)):
        for q in (0.0, 0.0001, 0.01, 0.1, 0.25, 0.5, 0.73, 0.9, 0.9999, 1.0):
            out.append({"name": name, "x": f32(t), "q": q, "value": float(torch.quantile(t, q))})
    return out


def main():
    sets = data_sets()
    golden = {
        "data": {k: [f32(b) for b in v] for k, v in sets.items()},
        "histogram": histogram_cases(sets),
        "percentile": percentile_cases(sets),
        "quantile": quantile_cases(),
    }
    print(json.dumps(golden))


if __name__ == "__main__":
    main()
