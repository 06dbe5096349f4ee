#!/usr/bin/python3
"""Golden values for quant/fuse (Conv2d + BatchNorm2d (+ ReLU) fused for QAT, and BatchNorm
folding) from PyTorch's torch.nn.intrinsic.qat ConvBn2d / ConvBnReLU2d (_forward_approximate)
and torch.nn.utils.fusion.fuse_conv_bn_weights. Run with Debian's python3 (torch 1.13):
    /usr/bin/python3 tests/golden/make_convbn_golden.py > tests/golden/convbn_qat.json
"""
import json

import torch
import torch.nn.intrinsic.qat as nniqat
from torch.ao.quantization import FakeQuantize, QConfig
from torch.ao.quantization.observer import MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver
from torch.nn.utils.fusion import fuse_conv_bn_weights

torch.manual_seed(0)


def f32(t):
    # 9 significant digits round-trip a float32 exactly and keep the file small.
    return [float(f"{v:.9g}") for v in t.detach().reshape(-1).tolist()]


# quant::default_qat_qconfig(): per-channel symmetric int8 weights (axis 0, full [-128, 127]
# range), per-tensor affine uint8 activations, both moving-average min/max (constant 0.01).
QCONFIG = QConfig(
    weight=FakeQuantize.with_args(observer=MovingAveragePerChannelMinMaxObserver, quant_min=-128, quant_max=127,
                                  dtype=torch.qint8, qscheme=torch.per_channel_symmetric, ch_axis=0,
                                  reduce_range=False),
    activation=FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=255,
                                      dtype=torch.quint8, qscheme=torch.per_tensor_affine, reduce_range=False))

LR = 0.1


def case(name, relu, bias, stride, padding, cin, cout, hw, batch, zero_gamma_channel=None):
    cls = nniqat.ConvBnReLU2d if relu else nniqat.ConvBn2d
    m = cls(cin, cout, 3, stride=stride, padding=padding, bias=bias, qconfig=QCONFIG)
    m.train()
    act_fq = QCONFIG.activation()
    with torch.no_grad():
        m.weight.copy_(torch.randn(m.weight.shape) * 0.3)
        if bias:
            m.bias.copy_(torch.randn(cout) * 0.1)
        m.bn.weight.copy_(torch.rand(cout) + 0.5)
        if zero_gamma_channel is not None:
            m.bn.weight[zero_gamma_channel] = 0.0
        m.bn.bias.copy_(torch.randn(cout) * 0.1)
    out = {
        "relu": relu, "bias": bias, "stride": stride, "padding": padding, "in_channels": cin, "out_channels": cout,
        "eps": m.bn.eps, "momentum": m.bn.momentum, "lr": LR,
        "weight": f32(m.weight), "conv_bias": f32(m.bias) if bias else [],
        "gamma": f32(m.bn.weight), "beta": f32(m.bn.bias), "input_shape": [batch, cin, hw, hw],
        "steps": [],
    }
    params = [m.weight, m.bn.weight, m.bn.bias] + ([m.bias] if bias else [])
    for _ in range(2):
        x = torch.randn(batch, cin, hw, hw).requires_grad_(True)
        z = m(x)
        y = act_fq(z)
        dy = torch.randn(y.shape)
        for p in params:
            p.grad = None
        y.backward(dy)
        out["steps"].append({
            "x": f32(x), "dy": f32(dy), "output_shape": list(y.shape),
            "pre_fq": f32(z), "y": f32(y),
            "act_scale": float(act_fq.scale), "act_zero_point": int(act_fq.zero_point),
            "weight_scale": f32(m.weight_fake_quant.scale),
            "grad_x": f32(x.grad), "grad_weight": f32(m.weight.grad), "grad_gamma": f32(m.bn.weight.grad),
            "grad_beta": f32(m.bn.bias.grad), "grad_conv_bias": f32(m.bias.grad) if bias else [],
            "running_mean": f32(m.bn.running_mean), "running_var": f32(m.bn.running_var),
        })
        # Plain SGD between the steps (p -= lr * grad), repeated by the C++ test.
        with torch.no_grad():
            for p in params:
                p -= LR * p.grad
    m.eval()
    x = torch.randn(batch, cin, hw, hw)
    z = m(x)
    y = act_fq(z)
    out["eval"] = {"x": f32(x), "pre_fq": f32(z), "y": f32(y), "act_scale": float(act_fq.scale),
                   "act_zero_point": int(act_fq.zero_point)}
    w, b = fuse_conv_bn_weights(m.weight, m.bias, m.bn.running_mean, m.bn.running_var, m.bn.eps, m.bn.weight,
                                m.bn.bias)
    out["fold"] = {"weight": f32(w), "bias": f32(b)}
    return name, out


def main():
    cases = dict([
        case("conv_bn_relu", relu=True, bias=True, stride=1, padding=1, cin=2, cout=3, hw=5, batch=2),
        case("conv_bn", relu=False, bias=False, stride=2, padding=0, cin=3, cout=4, hw=6, batch=2),
    ])
    # fuse_conv_bn_weights alone with a zero gamma and a conv without bias (finite: gamma * rsqrt = 0).
    w = torch.randn(3, 2, 3, 3)
    rm, rv = torch.randn(3) * 0.2, torch.rand(3) + 0.3
    g, beta = torch.tensor([0.7, 0.0, -1.3]), torch.randn(3) * 0.1
    fw, fb = fuse_conv_bn_weights(w, None, rm, rv, 1e-3, g, beta)
    cases["fold_zero_gamma"] = {"weight": f32(w), "running_mean": f32(rm), "running_var": f32(rv), "eps": 1e-3,
                                "gamma": f32(g), "beta": f32(beta), "fold_weight": f32(fw), "fold_bias": f32(fb)}
    print(json.dumps(cases, separators=(",", ":")))


if __name__ == "__main__":
    main()
