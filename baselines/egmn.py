"""EGMN: an exponential-Gaussian mixture of the watch time (and HEGM's variant of it).

Zhao, Ma, Chen, Zhao, Yang and Hu, "Multi-Granularity Distribution Modeling for Video Watch
Time Prediction via Exponential-Gaussian Mixture Network", RecSys 2025 (arXiv 2508.12665;
code BestActionNow/EGMN, which our reference index does not hold; checked against its port
in liuzhao09/DADF, `model/egmn.py` and `model/dadf/adapter.py`). EGMN models the
conditional watch-time density as a mixture of one exponential component (quick skips)
and K Gaussians (engaged plays), all parameters output by the network for each row:

    p(y) = w_0 Exp(y; lambda) + sum_k w_k N+(y; mu_k, sigma_k),        y >= 0
    N+   = the Gaussian truncated to y >= 0: N(y; mu, sigma) / Phi(mu / sigma)
    mean = w_0 / lambda + sum_k w_k (mu_k + sigma_k phi(a_k) / Phi(a_k)),  a_k = mu_k / sigma_k
    loss = -mean log p(y)                                   (nll)
           - lambda_entropy * H(w),  H(w) = -sum_k w_k log w_k      (entropy; a bonus, see below)
           + lambda_l1 * |mean - y|                          (l1)
    prediction = mean (seconds)

with lambda = softplus_{beta=0.5}(z) + 1e-6, mu_k = softplus(z) + 1/lambda (the "mean
shift": every Gaussian sits above the exponential's mean), sigma_k = softplus(z) + 1e-6 and
w = softmax over the K + 1 components. Watch time is modelled in units of a training
quantile of the watch time (`label_scale_quantile`; the port divides by the maximum).

HEGM (Gulevskaia, Trapeznikov, Poslavsky, D'yakonov, "HEGM: Hierarchical Exponential-Gaussian
Mixtures for Watch-Time Distribution Prediction"; code rw404/HEGM, `hegm/hegm.py` and
`hegm/model.py`) changes EGMN in five ways, each a key here, so HEGM is the entry
`EGMN[skip_gate=True;mean_shift=False;truncated_gaussians=False;lambda_entropy=0.0;structured_init=True]`:
- `skip_gate`: w_0 = sigmoid(g_0) and w_k = (1 - w_0) softmax(g_1..K)_k, a separate skip
  probability instead of one softmax over K + 1 components;
- `mean_shift: False`: mu_k = softplus(z), not shifted by 1/lambda;
- `truncated_gaussians: False`: plain Gaussians (some density below 0 s), whose mean is mu_k;
- `lambda_entropy: 0`: no entropy term (its loss is nll + 1.0 * |mean - y|);
- `structured_init`: the last layer starts with weights 1e-4 and biases that put the
  exponential's mean at 0.05, the K means evenly on 0.1..0.9, every sigma at 1 / (1.5 K)
  and the mixture weights equal (HEGM's constants, in its unit of the 99th percentile of
  duration; here in the unit of `label_scale_quantile`).
The "optional KL on variances" attributed to HEGM (docs/method.md) is not in its released
code (`hegm/hegm.py` has only the NLL and MAE terms), so it is not here either.

The label scale is a buffer from the training split (saved in checkpoints).
`log_density` and `mixture_mean` are the formulas above; the tests integrate the density
numerically (it integrates to 1) and check the mean against y p(y) integrated.

Where ours differs from the port, and why:
- The entropy term has the port's sign: the port's loss is nll - 0.1 * H(w) + 1.0 * l1
  (`EGMNAdapter.stage1_loss`), a bonus for spread mixture weights (docs/method.md writes
  "+ 0.1 entropy"; the code subtracts it). The part logged as `entropy` is
  -lambda_entropy * H(w); a negative `lambda_entropy` penalises the entropy instead.
- The mean of a truncated Gaussian is mu + sigma phi(a) / Phi(a), not mu: the port's mean
  (prediction and l1 term) uses mu, which is not the mean of the density it fits. We use
  the exact mean, so the prediction is the mean of the fitted density; the two agree when
  mu >> sigma. With `truncated_gaussians: False` (HEGM) the mean is mu, exactly.
- log Phi(mu / sigma) is computed with log_ndtr (no underflow for mu << 0); the port clamps
  1 - Phi(-mu / sigma) at 1e-6. Log weights are exact log-softmax / log-sigmoid; HEGM adds
  1e-6 inside the log.
- One linear layer on the shared backbone outputs all 3K + 2 numbers (the port has four
  linear layers on its MLP, the same thing; HEGM has four ResNet towers). The port's K is
  10 (`num_gaussians`), HEGM's 3-12.
- The unit: the port divides watch time by the training maximum (DADF's label / max) and
  HEGM by the 99th percentile of duration, with targets clipped at it; here the unit is the
  training watch-time quantile at `label_scale_quantile` (1.0 = the maximum), and no
  target is clipped. The NLL's minimiser does not depend on the unit, but the relative
  weight of the l1 term does (it scales with 1 / unit), and so does the meaning of the
  softplus floors and of the structured initial values.
"""

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_lda.model import WatchTimeRecommender, training_statistics

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def inverse_softplus(y, beta=1.0):
    """x with softplus_beta(x) = y, for y > 0."""
    return math.log(math.expm1(beta * y)) / beta


class EGMN(WatchTimeRecommender):
    loss_names = ("nll", "entropy", "l1")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        k = config["num_gaussians"]  # ranges of every key: checked by the Config (properties/model/EGMN.yaml)
        level = float(config["label_scale_quantile"])
        self.num_gaussians = k
        self.skip_gate = bool(config["skip_gate"])
        self.mean_shift = bool(config["mean_shift"])
        self.truncated = bool(config["truncated_gaussians"])
        self.lambda_entropy, self.lambda_l1 = float(config["lambda_entropy"]), float(config["lambda_l1"])

        statistics = training_statistics(dataset)  # the ray engine's driver: a pass over the partitions
        if statistics is not None:
            scale = float(statistics.label_quantiles(level))
        else:
            scale = float(np.quantile(self.train_labels(dataset)[0].numpy(), level))
        if not scale > 0:
            raise ValueError(f"EGMN needs a positive training watch-time quantile at {level} as its unit, got {scale}")
        self.register_buffer("label_scale", torch.tensor(scale, dtype=torch.float32))
        # [rate (1) | mu (K) | sigma (K) | mixture logits (K+1)]
        self.head = nn.Linear(self.backbone.output_dim, 3 * k + 2)
        if config["structured_init"]:
            self._structured_init()

    def _structured_init(self):
        """HEGM's start: nearly input-independent outputs at fixed, spread-out values."""
        k = self.num_gaussians
        with torch.no_grad():
            self.head.weight.fill_(1e-4)
            self.head.weight[2 * k + 1 :].zero_()  # mixture logits: weights and biases 0 (equal weights)
            bias = self.head.bias
            bias.zero_()
            bias[0] = inverse_softplus(20.0, beta=0.5)  # rate 20: exponential mean 0.05
            means = np.clip(np.linspace(0.1, 0.9, k), 1e-3, None)
            bias[1 : k + 1] = torch.tensor([inverse_softplus(m) for m in means])
            bias[k + 1 : 2 * k + 1] = inverse_softplus(1.0 / (1.5 * k))

    def mixture(self, raw):
        """Mixture parameters from the head output (B, 3K+2), in label-scale units:
        log weights (B, K+1, exponential first), rate (B, 1), mu (B, K), sigma (B, K)."""
        k = self.num_gaussians
        rate = F.softplus(raw[:, :1], beta=0.5) + 1e-6
        mu = F.softplus(raw[:, 1 : k + 1])
        if self.mean_shift:
            mu = mu + 1.0 / rate
        sigma = F.softplus(raw[:, k + 1 : 2 * k + 1]) + 1e-6
        logits = raw[:, 2 * k + 1 :]
        if self.skip_gate:
            gate = logits[:, :1]
            log_w = torch.cat([F.logsigmoid(gate), F.logsigmoid(-gate) + F.log_softmax(logits[:, 1:], -1)], -1)
        else:
            log_w = F.log_softmax(logits, -1)
        return log_w, rate, mu, sigma

    def log_density(self, params, y):
        """log p(y) of each row's mixture at y (B,), label-scale units: (B,). Zero density
        (log = -inf) where a component has no support (y < 0 for the exponential and for
        truncated Gaussians)."""
        log_w, rate, mu, sigma = params
        y = y.unsqueeze(-1)  # (B, 1)
        negative = y < 0
        log_exp = torch.where(negative, torch.full_like(rate, -math.inf), torch.log(rate) - rate * y)  # (B, 1)
        log_gauss = -0.5 * ((y - mu) / sigma) ** 2 - torch.log(sigma) - LOG_SQRT_2PI  # (B, K)
        if self.truncated:
            log_gauss = torch.where(negative, torch.full_like(log_gauss, -math.inf), log_gauss - torch.special.log_ndtr(mu / sigma))
        return torch.logsumexp(log_w + torch.cat([log_exp, log_gauss], -1), -1)

    def mixture_mean(self, params):
        """The mean of each row's mixture, label-scale units: (B,)."""
        log_w, rate, mu, sigma = params
        means = mu
        if self.truncated:  # E[N+] = mu + sigma phi(a) / Phi(a), a = mu / sigma
            a = mu / sigma
            means = mu + sigma * torch.exp(-0.5 * a**2 - LOG_SQRT_2PI - torch.special.log_ndtr(a))
        return (log_w.exp() * torch.cat([1.0 / rate, means], -1)).sum(-1)

    def forward(self, interaction):
        return self.mixture(self.head(self.backbone(interaction)))

    def losses(self, params, watch_time):
        """The three weighted loss parts for mixture parameters and watch times (B,) in seconds."""
        y = watch_time.float() / self.label_scale
        nll = -self.log_density(params, y).mean()
        log_w = params[0]
        entropy = -(log_w.exp() * log_w).sum(-1).mean()
        l1 = (self.mixture_mean(params) - y).abs().mean()
        return nll, -self.lambda_entropy * entropy, self.lambda_l1 * l1

    def calculate_loss(self, interaction):
        return self.losses(self.forward(interaction), interaction[self.LABEL])

    def predict(self, interaction):
        return self.label_scale * self.mixture_mean(self.forward(interaction))
