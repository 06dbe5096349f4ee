#!/usr/bin/python3
"""Golden values for quant/ (qparams, quantize, dequantize, fake quantize) from PyTorch's
torch.ao.quantization numerics. Run with Debian's python3 (torch 1.13):
    /usr/bin/python3 tests/golden/make_quant_golden.py > tests/golden/quant.json
"""
import json

import torch
from torch.ao.quantization.observer import (MinMaxObserver, MovingAverageMinMaxObserver,
                                            MovingAveragePerChannelMinMaxObserver, PerChannelMinMaxObserver)

torch.manual_seed(0)


def f32(t):
    return [float(v) for v in t.reshape(-1).tolist()]


def ints(t):
    return [int(v) for v in t.reshape(-1).tolist()]


def inputs():
    base = torch.randn(64) * 3
    # Exact ties: x / scale lands on k + 0.5 for scale 0.5 -> x = 0.25 + 0.5 k.
    ties = torch.tensor([0.25 + 0.5 * k for k in range(-12, 12)], dtype=torch.float32)
    return {
        "randn": base,
        "ties": ties,
        "outside": torch.tensor([-1e6, -300.0, -2.5, 0.0, 1.0, 2.49, 300.0, 1e6]),
        "constant": torch.full((8,), 1.7),
        "constant_neg": torch.full((8,), -0.3),
        "zeros": torch.zeros(8),
        "positive": torch.rand(32) * 5 + 0.5,
    }


def per_tensor_cases():
    cases = []
    configs = [
        ("int8_affine", torch.qint8, torch.per_tensor_affine, -128, 127, False),
        ("uint8_affine", torch.quint8, torch.per_tensor_affine, 0, 255, False),
        ("int8_symmetric", torch.qint8, torch.per_tensor_symmetric, -128, 127, False),
        ("int8_symmetric_restricted", torch.qint8, torch.per_tensor_symmetric, -127, 127, True),
        ("uint8_symmetric", torch.quint8, torch.per_tensor_symmetric, 0, 255, False),
        ("int4_affine", torch.qint8, torch.per_tensor_affine, -8, 7, True),
        ("int4_symmetric", torch.qint8, torch.per_tensor_symmetric, -8, 7, True),
    ]
    for name, data in inputs().items():
        for cname, dtype, scheme, qmin, qmax, custom in configs:
            kw = dict(dtype=dtype, qscheme=scheme)
            if custom:
                kw.update(quant_min=qmin, quant_max=qmax)
            obs = MinMaxObserver(**kw)
            obs(data)
            scale, zp = obs.calculate_qparams()
            case = {
                "name": f"{name}/{cname}", "x": f32(data), "qmin": qmin, "qmax": qmax,
                "dtype": "uint8" if dtype == torch.quint8 else "int8",
                "symmetric": scheme == torch.per_tensor_symmetric,
                "min": float(obs.min_val), "max": float(obs.max_val),
                "scale": float(scale), "zero_point": int(zp),
                "fake": f32(torch.fake_quantize_per_tensor_affine(data, float(scale), int(zp), qmin, qmax)),
            }
            if (qmin, qmax) in ((-128, 127), (0, 255)):
                q = torch.quantize_per_tensor(data, float(scale), int(zp), dtype)
                case["q"] = ints(q.int_repr())
                case["dq"] = f32(q.dequantize())
            cases.append(case)
    # Ties with a chosen odd and even zero point, to pin the rounding formula.
    for zp in (0, 1, 3, -3):
        data = inputs()["ties"]
        cases.append({
            "name": f"ties_zp{zp}", "x": f32(data), "qmin": -128, "qmax": 127, "dtype": "int8", "symmetric": False,
            "scale": 0.5, "zero_point": zp,
            "fake": f32(torch.fake_quantize_per_tensor_affine(data, 0.5, zp, -128, 127)),
            "q": ints(torch.quantize_per_tensor(data, 0.5, zp, torch.qint8).int_repr()),
        })
    return cases


def per_channel_cases():
    cases = []
    w = torch.randn(4, 3, 2, 2)
    w[1] = 0.0            # an all-zero channel
    w[2] = 0.75           # a constant channel
    for axis in (0, 1):
        for cname, dtype, scheme, qmin, qmax, custom in [
            ("int8_symmetric", torch.qint8, torch.per_channel_symmetric, -128, 127, False),
            ("int8_affine", torch.qint8, torch.per_channel_affine, -128, 127, False),
            ("uint8_affine", torch.quint8, torch.per_channel_affine, 0, 255, False),
            ("int4_symmetric", torch.qint8, torch.per_channel_symmetric, -8, 7, True),
        ]:
            kw = dict(ch_axis=axis, dtype=dtype, qscheme=scheme)
            if custom:
                kw.update(quant_min=qmin, quant_max=qmax)
            obs = PerChannelMinMaxObserver(**kw)
            obs(w)
            scale, zp = obs.calculate_qparams()
            case = {
                "name": f"w_axis{axis}/{cname}", "x": f32(w), "shape": list(w.shape), "axis": axis,
                "qmin": qmin, "qmax": qmax, "dtype": "uint8" if dtype == torch.quint8 else "int8",
                "symmetric": scheme == torch.per_channel_symmetric,
                "min": f32(obs.min_val), "max": f32(obs.max_val),
                "scale": f32(scale), "zero_point": ints(zp),
                "fake": f32(torch.fake_quantize_per_channel_affine(w, scale, zp.to(torch.int32), axis, qmin, qmax)),
            }
            if not custom:
                q = torch.quantize_per_channel(w, scale, zp, axis, dtype)
                case["q"] = ints(q.int_repr())
                case["dq"] = f32(q.dequantize())
            cases.append(case)
    return cases


def ste_cases():
    """Gradients of fake_quantize: the straight-through estimator's mask."""
    x = torch.tensor([-3.0, -2.0, -1.01, -1.0, 0.0, 0.3, 0.99, 1.0, 1.2, 5.0], requires_grad=True)
    scale, zp, qmin, qmax = 0.25, -4, -8, 7   # representable range [(qmin-zp)*s, (qmax-zp)*s] = [-1, 2.75]
    y = torch.fake_quantize_per_tensor_affine(x, scale, zp, qmin, qmax)
    g = torch.linspace(1, 2, x.numel())
    y.backward(g)
    return [{"x": f32(x.detach()), "scale": scale, "zero_point": zp, "qmin": qmin, "qmax": qmax,
             "y": f32(y.detach()), "g": f32(g), "grad": f32(x.grad)}]


def lsq_cases():
    """torch._fake_quantize_learnable_*: forward, and gradients of x, scale and zero point."""
    gen = torch.Generator().manual_seed(2)
    cases = []
    x = torch.randn(6, 5, generator=gen) * 2
    x[0, 0], x[1, 1] = 40.0, -40.0  # outside the range: scale/zero-point gradients of the clamp
    dy = torch.randn(6, 5, generator=gen)
    for scale, zp, qmin, qmax, gf in [(0.05, 3.0, -128, 127, 1.0), (0.1, 10.4, 0, 255, 0.02),
                                      (0.2, 0.0, -8, 7, 1.0 / (30 * 7) ** 0.5), (0.07, -2.5, -128, 127, 1.0)]:
        xs = x.clone().requires_grad_(True)
        s = torch.tensor([scale], requires_grad=True)
        z = torch.tensor([zp], requires_grad=True)
        y = torch._fake_quantize_learnable_per_tensor_affine(xs, s, z, qmin, qmax, gf)
        y.backward(dy)
        cases.append({"axis": -1, "x": f32(x), "shape": list(x.shape), "dy": f32(dy), "scale": [scale], "zero_point": [zp],
                      "qmin": qmin, "qmax": qmax, "grad_factor": gf, "y": f32(y.detach()), "dx": f32(xs.grad),
                      "dscale": f32(s.grad), "dzero_point": f32(z.grad)})
    for axis in (0, 1):
        c = x.shape[axis]
        scale = (torch.rand(c, generator=gen) * 0.1 + 0.02)
        zp = torch.round(torch.randn(c, generator=gen) * 5) + torch.tensor([0.5 if i % 2 else 0.0 for i in range(c)])
        xs = x.clone().requires_grad_(True)
        s = scale.clone().requires_grad_(True)
        z = zp.clone().requires_grad_(True)
        y = torch._fake_quantize_learnable_per_channel_affine(xs, s, z, axis, -128, 127, 0.5)
        y.backward(dy)
        cases.append({"axis": axis, "x": f32(x), "shape": list(x.shape), "dy": f32(dy), "scale": f32(scale),
                      "zero_point": f32(zp), "qmin": -128, "qmax": 127, "grad_factor": 0.5, "y": f32(y.detach()),
                      "dx": f32(xs.grad), "dscale": f32(s.grad), "dzero_point": f32(z.grad)})
    return cases


def observer_cases():
    """Three batches through each observer: running min/max after each, then qparams."""
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randn(3, 4, 5, generator=gen) * (1 + k) + 0.5 * k for k in range(3)]
    batches[1][0, 0, 0] = 9.0  # an outlier the moving average damps
    cases = []
    specs = [("int8_affine", torch.qint8, False, -128, 127),
             ("uint8_affine", torch.quint8, False, 0, 255),
             ("int8_symmetric", torch.qint8, True, -128, 127)]
    for cname, dtype, sym, qmin, qmax in specs:
        for oname, make in [
            ("minmax", lambda q: MinMaxObserver(dtype=dtype, qscheme=q)),
            ("moving_average", lambda q: MovingAverageMinMaxObserver(averaging_constant=0.01, dtype=dtype, qscheme=q)),
        ]:
            obs = make(torch.per_tensor_symmetric if sym else torch.per_tensor_affine)
            steps = []
            for b in batches:
                obs(b)
                steps.append({"min": float(obs.min_val), "max": float(obs.max_val)})
            scale, zp = obs.calculate_qparams()
            cases.append({"name": f"{oname}/{cname}", "observer": oname, "axis": -1, "dtype": "uint8" if dtype == torch.quint8 else "int8",
                          "symmetric": sym, "qmin": qmin, "qmax": qmax, "steps": steps,
                          "scale": f32(scale), "zero_point": ints(zp)})
        for axis in (0, 1):
            for oname, make in [
                ("per_channel_minmax", lambda q: PerChannelMinMaxObserver(ch_axis=axis, dtype=dtype, qscheme=q)),
                ("moving_average_per_channel", lambda q: MovingAveragePerChannelMinMaxObserver(
                    ch_axis=axis, averaging_constant=0.01, dtype=dtype, qscheme=q)),
            ]:
                obs = make(torch.per_channel_symmetric if sym else torch.per_channel_affine)
                steps = []
                for b in batches:
                    obs(b)
                    steps.append({"min": f32(obs.min_val), "max": f32(obs.max_val)})
                scale, zp = obs.calculate_qparams()
                cases.append({"name": f"{oname}{axis}/{cname}", "observer": oname, "axis": axis,
                              "dtype": "uint8" if dtype == torch.quint8 else "int8", "symmetric": sym,
                              "qmin": qmin, "qmax": qmax, "steps": steps, "scale": f32(scale), "zero_point": ints(zp)})
    return {"batches": [f32(b) for b in batches], "shape": list(batches[0].shape), "cases": cases}


print(json.dumps({"torch": torch.__version__, "eps": float(torch.finfo(torch.float32).eps),
                  "per_tensor": per_tensor_cases(), "per_channel": per_channel_cases(),
                  "ste": ste_cases(), "observers": observer_cases(),
                  "lsq": lsq_cases()}, separators=(",", ":")))
