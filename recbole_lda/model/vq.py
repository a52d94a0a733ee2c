"""One VQ-VAE per duration bucket over sorted label sequences (step 1 of LDA).

A label sequence s is n watch ratios, sorted: an empirical quantile function. The encoder
maps it to z_e, the quantiser snaps z_e to the nearest of the bucket's K codebook vectors
a_k, and the decoder maps a_k back to a sequence. Loss (van den Oord et al., 2017):

    ||s - D(z)||^2 + ||sg[z_e] - z||^2 + beta * ||z_e - sg[z]||^2

with the straight-through estimator (the decoder's gradient is copied to z_e). The decoder
output is monotone by construction (softplus start plus softplus increments), so every
decoded anchor is a valid quantile function. Sequences are in log(1 + ratio) space, where
the replay tail does not dominate the squared error.

The D bucket models are independent (no shared weight) but stored side by side, with a
leading bucket dimension on every weight, so that one batched step trains all of them:
pre-training costs about what one bucket would.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class BucketLinear(nn.Module):
    """D independent linear maps: (D, N, d_in) -> (D, N, d_out)."""

    def __init__(self, buckets, d_in, d_out):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(buckets, d_in, d_out))
        self.bias = nn.Parameter(torch.zeros(buckets, 1, d_out))
        nn.init.uniform_(self.weight, -(d_in**-0.5), d_in**-0.5)  # nn.Linear's default range

    def forward(self, x):
        return torch.baddbmm(self.bias, x, self.weight)


class VectorQuantizer(nn.Module):
    """Nearest-code quantisation per bucket with a straight-through gradient."""

    def __init__(self, buckets, num_codes, dim, beta):
        super().__init__()
        self.beta = beta
        self.codebook = nn.Parameter(torch.randn(buckets, num_codes, dim) * 0.1)  # (D, K, e)

    def indices(self, z_e):
        """Nearest code of each vector: z_e (D, N, e) -> (D, N)."""
        return torch.cdist(z_e, self.codebook).argmin(dim=-1)

    def lookup(self, idx):
        """Code vectors of indices (D, N) -> (D, N, e)."""
        return torch.gather(self.codebook, 1, idx.unsqueeze(-1).expand(-1, -1, self.codebook.shape[-1]))

    def forward(self, z_e):
        """Returns (quantized with straight-through gradient (D, N, e), indices (D, N), vq loss)."""
        idx = self.indices(z_e)
        z_q = self.lookup(idx)
        codebook_loss = F.mse_loss(z_q, z_e.detach())  # ||sg[z_e] - z||^2 moves the codes
        commit_loss = F.mse_loss(z_e, z_q.detach())  # ||z_e - sg[z]||^2 keeps the encoder close
        z_st = z_e + (z_q - z_e).detach()  # value z_q, gradient to z_e
        return z_st, idx, codebook_loss + self.beta * commit_loss


class SequenceVQVAE(nn.Module):
    """Per-bucket encoder, quantiser and monotone decoder for sorted sequences of length n."""

    def __init__(self, buckets, length, hidden, code_dim, num_codes, beta):
        super().__init__()
        self.encoder = nn.Sequential(BucketLinear(buckets, length, hidden), nn.ReLU(), BucketLinear(buckets, hidden, code_dim))
        self.quantizer = VectorQuantizer(buckets, num_codes, code_dim, beta)
        self.decoder = nn.Sequential(BucketLinear(buckets, code_dim, hidden), nn.ReLU(), BucketLinear(buckets, hidden, length))

    def decode(self, z):
        """Codes (D, N, e) -> non-decreasing, non-negative sequences (D, N, n)."""
        return torch.cumsum(F.softplus(self.decoder(z)), dim=-1)

    def forward(self, seqs):
        """seqs (D, N, n) -> (reconstruction, indices (D, N), reconstruction loss, vq loss)."""
        z_q, idx, vq_loss = self.quantizer(self.encoder(seqs))
        recon = self.decode(z_q)
        return recon, idx, F.mse_loss(recon, seqs), vq_loss

    def anchors(self):
        """The decoded codebooks: K quantile functions per bucket (D, K, n)."""
        return self.decode(self.quantizer.codebook)

    @torch.no_grad()
    def init_from_data(self, seqs, generator=None):
        """Data-dependent start: the decoder's output starts near each bucket's mean sequence
        (bias = inverse softplus of its increments, small weights), and the codes start at
        the encodings of random sequences, so training only learns the deviations."""
        increments = torch.diff(seqs.mean(1), dim=-1, prepend=torch.zeros(seqs.shape[0], 1)).clamp_min(1e-4)
        last = self.decoder[-1]
        last.bias.copy_((increments + torch.log(-torch.expm1(-increments))).unsqueeze(1))  # softplus^-1
        last.weight.mul_(0.1)
        z = self.encoder(seqs)  # (D, N, e)
        pick = torch.randint(z.shape[1], self.quantizer.codebook.shape[:2], generator=generator)  # (D, K)
        self.quantizer.codebook.data.copy_(torch.gather(z, 1, pick.unsqueeze(-1).expand(-1, -1, z.shape[-1])))

    @torch.no_grad()
    def restart_codes(self, seqs, mask, generator=None):
        """Codes where `mask` (D, K) is True restart at the encodings of their bucket's
        sequences (seqs (D, N, n)) that the current codebook serves worst (farthest from
        their nearest code), one sequence each: a restarted code then describes data that
        no other code covers. Returns how many were restarted."""
        z = self.encoder(seqs)  # (D, N, e)
        worst = torch.cdist(z, self.quantizer.codebook).min(dim=-1).values  # (D, N)
        worst = worst + 1e-6 * torch.rand(worst.shape, generator=generator)  # random order among ties
        k = min(int(mask.sum(1).max()), z.shape[1])
        if k == 0:
            return 0
        picks = worst.topk(k, dim=1).indices  # (D, k): farthest first
        rank = (mask.cumsum(dim=1) - 1).clamp(0, k - 1)  # j-th dead code of a bucket takes the j-th pick
        chosen = torch.gather(picks, 1, rank)  # (D, K)
        fresh = torch.gather(z, 1, chosen.unsqueeze(-1).expand(-1, -1, z.shape[-1]))
        self.quantizer.codebook.data[mask] = fresh[mask]
        return int(mask.sum())


def sample_batch(seqs, batch_size, generator=None):
    """`batch_size` random sequences of every bucket: (D, N, n) -> (D, batch, n)."""
    pick = torch.randint(seqs.shape[1], (seqs.shape[0], batch_size), generator=generator, device=seqs.device)
    return torch.gather(seqs, 1, pick.unsqueeze(-1).expand(-1, -1, seqs.shape[-1]))


def code_usage(idx, num_codes):
    """Counts of each code per bucket: indices (D, N) -> (D, K)."""
    return torch.zeros(idx.shape[0], num_codes).scatter_add_(1, idx, torch.ones(idx.shape, dtype=torch.float))


def train_vqvae(model, seqs, steps, batch_size, lr, reset_every, generator=None):
    """Fit the per-bucket VQ-VAEs to sequences (D, N, n); return one usage report per bucket.

    The model starts from the data (`init_from_data`). Every
    `reset_every` steps, codes that no sequence of the window used restart at the worst-served
    sequences, and once more at the end for codes that no sequence maps to (dead-code guard),
    so that every anchor ends up describing some data. The report gives
    the final usage on all N sequences: counts per code, codes used, the perplexity
    exp(H(usage)) (K when usage is uniform), the reconstruction error and the restarts.
    """
    num_codes = model.quantizer.codebook.shape[1]
    model.init_from_data(seqs, generator)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    counts = torch.zeros(seqs.shape[0], num_codes)
    restarts = torch.zeros(seqs.shape[0], dtype=torch.long)
    for step in range(1, steps + 1):
        _, idx, recon_loss, vq_loss = model(sample_batch(seqs, batch_size, generator))
        opt.zero_grad()
        (recon_loss + vq_loss).backward()
        opt.step()
        counts += code_usage(idx, num_codes)
        if reset_every and step % reset_every == 0 and step < steps:
            dead = counts == 0
            restarts += dead.sum(1)
            model.restart_codes(seqs, dead, generator)
            counts.zero_()
    with torch.no_grad():
        if reset_every:  # last check on all sequences: codes can lose their last sequence late
            dead = code_usage(model.quantizer.indices(model.encoder(seqs)), num_codes) == 0
            restarts += dead.sum(1)
            model.restart_codes(seqs, dead, generator)
        recon, idx, _, _ = model(seqs)
        usage = code_usage(idx, num_codes)
        recon_mse = ((recon - seqs) ** 2).mean(dim=(1, 2))
    reports = []
    for b in range(seqs.shape[0]):
        share = usage[b][usage[b] > 0] / usage[b].sum()
        reports.append(
            {
                "bucket": b,
                "code_counts": usage[b].long().tolist(),
                "codes_used": int((usage[b] > 0).sum()),
                "perplexity": float(torch.exp(-(share * share.log()).sum())),
                "reconstruction_mse": float(recon_mse[b]),
                "dead_code_restarts": int(restarts[b]),
            }
        )
    return reports
