"""Experiment: in-plane isotropic TV prox on the fast sampler's Tweedie estimates (mu = w * r_t)."""
import os, sys
sys.path.insert(0, "/work/bench2/benchmarks"); sys.path.insert(0, "/work/bench2")
import torch
from medrecon.sampling.problem import InverseProblem

W = float(os.environ.get("TVW", "0.5"))
ITERS = int(os.environ.get("TVIT", "40"))

def grad(u):
    gx = torch.zeros_like(u); gy = torch.zeros_like(u)
    gx[..., :, :-1] = u[..., :, 1:] - u[..., :, :-1]
    gy[..., :-1, :] = u[..., 1:, :] - u[..., :-1, :]
    return gx, gy

def div(px, py):
    dx = torch.zeros_like(px); dy = torch.zeros_like(py)
    dx[..., :, 0] = px[..., :, 0]; dx[..., :, 1:-1] = px[..., :, 1:-1] - px[..., :, :-2]; dx[..., :, -1] = -px[..., :, -2]
    dy[..., 0, :] = py[..., 0, :]; dy[..., 1:-1, :] = py[..., 1:-1, :] - py[..., :-2, :]; dy[..., -1, :] = -py[..., -2, :]
    return dx + dy

def tv_prox(v, mu, iters=ITERS):
    # Chambolle 2004 projection; isotropic over (x, y) and channels. v (B,C,H,W), mu (B,)
    mu = mu.view(-1, 1, 1, 1).clamp_min(1e-12)
    px = torch.zeros_like(v); py = torch.zeros_like(v); tau = 0.248
    for _ in range(iters):
        gx, gy = grad(div(px, py) - v / mu)
        n = torch.sqrt((gx ** 2 + gy ** 2).sum(1, keepdim=True))
        px = (px + tau * gx) / (1 + tau * n); py = (py + tau * gy) / (1 + tau * n)
    return v - mu * div(px, py)

_orig = InverseProblem.couple
def couple(self, x, r, joint_dc=False):
    x = _orig(self, x, r, joint_dc)
    if W <= 0:
        return x
    r = torch.as_tensor(r, dtype=x.dtype).reshape(-1).expand(x.shape[0])
    return self.constrain(tv_prox(x, W * r))
InverseProblem.couple = couple

if sys.argv[1] == 'cli':
    from medrecon.cli import main
    raise SystemExit(main(sys.argv[2:]))
import background_split
raise SystemExit(background_split.main(sys.argv[1:]))
